#!/usr/bin/env python3
"""Reads an nn checkpoint with Python's safetensors, runs the network in NumPy, and checks that it predicts what
`nn predict` predicts, with the same probabilities.

usage: safetensors_predict.py NN_BINARY WORK_DIR
Trains a small model with batch norm and a residual block (one epoch), so every tensor kind is covered.
"""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

nn, work = sys.argv[1], sys.argv[2]
checkpoint = f"{work}/interop.safetensors"
subprocess.run([nn, "train", "--model", "784-64-10", "--batch-norm", "--residual-blocks", "1", "--epochs", "1",
                "--batch", "128", "--seed", "3", "--out", checkpoint], check=True, stdout=subprocess.DEVNULL)

tensors = load_file(checkpoint)
with safe_open(checkpoint, framework="numpy") as f:
    metadata = f.metadata()
spec = json.loads(metadata["model"])
assert spec["widths"] == [784, 64, 10] and spec["batchNorm"] and spec["residualBlocks"] == 1, spec

indices = list(range(200))
out = subprocess.run([nn, "predict", "--model", checkpoint, "--json", "--top", "10", "--index", *map(str, indices)],
                     check=True, capture_output=True, text=True).stdout
rows = [json.loads(line) for line in out.splitlines()]

# The same pixels nn used: test images from the IDX file, scaled to [0, 1].
data = os.environ.get("NN_MNIST_DIR") or os.path.expanduser("~/.local/share/nn/mnist")
path = f"{data}/t10k-images-idx3-ubyte"
raw = gzip.open(path + ".gz").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)[indices].astype(np.float32) * np.float32(1 / 255)


def dense(x, name):
    return x @ tensors[f"{name}.weight"].T + tensors[f"{name}.bias"]


def batch_norm(x, name):
    return (x - tensors[f"{name}.running_mean"]) / np.sqrt(tensors[f"{name}.running_var"] + 1e-5) * tensors[f"{name}.weight"] + tensors[f"{name}.bias"]


relu = lambda x: np.maximum(x, 0)
# Layers: 0 dense, 1 batch norm, 2 relu, 3 residual(0 dense, 1 batch norm, 2 relu, 3 dense), 4 dense.
h = relu(batch_norm(dense(images, "0"), "1"))
h = h + dense(relu(batch_norm(dense(h, "3.body.0"), "3.body.1")), "3.body.3")
logits = dense(h, "4")
p = np.exp(logits - logits.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)

agree = 0
worst = 0.0
for i, row in enumerate(rows):
    nn_p = np.zeros(10)
    for entry in row["top"]:
        nn_p[entry["class"]] = entry["probability"]
    worst = max(worst, float(np.abs(nn_p - p[i]).max()))
    agree += int(row["predicted"] == int(p[i].argmax()))
print(f"numpy and nn predict agree on {agree}/{len(rows)} test images; largest probability difference {worst:.2e}")
assert agree == len(rows), "predictions differ"
assert worst < 1e-4, "probabilities differ"
print("1 passed, 0 failed")
