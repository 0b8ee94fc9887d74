#!/usr/bin/env python3
"""Secure aggregation with real processes: `nn launch` (a coordinator and three worker processes over CURVE) gives
the model `nn simulate` gives, bit for bit, although every run draws fresh keys and masks; then a coordinator with
three workers, one of them killed (SIGKILL) in the middle of the run, finishes: every other round completes, masked,
the later ones sampling among the remaining workers' clients; the round the kill interrupts completes without the
lost worker's clients, or, when it loses more than n − t of them after they sent keys, is skipped with that reason.

Usage: secure_aggregation.py BUILD_DIR SCRATCH_DIR   (MNIST from $NN_MNIST_DIR or ~/.local/share/nn/mnist)
"""
import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from safetensors.numpy import load_file

build, scratch = sys.argv[1], sys.argv[2]
env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
children = []
atexit.register(lambda: [p.kill() for p in children if p.poll() is None])

experiment = {
    "name": "secure-small", "model": "784-64-10", "partition": {"kind": "iid"}, "clients": 20, "fraction": 0.5,
    "localEpochs": 1, "localBatch": 10, "learningRate": 0.1, "rounds": 8, "seed": 5, "deadlineSeconds": 30,
    "secureAggregation": {"threshold": 0.7},
}
config = os.path.join(scratch, "secure.json")
with open(config, "w") as f:
    json.dump(experiment, f)
failures = []


def run(args, log):
    with open(log, "w") as out:
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        children.append(p)
        return p.wait(timeout=600)


def rounds(log):
    return [line for line in open(log) if re.search(r"round \d+/\d+", line) and "clients" in line]


# 1. Simulation and real processes agree.
sim_out, launch_out = os.path.join(scratch, "secure-sim.safetensors"), os.path.join(scratch, "secure-launch.safetensors")
if run([f"{build}/nn", "simulate", "--config", config, "--out", sim_out], os.path.join(scratch, "secure-sim.log")) != 0:
    failures.append("nn simulate failed")
launch_log = os.path.join(scratch, "secure-launch.log")
if run([f"{build}/nn", "launch", "--config", config, "--workers", "3", "--out", launch_out], launch_log) != 0:
    failures.append("nn launch failed")
if not failures:
    a, b = load_file(sim_out), load_file(launch_out)
    differing = [k for k in a if not np.array_equal(a[k], b[k])]
    masked = [line for line in rounds(launch_log) if "masked 10" in line]
    print(f"secure aggregation: nn launch with 3 worker processes over CURVE and nn simulate give the same model "
          f"({'bit for bit' if not differing else 'NOT: ' + ', '.join(differing)}); {len(masked)} of 8 rounds masked 10 clients")
    if differing:
        failures.append("the launched run's model differs from the simulation's")
    if len(masked) != 8:
        failures.append("not every launched round masked its 10 clients")

# 2. A worker killed mid-run.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
log = os.path.join(scratch, "secure-kill-coordinator.log")
killed_run = dict(experiment, rounds=10, deadlineSeconds=5)
with open(config, "w") as f:
    json.dump(killed_run, f)
coordinator = subprocess.Popen([f"{build}/nn-coordinator", "--bind", endpoint, "--workers", "3", "--config", config,
                                "--heartbeat", "0.2", "--timeout", "1.5"],
                               stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
children.append(coordinator)
workers = [subprocess.Popen([f"{build}/nn-worker", "--connect", endpoint, "--name", f"w{i}"],
                            stdout=open(os.path.join(scratch, f"secure-kill-w{i}.log"), "w"), stderr=subprocess.STDOUT, env=env)
           for i in range(3)]
children.extend(workers)
deadline = time.time() + 120
while time.time() < deadline and coordinator.poll() is None and len(rounds(log)) < 3:
    time.sleep(0.01)
workers[2].send_signal(signal.SIGKILL)
killed_after = len(rounds(log))
status = coordinator.wait(timeout=300)
for w in workers[:2]:
    w.wait(timeout=60)
lines = rounds(log)
answered = [(int(m.group(1)), int(m.group(2))) for m in (re.search(r"clients (\d+)/\d+.*masked (\d+)", line) for line in lines) if m]
interrupted = lines[killed_after] if len(lines) > killed_after else ""
skipped_for_threshold = "skipped: secure aggregation failed" in interrupted and "needed to unmask" in interrupted
print(f"secure aggregation: worker w2 killed during round {killed_after + 1}; coordinator exit {status}; "
      f"{len(answered)} of {len(lines)} rounds completed masked"
      + ("; the interrupted round was skipped: more than n − t of its clients were lost after sending keys" if skipped_for_threshold else ""))
for line in lines:
    print("  " + line.strip())
if status != 0:
    failures.append("the coordinator failed after a worker was killed")
if len(lines) != 10 or len(answered) != 10 - skipped_for_threshold or any(a != m for a, m in answered) or killed_after >= 9:
    failures.append("not every round other than the interrupted one completed with all its answering clients masked")

for f in failures:
    print(f"FAIL: {f}")
print("secure aggregation: all checks passed" if not failures else "secure aggregation: FAILED")
sys.exit(1 if failures else 0)
