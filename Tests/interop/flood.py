#!/usr/bin/env python3
"""A coordinator under a flood from the network: from the moment two workers have registered until training ends
(at most a bounded time), 300 ZeroMQ sockets send random frames (half of them hello-shaped) and 100 raw TCP
connections write garbage, on loopback only. The coordinator must keep running, keep its resident memory under a stated bound, and end with
the same model as an undisturbed run (the same seed gives bit-identical parameters).

Usage: flood.py BUILD_DIR SCRATCH_DIR   (MNIST from $NN_MNIST_DIR or ~/.local/share/nn/mnist)
"""
import os
import random
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import zmq
from safetensors.numpy import load_file

build, scratch = sys.argv[1], sys.argv[2]
env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
# Resident memory the flood may add to an undisturbed coordinator's peak.
BOUND_MIB = 200
FLOOD_SECONDS = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def wait_for_workers(log, coordinator):
    """Waits until the coordinator's log says both workers registered, so the flood meets a run in training."""
    deadline = time.time() + 60
    while time.time() < deadline and coordinator.poll() is None:
        with open(log) as f:
            if "2 live" in f.read():
                return True
        time.sleep(0.02)
    return False


def run(name, flood):
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    out = os.path.join(scratch, f"{name}.safetensors")
    log = os.path.join(scratch, f"{name}-coordinator.log")
    coordinator = subprocess.Popen(
        [f"{build}/nn-coordinator", "--bind", endpoint, "--workers", "2", "--model", "784-64-10", "--batch", "32",
         "--epochs", "6", "--seed", "4", "--out", out],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    workers = [subprocess.Popen([f"{build}/nn-worker", "--connect", endpoint, "--name", f"{name}-{i}"],
                                stdout=open(os.path.join(scratch, f"{name}-w{i}.log"), "w"), stderr=subprocess.STDOUT, env=env)
               for i in range(2)]
    peak, stop = [0.0], threading.Event()

    def sample():
        while not stop.is_set() and coordinator.poll() is None:
            peak[0] = max(peak[0], rss_mib(coordinator.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    sent, flooded_training = 0, False
    if flood and wait_for_workers(log, coordinator):
        context = zmq.Context()
        sockets = []
        for i in range(300):
            s = context.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 100)
            s.setsockopt(zmq.IDENTITY, f"flood-{i}".encode())
            s.connect(endpoint)
            sockets.append(s)
        raw = []
        for i in range(100):
            try:
                c = socket.create_connection(("127.0.0.1", port))
            except ConnectionRefusedError:
                break  # the coordinator has ended; its exit status says how
            c.setblocking(False)
            raw.append(c)
        rng = random.Random(7)
        deadline = time.time() + FLOOD_SECONDS
        while time.time() < deadline and coordinator.poll() is None:
            for s in sockets:
                frames = [os.urandom(rng.randrange(1, 2000)) for _ in range(rng.randrange(1, 4))]
                if rng.random() < 0.5:
                    frames[0] = b"NN" + bytes([3, rng.randrange(1, 11)]) + frames[0]
                try:
                    s.send_multipart(frames, flags=zmq.NOBLOCK)
                    sent += 1
                except zmq.Again:
                    pass
            for c in raw:
                try:
                    c.send(os.urandom(4096))
                except (BlockingIOError, OSError):
                    pass
            flooded_training = flooded_training or coordinator.poll() is None
        for s in sockets:
            s.close()
        for c in raw:
            c.close()
        context.term()
    status = coordinator.wait(timeout=600)
    for w in workers:
        w.wait(timeout=60)
    stop.set()
    sampler.join()
    return status, peak[0], load_file(out) if status == 0 else None, sent, flooded_training


quiet_status, quiet_peak, quiet_model, _, _ = run("quiet", flood=False)
flood_status, flood_peak, flood_model, sent, flooded_training = run("flooded", flood=True)
print(f"undisturbed: exit {quiet_status}, peak RSS {quiet_peak:.0f} MiB")
print(f"flooded: exit {flood_status}, peak RSS {flood_peak:.0f} MiB, {sent} flood messages from 300 sockets and 100 raw connections during training")
failures = []
if quiet_status != 0 or flood_status != 0:
    failures.append("a coordinator failed")
elif any(not np.array_equal(quiet_model[k], flood_model[k]) for k in quiet_model):
    failures.append("the flooded run's model differs from the undisturbed one's")
if flood_peak > quiet_peak + BOUND_MIB:
    failures.append(f"the flood added {flood_peak - quiet_peak:.0f} MiB, more than the {BOUND_MIB} MiB bound")
if sent < 1000 or not flooded_training:
    failures.append(f"only {sent} flood messages went out while training ran: the flood did not happen")
for f in failures:
    print(f"FAIL: {f}")
sys.exit(1 if failures else 0)
