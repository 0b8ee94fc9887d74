#!/usr/bin/env python3
"""A coordinator serving many connected workers: a light load generator opens N ZeroMQ sockets on loopback, each a
worker that speaks the protocol and hosts K/N clients, and answers every train request at once with the global
model it was sent (no training), so what is measured is the coordinator: registration, sending the model to the
round's workers, taking in and checking the updates, aggregating, evaluating. Prints the registration time, the
median round time (with and without the test evaluation) and the coordinator's peak resident memory.

Usage: coordinator_load.py BUILD_DIR [--sockets 200] [--clients 10000] [--fraction 0.01] [--rounds 20]
                           [--model 784-200-200-10]   (MNIST from $NN_MNIST_DIR or ~/.local/share/nn/mnist)
"""
import argparse
import atexit
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "interop"))
from reference_worker import TrainingSet, header, text, HELLO, WELCOME, HEARTBEAT, TRAIN, UPDATE, SHUTDOWN, REFUSE  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("build")
parser.add_argument("--sockets", type=int, default=200)
parser.add_argument("--clients", type=int, default=10000)
parser.add_argument("--fraction", type=float, default=0.01)
parser.add_argument("--rounds", type=int, default=20)
parser.add_argument("--model", default="784-200-200-10")
args = parser.parse_args()

data = os.environ.get("NN_MNIST_DIR") or os.path.expanduser("~/.local/share/nn/mnist")
fingerprint = TrainingSet(data).fingerprint
scratch = tempfile.mkdtemp()
experiment = {"name": "load", "model": args.model, "partition": {"kind": "iid"}, "clients": args.clients, "fraction": args.fraction,
              "localEpochs": 1, "localBatch": 10, "learningRate": 0.1, "rounds": args.rounds, "seed": 1, "deadlineSeconds": 60}
config = os.path.join(scratch, "load.json")
with open(config, "w") as f:
    json.dump(experiment, f)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
metrics = os.path.join(scratch, "rounds.jsonl")
started = time.monotonic()
coordinator = subprocess.Popen([f"{args.build}/nn-coordinator", "--bind", endpoint, "--workers", str(args.sockets), "--config", config,
                                "--metrics", metrics, "--registration-timeout", "120"],
                               stdout=open(os.path.join(scratch, "coordinator.log"), "w"), stderr=subprocess.STDOUT,
                               env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
atexit.register(lambda: coordinator.poll() is None and coordinator.kill())

peak, stop = [0.0], threading.Event()


def sample():
    while not stop.is_set() and coordinator.poll() is None:
        try:
            with open(f"/proc/{coordinator.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except FileNotFoundError:
            pass
        time.sleep(0.02)


threading.Thread(target=sample, daemon=True).start()

context = zmq.Context()
share = args.clients // args.sockets
sockets, sessions = [], []
for i in range(args.sockets):
    sock = context.socket(zmq.DEALER)
    session = int.from_bytes(os.urandom(8), "little")
    sock.setsockopt(zmq.ROUTING_ID, f"load-{i}#{session:x}".encode())
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sockets.append(sock)
    sessions.append(session)
hellos = [header(HELLO, struct.pack("<Q", sessions[i]) + text(f"load-{i}") + struct.pack("<I", 32) + fingerprint
                 + struct.pack("<5I", 784, 10, i * share, share, 0)) for i in range(args.sockets)]
poller = zmq.Poller()
for sock in sockets:
    poller.register(sock, zmq.POLLIN)
index = {sock: i for i, sock in enumerate(sockets)}
welcomed, open_sockets = set(), set(range(args.sockets))
registered_at, answered, next_beat, next_hello = None, 0, 0.0, 0.0
deadline = time.monotonic() + 600
while open_sockets and time.monotonic() < deadline and coordinator.poll() is None:
    now = time.monotonic()
    if now >= next_hello:
        for i in open_sockets - welcomed:
            sockets[i].send(hellos[i])
        next_hello = now + 1
    if now >= next_beat:
        for i in welcomed & open_sockets:
            sockets[i].send(header(HEARTBEAT, struct.pack("<Q", sessions[i])))
        next_beat = now + 0.3
    for sock, _ in poller.poll(50):
        i = index[sock]
        frames = sock.recv_multipart(copy=False)
        head = frames[0].bytes
        kind = head[3]
        if kind == WELCOME and i not in welcomed:
            welcomed.add(i)
            sock.send(header(HEARTBEAT, struct.pack("<Q", sessions[i])))
            if len(welcomed) == args.sockets:
                registered_at = time.monotonic()
        elif kind == TRAIN:
            round_, _, epochs, _, _, n = struct.unpack_from("<QfIIfI", head, 4)
            pairs = struct.unpack_from(f"<{2 * n}I", head, 4 + 28)
            for c in range(n):
                client, length = pairs[2 * c], pairs[2 * c + 1]
                sock.send_multipart([header(UPDATE, struct.pack("<QIIIdQ", round_, client, length // epochs, 0, 0.0, 0)), frames[2], b""],
                                    copy=False)
                answered += 1
        elif kind in (SHUTDOWN, REFUSE):
            open_sockets.discard(i)
status = coordinator.wait(timeout=120)
stop.set()
for sock in sockets:
    sock.close()
context.term()
rows = [json.loads(line) for line in open(metrics)] if os.path.exists(metrics) else []
rows = [r for r in rows if "round" in r][1:]  # the first round warms up
if status != 0 or not rows:
    sys.exit(f"the coordinator failed (exit {status}); see {scratch}/coordinator.log")
rounds = [r["seconds"] for r in rows]
evaluations = [r["evaluation_seconds"] for r in rows]
print(f"coordinator with {args.sockets} connected workers ({args.clients} clients, {share} each; {round(args.fraction * args.clients)} a round, "
      f"model {args.model}): all registered {registered_at - started:.1f} s after start; "
      f"round {statistics.median(rounds) * 1000:.1f} ms median without the test evaluation, "
      f"{statistics.median([a + b for a, b in zip(rounds, evaluations)]) * 1000:.1f} ms with it; "
      f"{answered} updates taken; coordinator peak RSS {peak[0]:.0f} MiB")
