#!/usr/bin/env python3
"""TensorBoard reads nn's event files: `nn train`, `nn launch` (a coordinator and two workers) and `nn simulate`
each write `--metrics` JSONL and `--tensorboard` events of the same run; TensorBoard's own event accumulator must
find every numeric JSONL field as a scalar with the same value (float32) at the same step, and a weight histogram
per parameter tensor and step. Also prints the samples/s of `nn train` with and without `--tensorboard`.

Usage: tensorboard_check.py BUILD_DIR SCRATCH_DIR   (MNIST from $NN_MNIST_DIR or ~/.local/share/nn/mnist)
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

build, scratch = sys.argv[1], sys.argv[2]
env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
passed = failed = 0


def check(name, command, step_key, tensors):
    global passed, failed
    metrics, logdir = f"{scratch}/{name}.jsonl", f"{scratch}/{name}-tb"
    result = subprocess.run(command + ["--metrics", metrics, "--tensorboard", logdir], env=env, capture_output=True, text=True)
    problems = []
    if result.returncode != 0:
        problems.append(f"exit {result.returncode}: {result.stderr[-2000:]}")
    else:
        accumulator = EventAccumulator(logdir, size_guidance={"scalars": 0, "histograms": 0})
        accumulator.Reload()
        tags = accumulator.Tags()
        lines = [json.loads(line) for line in open(metrics) if '"summary"' not in line]
        compared = 0
        for line in lines:
            step = line[step_key]
            for tag, value in line.items():
                if tag == step_key or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if tag not in tags["scalars"]:
                    problems.append(f"scalar {tag} missing")
                    continue
                found = [e.value for e in accumulator.Scalars(tag) if e.step == step]
                if found != [np.float32(value)]:
                    problems.append(f"{tag} at step {step}: TensorBoard has {found}, the JSONL {value}")
                compared += 1
        for tensor in tensors:
            steps = [e.step for e in accumulator.Histograms(f"weights/{tensor}")] if f"weights/{tensor}" in tags["histograms"] else []
            if steps != [line[step_key] for line in lines]:
                problems.append(f"histogram weights/{tensor} at steps {steps}")
        if compared == 0:
            problems.append("no scalar compared")
    ok = not problems
    print(f"{name}: {'ok' if ok else 'FAILED'}" + ("" if ok else ": " + "; ".join(problems[:5])), flush=True)
    passed, failed = passed + ok, failed + (not ok)


def samples_per_second(extra):
    out = subprocess.run([f"{build}/nn", "train", "--model", "784-128-10", "--epochs", "2"] + extra, env=env, capture_output=True, text=True).stdout
    return float(re.findall(r"([\d.]+)k samples/s", out)[-1]) * 1000


dense = ["0.weight", "0.bias", "2.weight", "2.bias"]
check("train", [f"{build}/nn", "train", "--model", "784-32-10", "--epochs", "2"], "epoch", dense)
check("launch", [f"{build}/nn", "launch", "--workers", "2", "--model", "784-32-10", "--epochs", "2"], "epoch", dense)
check("simulate", [f"{build}/nn", "simulate", "--config", f"{repo}/experiments/mnist-2nn-iid.json", "--set-rounds", "3"], "round",
      dense + ["4.weight", "4.bias"])
plain, logged = samples_per_second([]), samples_per_second(["--tensorboard", f"{scratch}/overhead-tb"])
print(f"nn train 784-128-10, epoch 2: {plain:.0f} samples/s without --tensorboard, {logged:.0f} with", flush=True)
print(f"tensorboard: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
