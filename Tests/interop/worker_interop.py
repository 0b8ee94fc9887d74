#!/usr/bin/env python3
"""The reference Python worker (reference_worker.py) in real runs beside a Swift worker: synchronous SGD and a
federated experiment, each compared with the same run by Swift alone, within the tolerance docs/protocol.md
states (final parameters within 1e-3 relative, test accuracy within 0.1 points).

Usage: worker_interop.py BUILD_DIR SCRATCH_DIR   (MNIST from $NN_MNIST_DIR or ~/.local/share/nn/mnist)
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

build, scratch = sys.argv[1], sys.argv[2]
data = os.environ.get("NN_MNIST_DIR") or os.path.expanduser("~/.local/share/nn/mnist")
worker_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_worker.py")
env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
passed = failed = 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(arguments, log):
    return subprocess.Popen(arguments, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)


def finish(processes, logs, seconds=600):
    deadline = time.time() + seconds
    for p in processes:
        p.wait(timeout=max(deadline - time.time(), 1))
    for p, log in zip(processes, logs):
        if p.returncode != 0:
            raise RuntimeError(f"{log} exited with {p.returncode}:\n" + open(log).read()[-3000:])


def compare(name, mixed, reference):
    """Largest parameter difference relative to the largest magnitude, and the test accuracies."""
    global passed, failed
    a, b = load_file(mixed), load_file(reference)
    scale = max(float(np.abs(t).max()) for t in b.values())
    difference = max(float(np.abs(a[k] - b[k]).max()) for k in b) / scale
    accuracy = [float(safe_open(f, "np").metadata()["test_accuracy"]) for f in (mixed, reference)]
    ok = difference < 1e-3 and abs(accuracy[0] - accuracy[1]) <= 0.001 and a.keys() == b.keys()
    print(f"{name}: parameters within {difference:.2e} relative of the all-Swift run; test accuracy "
          f"{100 * accuracy[0]:.2f}% against {100 * accuracy[1]:.2f}%: {'ok' if ok else 'FAILED'}", flush=True)
    passed, failed = passed + ok, failed + (not ok)


def keys(folder):
    """`nn keygen` pairs for a coordinator and two workers: the options each process takes for CURVE."""
    for name, out in (("coordinator", folder), ("swift", f"{folder}/workers"), ("python", f"{folder}/workers")):
        subprocess.run([f"{build}/nn", "keygen", "--out", out, "--name", name], check=True, stdout=subprocess.DEVNULL)
    worker = lambda name: ["--key", f"{folder}/workers/{name}.key_secret", "--server-key", f"{folder}/coordinator.key"]
    return ["--key", f"{folder}/coordinator.key_secret", "--allow", f"{folder}/workers"], worker("swift"), worker("python")


def sync(name, model_flags, curve=False):
    flags = ["--optimizer", "sgd", "--lr", "0.1", "--batch", "32", "--epochs", "1", "--seed", "3",
             "--data", data, "--heartbeat", "0.5", "--timeout", "20"] + model_flags
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    security = keys(f"{scratch}/keys-{port}") if curve else ([], [], [])
    logs = [f"{scratch}/sync-{n}.log" for n in ("coordinator", "swift", "python")]
    processes = [start([f"{build}/nn-coordinator", "--bind", endpoint, "--workers", "2", "--out", f"{scratch}/sync-mixed.safetensors"] + flags + security[0], logs[0]),
                 start([f"{build}/nn-worker", "--connect", endpoint, "--name", "swift", "--data", data] + security[1], logs[1]),
                 start([sys.executable, worker_py, "--connect", endpoint, "--name", "python", "--data", data] + security[2], logs[2])]
    finish(processes, logs)
    reference = subprocess.run([f"{build}/nn", "launch", "--workers", "2", "--out", f"{scratch}/sync-swift.safetensors"] + flags,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    assert reference.returncode == 0, "the all-Swift sync run failed"
    compare(f"sync SGD ({name}), a Swift and a Python worker{' over CURVE' if curve else ''}", f"{scratch}/sync-mixed.safetensors",
            f"{scratch}/sync-swift.safetensors")


def federated():
    experiment = {"name": "interop", "model": "784-64-10", "activation": "tanh", "partition": {"kind": "iid"}, "clients": 10, "fraction": 0.5,
                  "localEpochs": 2, "localBatch": 20, "learningRate": 0.05, "rounds": 3, "seed": 3,
                  "strategy": {"kind": "fedprox", "mu": 0.01}, "deadlineSeconds": 300}
    config = f"{scratch}/interop.json"
    with open(config, "w") as f:
        json.dump(experiment, f)
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    logs = [f"{scratch}/fed-{n}.log" for n in ("coordinator", "swift", "python")]
    processes = [start([f"{build}/nn-coordinator", "--bind", endpoint, "--workers", "2", "--config", config, "--data", data,
                        "--timeout", "20", "--out", f"{scratch}/fed-mixed.safetensors"], logs[0]),
                 start([f"{build}/nn-worker", "--connect", endpoint, "--name", "swift", "--clients", "0-4", "--data", data], logs[1]),
                 start([sys.executable, worker_py, "--connect", endpoint, "--name", "python", "--clients", "5-9", "--data", data], logs[2])]
    finish(processes, logs)
    reference = subprocess.run([f"{build}/nn", "simulate", "--config", config, "--data", data, "--out", f"{scratch}/fed-swift.safetensors"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    assert reference.returncode == 0, "the all-Swift simulation failed"
    compare("federated FedProx (784-64-10, tanh), clients 0-4 on a Swift worker and 5-9 on a Python worker", f"{scratch}/fed-mixed.safetensors",
            f"{scratch}/fed-swift.safetensors")


cases = [("sync, relu", lambda: sync("784-64-10, relu, cross-entropy", ["--model", "784-64-10"], curve=True)),
         ("sync, sigmoid", lambda: sync("784-32-32-10, sigmoid, bce", ["--model", "784-32-32-10", "--activation", "sigmoid", "--loss", "bce"])),
         ("federated", federated)]
for name, case in cases:
    try:
        case()
    except Exception as e:
        print(f"{name}: FAILED: {e}", flush=True)
        failed += 1
print(f"interop: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
