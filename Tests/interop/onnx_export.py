#!/usr/bin/env python3
"""Exports nn checkpoints to ONNX, checks the files with the onnx checker, runs them in onnxruntime on the 10,000 test
images and compares the probabilities and logits with `nn predict --json` (to 1e-5).

usage: onnx_export.py NN_BINARY WORK_DIR
Models: a plain MLP, one with batch norm, one with residual blocks (and batch norm), and one with tanh, dropout and
the BCE loss (sigmoid probabilities), each trained for one epoch.
"""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort

nn, work = sys.argv[1], sys.argv[2]
data = os.environ.get("NN_MNIST_DIR") or os.path.expanduser("~/.local/share/nn/mnist")
path = f"{data}/t10k-images-idx3-ubyte"
raw = gzip.open(path + ".gz").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784).astype(np.float32) * np.float32(1 / 255)
assert images.shape == (10000, 784)

MODELS = {
    "plain": ["--model", "784-128-10"],
    "batchnorm": ["--model", "784-128-64-10", "--batch-norm"],
    "residual": ["--model", "784-96-10", "--residual-blocks", "2", "--batch-norm"],
    "tanh-dropout-bce": ["--model", "784-64-10", "--activation", "tanh", "--dropout", "0.2", "--loss", "bce"],
}

for name, flags in MODELS.items():
    checkpoint, exported = f"{work}/{name}.safetensors", f"{work}/{name}.onnx"
    subprocess.run([nn, "train", *flags, "--epochs", "1", "--batch", "128", "--seed", "5", "--out", checkpoint],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([nn, "export", "--model", checkpoint, "--format", "onnx", "-o", exported], check=True)

    model = onnx.load(exported)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 13, model.opset_import
    assert [i.name for i in model.graph.input] == ["image"], model.graph.input
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"], model.graph.output
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N", "the batch dimension is not free"
    assert not any(n.op_type == "Dropout" for n in model.graph.node), "dropout left in an inference graph"
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["training"])["batch"] == 128 and "test_accuracy" in props, props
    assert json.loads(props["model"])["widths"] == [int(w) for w in flags[1].split("-")], props["model"]

    session = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(["logits", "probabilities"], {"image": images})
    single = session.run(["probabilities"], {"image": images[:1]})[0]
    assert np.allclose(single, probabilities[:1], atol=1e-6), "batch of one differs from the first row of the batch"

    out = subprocess.run([nn, "predict", "--model", checkpoint, "--json", "--index", *map(str, range(10000))],
                         check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 10000, len(rows)
    nn_p = np.array([r["probabilities"] for r in rows])
    nn_logits = np.array([r["logits"] for r in rows])
    worst = float(np.abs(nn_p - probabilities).max())
    worst_logit = float(np.abs(nn_logits - logits).max())
    accuracy = float((probabilities.argmax(axis=1) == np.array([r["label"] for r in rows])).mean())
    assert worst <= 1e-5, f"{name}: probabilities differ by {worst}"
    assert (probabilities.argmax(axis=1) == nn_p.argmax(axis=1)).all(), f"{name}: top classes differ"
    ops = sorted({n.op_type for n in model.graph.node})
    print(f"onnx {name}: {os.path.getsize(exported)} bytes, ops {','.join(ops)}; onnxruntime on 10,000 test images: "
          f"max |Δp| {worst:.2e}, max |Δlogit| {worst_logit:.2e}, accuracy {accuracy:.2%}")

# A file that is not a checkpoint is refused with the reason, and nothing is written.
bad = f"{work}/bad.safetensors"
open(bad, "wb").write(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
result = subprocess.run([nn, "export", "--model", bad, "-o", f"{work}/bad.onnx"], capture_output=True, text=True)
assert result.returncode != 0 and "not an nn checkpoint" in result.stderr, result
assert not os.path.exists(f"{work}/bad.onnx")
print("onnx export: all checks passed")
