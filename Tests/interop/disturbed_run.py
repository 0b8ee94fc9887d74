#!/usr/bin/env python3
"""Measures a 3-epoch, 2-worker synchronous run with real processes, undisturbed and against three misbehaving
peers at once (docs/design.md, "Failures"): a sticky one (registers, heartbeats, never answers a task, says hello
again whenever it is dropped), a silent one (says hello and nothing else) and a wrong-step one (answers every task
with the next step). Prints the wall times, their ratio and both test accuracies.

Usage: disturbed_run.py BUILD_DIR [EPOCHS]   (MNIST from $NN_MNIST_DIR or ~/.local/share/nn/mnist)
"""
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_worker import TrainingSet, header, text, HELLO, HEARTBEAT, TASK, GRADIENT, ERROR, REFUSE, SHUTDOWN  # noqa: E402

build = sys.argv[1]
epochs = sys.argv[2] if len(sys.argv) > 2 else "3"
data = os.environ.get("NN_MNIST_DIR") or os.path.expanduser("~/.local/share/nn/mnist")
env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
fingerprint = TrainingSet(data).fingerprint


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peer(endpoint, name, kind, stop):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    session = int.from_bytes(os.urandom(8), "little")
    sock.setsockopt(zmq.ROUTING_ID, f"{name}#{session:x}".encode())
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    hello = header(HELLO, struct.pack("<Q", session) + text(name) + struct.pack("<I", 32) + fingerprint
                   + struct.pack("<5I", 784, 10, 0xFFFFFFFF, 0, 0))
    sock.send(hello)
    last_beat = 0.0
    while not stop.is_set():
        if kind != "silent" and time.monotonic() - last_beat > 0.2:
            sock.send(header(HEARTBEAT, struct.pack("<Q", session)))
            last_beat = time.monotonic()
        if not sock.poll(20):
            continue
        frames = sock.recv_multipart()
        kind_byte = frames[0][3]
        if kind_byte in (REFUSE, SHUTDOWN):
            return
        if kind_byte == ERROR and struct.unpack_from("<H", frames[0], 4)[0] == 1 and kind != "silent":
            sock.send(hello)
        if kind_byte == TASK and kind == "wrong-step":
            step, start, _ = struct.unpack_from("<QII", frames[0], 4)
            count = len(frames[1]) // 4
            sock.send_multipart([header(GRADIENT, struct.pack("<QIIIdQ", step + 1, start, count, 0, 0.0, 0)),
                                 bytes(len(frames[2])), b""])


def run(disturbed):
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    stop = threading.Event()
    peers = []
    coordinator = subprocess.Popen([f"{build}/nn-coordinator", "--bind", endpoint, "--workers", "2", "--epochs", epochs,
                                    "--batch", "32", "--data", data], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    if disturbed:
        for name in ("sticky", "silent", "wrong-step"):
            t = threading.Thread(target=peer, args=(endpoint, name, name, stop), daemon=True)
            t.start()
            peers.append(t)
        time.sleep(0.3)
    started = time.monotonic()
    workers = [subprocess.Popen([f"{build}/nn-worker", "--connect", endpoint, "--name", f"w{i}", "--data", data],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env) for i in range(2)]
    out, _ = coordinator.communicate(timeout=1200)
    seconds = time.monotonic() - started
    stop.set()
    for w in workers:
        w.wait(timeout=30)
    accuracy = float(out.split("test accuracy ")[1].split("%")[0])
    return seconds, accuracy, coordinator.returncode


quiet = run(False)
noisy = run(True)
print(f"undisturbed: {quiet[0]:.2f} s, test accuracy {quiet[1]:.2f}% (exit {quiet[2]}); "
      f"disturbed: {noisy[0]:.2f} s, test accuracy {noisy[1]:.2f}% (exit {noisy[2]}); "
      f"time ratio {noisy[0] / quiet[0]:.2f}, accuracy difference {abs(noisy[1] - quiet[1]):.2f} points")
