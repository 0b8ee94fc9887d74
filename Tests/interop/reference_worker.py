#!/usr/bin/env python3
"""A worker for nn's coordinator in Python and NumPy, written from docs/protocol.md alone.

It implements these sections of the document: Sockets; Frames (header, index and float frames, the message table,
versions); Hello and welcome (capabilities: none, so the coordinator gives it no dropout, batch norm, residual
blocks or adversarial clients; the data fingerprint; the configuration); What a worker computes (inputs, the
network with dense layers, relu/sigmoid/tanh and the cross-entropy, bce and mse losses, the flat vectors);
Synchronous SGD; Federated rounds; Errors and state machines (the worker's); Security (CURVE keys). Nothing in it is taken from the Swift
sources. It is the executable example of the protocol and is run beside Swift workers by
Tests/interop/worker_interop.py.

Usage: reference_worker.py --connect tcp://HOST:PORT --data DIR [--name NAME] [--clients FIRST-LAST]
                           [--key NAME.key_secret --server-key COORDINATOR.key]
"""
import argparse
import gzip
import hashlib
import json
import os
import struct
import sys
import time
import zlib

import numpy as np
import zmq
import zmq.auth

VERSION = 5
HELLO, WELCOME, REFUSE, TASK, GRADIENT, HEARTBEAT, ERROR, SHUTDOWN, TRAIN, UPDATE = range(1, 11)
NOT_REGISTERED, BAD_MESSAGE, FATAL = 1, 2, 3
ANY_CLIENTS = 0xFFFFFFFF


class BadMessage(Exception):
    """A message that does not fit the session: answered with error code 2."""


# --- Data (Inputs; The data fingerprint) ---

def read_idx(path):
    """An IDX file (raw or gzip): its dimensions and its unsigned bytes."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, kind, rank = struct.unpack(">HBB", raw[:4])
    if zero != 0 or kind != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * rank, raw[4:4 + 4 * rank])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes for dimensions {dims}")
    return dims, data


def find(directory, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{name} (raw or .gz) is not in {directory}")


class TrainingSet:
    def __init__(self, directory, classes=10):
        (count, rows, columns), pixels = read_idx(find(directory, "train-images-idx3-ubyte"))
        (labels_count,), labels = read_idx(find(directory, "train-labels-idx1-ubyte"))
        assert labels_count == count
        self.images = pixels.reshape(count, rows * columns)
        self.labels = labels.astype(np.int64)
        self.rows, self.columns, self.classes = rows, columns, classes
        summary = struct.pack("<6I", count, rows, columns, classes, zlib.crc32(labels.tobytes()), zlib.crc32(pixels.tobytes()))
        self.fingerprint = hashlib.sha256(summary).digest()

    @property
    def count(self):
        return len(self.labels)

    def batch(self, indices):
        """Input rows: each pixel times the float32 nearest to 1/255."""
        return self.images[indices].astype(np.float32) * np.float32(1 / 255), self.labels[indices]


# --- The network (What a worker computes) ---

class Network:
    """Dense layers with one activation between them; parameters as a flat float32 vector."""

    def __init__(self, model):
        if model.get("batchNorm") or model.get("dropout", 0) > 0 or model.get("residualBlocks", 0) > 0:
            raise ValueError("batch norm, dropout and residual blocks are not offered by this worker")
        if model.get("activation", "relu") not in ("relu", "sigmoid", "tanh"):
            raise ValueError(f"unknown activation {model.get('activation')}")
        if model.get("loss", "cross-entropy") not in ("cross-entropy", "bce", "mse"):
            raise ValueError(f"unknown loss {model.get('loss')}")
        self.widths = model["widths"]
        self.activation = model.get("activation", "relu")
        self.loss = model.get("loss", "cross-entropy")
        self.shapes = list(zip(self.widths[:-1], self.widths[1:]))
        self.parameter_count = sum(i * o + o for i, o in self.shapes)

    def unpack(self, flat):
        """(W [out × in], b [out]) per dense layer, views into `flat`."""
        layers, offset = [], 0
        for i, o in self.shapes:
            w = flat[offset:offset + i * o].reshape(o, i)
            offset += i * o
            layers.append((w, flat[offset:offset + o]))
            offset += o
        return layers

    def activate(self, x):
        if self.activation == "relu":
            return np.maximum(x, np.float32(0))
        if self.activation == "sigmoid":
            return np.float32(1) / (np.float32(1) + np.exp(-x))
        return np.tanh(x)

    def activation_derivative(self, y, dy):
        if self.activation == "relu":
            return np.where(y > 0, dy, np.float32(0))
        if self.activation == "sigmoid":
            return dy * y * (np.float32(1) - y)
        return dy * (np.float32(1) - y * y)

    def loss_and_gradient(self, z, labels):
        """Per-row losses (float32) and ∂(mean loss)/∂z."""
        batch, classes = z.shape
        onehot = np.zeros_like(z)
        onehot[np.arange(batch), labels] = 1
        if self.loss == "cross-entropy":
            m = z.max(axis=1, keepdims=True)
            e = np.exp(z - m)
            s = e.sum(axis=1, keepdims=True)
            rows = (np.log(s) + m)[:, 0] - z[np.arange(batch), labels]
            return rows, (e / s - onehot) / np.float32(batch)
        if self.loss == "bce":
            rows = (np.maximum(z, 0) - z * onehot + np.log1p(np.exp(-np.abs(z)))).sum(axis=1)
            return rows, (np.float32(1) / (np.float32(1) + np.exp(-z)) - onehot) / np.float32(batch)
        d = z - onehot
        return (d * d / np.float32(classes)).sum(axis=1), np.float32(2) * d / np.float32(batch * classes)

    def backpropagate(self, parameters, x, labels):
        """Mean loss, correct predictions and the gradient of the mean loss, as a flat vector."""
        layers = self.unpack(parameters)
        inputs, a = [], x
        for n, (w, b) in enumerate(layers):
            inputs.append(a)
            a = a @ w.T + b
            if n < len(layers) - 1:
                a = self.activate(a)
        rows, dz = self.loss_and_gradient(a, labels)
        correct = int((a.argmax(axis=1) == labels).sum())
        gradient = np.empty(self.parameter_count, dtype=np.float32)
        grads = self.unpack(gradient)
        dy = dz
        for n in reversed(range(len(layers))):
            w, _ = layers[n]
            gw, gb = grads[n]
            gw[:] = dy.T @ inputs[n]
            gb[:] = dy.sum(axis=0)
            if n > 0:
                dy = self.activation_derivative(inputs[n], dy @ w)
        return float(rows.astype(np.float64).sum()) / len(labels), correct, gradient


# --- Frames ---

def header(kind, fields=b""):
    return b"NN" + bytes([VERSION, kind]) + fields


def text(s):
    b = s.encode()
    return struct.pack("<I", len(b)) + b


class Reader:
    def __init__(self, frame):
        self.b, self.o = frame, 4

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.o + size > len(self.b):
            raise BadMessage("a field runs past the header")
        values = struct.unpack_from(fmt, self.b, self.o)
        self.o += size
        return values

    def text(self):
        (n,) = self.take("<I")
        if n > 1 << 20 or self.o + n > len(self.b):
            raise BadMessage("a text runs past the header")
        s = self.b[self.o:self.o + n].decode()
        self.o += n
        return s

    def done(self):
        if self.o != len(self.b):
            raise BadMessage("bytes left over after the fields")


def vector(frame, dtype):
    if len(frame) % 4:
        raise BadMessage("a vector frame is not a multiple of 4 bytes")
    return np.frombuffer(frame, dtype=dtype).copy()


# --- The worker (state machines) ---

class Worker:
    def __init__(self, endpoint, data, name, clients, key=None, server_key=None):
        self.data, self.name, self.clients = data, name, clients
        self.session = int.from_bytes(os.urandom(8), "little") or 1
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        if key:  # Security: CURVE with this worker's certificate and the coordinator's public key
            public, secret = zmq.auth.load_certificate(key)
            self.socket.curve_publickey, self.socket.curve_secretkey = public, secret
            self.socket.curve_serverkey = zmq.auth.load_certificate(server_key)[0]
        self.socket.setsockopt(zmq.ROUTING_ID, f"{name}#{self.session:x}".encode())
        self.socket.setsockopt(zmq.MAXMSGSIZE, 256 << 20)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self.socket.setsockopt(zmq.SNDTIMEO, 10_000)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(endpoint)
        self.last_sent = time.monotonic()

    def send(self, frames):
        self.socket.send_multipart(frames)
        self.last_sent = time.monotonic()

    def receive(self, seconds):
        if self.socket.poll(int(seconds * 1000)):
            return self.socket.recv_multipart()
        return None

    def error(self, code, message):
        self.send([header(ERROR, struct.pack("<H", code) + text(message))])

    def heartbeat_if_due(self):
        if time.monotonic() - self.last_sent >= self.heartbeat:
            self.send([header(HEARTBEAT, struct.pack("<Q", self.session))])

    def register(self, within=30):
        """State 1: hello every second until welcome or refuse."""
        first, count = self.clients if self.clients else (ANY_CLIENTS, 0)
        hello = header(HELLO, struct.pack("<Q", self.session) + text(self.name) + struct.pack("<I", 32) + self.data.fingerprint
                       + struct.pack("<5I", self.data.rows * self.data.columns, self.data.classes, first, count, 0))
        deadline, next_hello = time.monotonic() + within, 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_hello:
                self.send([hello])
                next_hello = time.monotonic() + 1
            frames = self.receive(0.1)
            if not frames or len(frames[0]) < 4 or frames[0][:2] != b"NN":
                continue
            kind = frames[0][3]
            if kind == SHUTDOWN:
                print(f"coordinator says shutdown: {Reader(frames[0]).text()}", flush=True)
                sys.exit(0)
            if kind == REFUSE:
                sys.exit(f"the coordinator refused this worker: {Reader(frames[0]).text()}")
            if kind == WELCOME and frames[0][2] == VERSION:
                r = Reader(frames[0])
                index, = r.take("<I")
                configuration = json.loads(r.text())
                self.first_client, self.client_count = r.take("<2I")
                r.done()
                self.heartbeat = configuration["heartbeatSeconds"]
                self.timeout = configuration["timeoutSeconds"]
                self.global_batch = configuration["globalBatch"]
                try:
                    self.network = Network(configuration["model"])
                except ValueError as e:
                    self.error(FATAL, f"{self.name} cannot take part: {e}")
                    sys.exit(f"cannot compute the model: {e}")
                print(f"registered as worker #{index}: {configuration['mode']} training of {configuration['model']['widths']}", flush=True)
                self.send([header(HEARTBEAT, struct.pack("<Q", self.session))])  # confirms the welcome
                return
        sys.exit(f"no answer from the coordinator within {within} s")

    def run(self):
        self.register()
        last_heard = time.monotonic()
        while True:
            frames = self.receive(self.heartbeat)
            self.heartbeat_if_due()
            if frames is None:
                if time.monotonic() - last_heard > self.timeout:
                    self.register(within=60)  # dropped after a stop, or the coordinator restarts: the reconnect timeout
                    last_heard = time.monotonic()
                continue
            last_heard = time.monotonic()
            head = frames[0]
            if len(head) < 4 or head[:2] != b"NN" or head[2] != VERSION:
                self.error(BAD_MESSAGE, "not a version 5 nn message")
                continue
            kind = head[3]
            try:
                if kind == TASK:
                    self.send(self.gradient(frames))
                elif kind == TRAIN:
                    for update in self.train(frames):
                        self.send(update)
                elif kind == SHUTDOWN:
                    print(f"coordinator says shutdown: {Reader(head).text()}", flush=True)
                    return
                elif kind == ERROR:
                    r = Reader(head)
                    code, = r.take("<H")
                    if code == NOT_REGISTERED:
                        self.register()
                        last_heard = time.monotonic()
                elif kind == REFUSE:
                    sys.exit(f"the coordinator refused this worker: {Reader(head).text()}")
            except (BadMessage, UnicodeDecodeError) as e:
                self.error(BAD_MESSAGE, str(e))

    def gradient(self, frames):
        """Synchronous SGD: a task in, a gradient out."""
        if len(frames) != 4:
            raise BadMessage("a task has 4 frames")
        r = Reader(frames[0])
        step, start, first_row = r.take("<QII")
        r.done()
        indices = vector(frames[1], "<u4").astype(np.int64)
        parameters = vector(frames[2], "<f4")
        if len(frames[3]) or len(parameters) != self.network.parameter_count:
            raise BadMessage("parameter or state vector of the wrong length")
        if not 1 <= len(indices) <= self.global_batch or first_row + len(indices) > self.global_batch or indices.max() >= self.data.count:
            raise BadMessage("the task does not fit the data or the global batch")
        began = time.monotonic_ns()
        x, labels = self.data.batch(indices)
        mean_loss, correct, gradient = self.network.backpropagate(parameters, x, labels)
        fields = struct.pack("<QIIIdQ", step, start, len(indices), correct, mean_loss * len(indices), time.monotonic_ns() - began)
        return [header(GRADIENT, fields), gradient.astype("<f4").tobytes(), b""]

    def train(self, frames):
        """Federated: local SGD for each named client over the orders given."""
        if len(frames) != 4:
            raise BadMessage("a train request has 4 frames")
        r = Reader(frames[0])
        round_, rate, epochs, batch, mu, n = r.take("<QfIIfI")
        clients = [r.take("<II") for _ in range(n)]
        r.done()
        orders = vector(frames[1], "<u4").astype(np.int64)
        global_w = vector(frames[2], "<f4")
        hosted = range(self.first_client, self.first_client + self.client_count)
        if len(frames[3]) or len(global_w) != self.network.parameter_count or sum(length for _, length in clients) != len(orders):
            raise BadMessage("vectors of the wrong length")
        if epochs == 0 or not rate > 0 or not mu >= 0 or any(c not in hosted or length == 0 or length % epochs for c, length in clients):
            raise BadMessage("the train request does not fit this worker")
        rate, mu = np.float32(rate), np.float32(mu)
        updates, offset = [], 0
        for client, length in clients:
            order = orders[offset:offset + length]
            offset += length
            began = time.monotonic_ns()
            m = length // epochs
            b = m if batch == 0 else min(batch, m)
            w = global_w.copy()
            for e in range(epochs):
                epoch = order[e * m:(e + 1) * m]
                loss_sum, correct = 0.0, 0
                for s in range(0, m, b):
                    x, labels = self.data.batch(epoch[s:s + b])
                    mean_loss, right, g = self.network.backpropagate(w, x, labels)
                    if mu > 0:
                        g += mu * (w - global_w)
                    w -= rate * g
                    loss_sum += mean_loss * len(labels)
                    correct += right
                    self.heartbeat_if_due()
            fields = struct.pack("<QIIIdQ", round_, client, m, correct, loss_sum, time.monotonic_ns() - began)
            updates.append([header(UPDATE, fields), w.astype("<f4").tobytes(), b""])
        return updates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", required=True)
    parser.add_argument("--data", required=True, help="folder with the MNIST IDX files, raw or .gz")
    parser.add_argument("--name", default=f"python-{os.getpid()}")
    parser.add_argument("--clients", help="federated clients to host, FIRST-LAST")
    parser.add_argument("--key", help="this worker's secret certificate (nn keygen's NAME.key_secret), for CURVE")
    parser.add_argument("--server-key", help="the coordinator's public certificate (NAME.key)")
    args = parser.parse_args()
    if bool(args.key) != bool(args.server_key):
        sys.exit("--key and --server-key go together")
    clients = None
    if args.clients:
        first, last = map(int, args.clients.split("-"))
        clients = (first, last - first + 1)
    Worker(args.connect, TrainingSet(args.data), args.name, clients, args.key, args.server_key).run()


if __name__ == "__main__":
    main()
