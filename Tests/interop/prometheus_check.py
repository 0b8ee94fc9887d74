#!/usr/bin/env python3
"""A real Prometheus server scrapes a run: a coordinator and two workers with `--metrics-port`, scraped every
second by Debian's prometheus (installed here when missing, started and stopped by this script), whose HTTP
query API must then return the run's series for all three targets. Also prints `nn launch`'s samples/s with and
without `--metrics-port`.

Usage: prometheus_check.py BUILD_DIR SCRATCH_DIR   (MNIST from $NN_MNIST_DIR or ~/.local/share/nn/mnist)
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

build, scratch = sys.argv[1], sys.argv[2]
env = dict(os.environ, OPENBLAS_NUM_THREADS="1")

if not shutil.which("prometheus"):
    if os.geteuid() != 0:
        print("prometheus: not installed and not root; the scrape test is not run")
        sys.exit(0)
    subprocess.run(["apt-get", "install", "-y", "-qq", "prometheus"], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port, expression):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]["result"]


ports = [free_port() for _ in range(3)]
zmq_port, prometheus_port = free_port(), free_port()
config = f"{scratch}/prometheus.yml"
with open(config, "w") as f:
    f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: nn\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(f'127.0.0.1:{p}') for p in ports)}]\n")
prometheus = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={scratch}/prometheus-data",
                               f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                              stdout=open(f"{scratch}/prometheus.log", "w"), stderr=subprocess.STDOUT)
failures = []
try:
    # The run starts once the server is ready to scrape, so that its first seconds are seen too.
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/-/ready", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError("prometheus did not become ready in 60 s: " + open(f"{scratch}/prometheus.log").read()[-2000:])
        time.sleep(0.2)
    endpoint = f"tcp://127.0.0.1:{zmq_port}"
    processes = [subprocess.Popen([f"{build}/nn-coordinator", "--bind", endpoint, "--workers", "2", "--model", "784-128-10",
                                   "--batch", "32", "--epochs", "6", "--metrics-port", str(ports[0])],
                                  stdout=open(f"{scratch}/prom-coordinator.log", "w"), stderr=subprocess.STDOUT, env=env)]
    processes += [subprocess.Popen([f"{build}/nn-worker", "--connect", endpoint, "--name", f"w{i}", "--metrics-port", str(ports[i + 1])],
                                   stdout=open(f"{scratch}/prom-w{i}.log", "w"), stderr=subprocess.STDOUT, env=env)
                  for i in range(2)]
    # Scraped every second while the run goes on (about ten seconds).
    deadline = time.time() + 30
    while time.time() < deadline and len([r for r in query(prometheus_port, "up") if r["value"][1] == "1"]) < 3:
        time.sleep(0.5)
    statuses = [p.wait(timeout=300) for p in processes]
    if statuses != [0, 0, 0]:
        failures.append(f"the run's processes exited with {statuses}")
    time.sleep(1)
    up = query(prometheus_port, "max_over_time(up[10m])")
    if sorted(r["metric"]["instance"] for r in up if float(r["value"][1]) == 1) != sorted(f"127.0.0.1:{p}" for p in ports):
        failures.append(f"not every target was scraped: {up}")
    for expression, instances, check in [
        ("max_over_time(nn_round[10m])", 1, lambda v: 0 < v <= 6 * 938),
        ("max_over_time(nn_epoch[10m])", 1, lambda v: 1 <= v <= 6),
        ("max_over_time(nn_workers_live[10m])", 1, lambda v: v == 2),
        ("max_over_time(nn_samples_per_second[10m])", 1, lambda v: v > 0),
        ("max_over_time(nn_round_seconds{part=\"compute\"}[10m])", 1, lambda v: v > 0),
        ("max_over_time(nn_bytes_sent_total[10m])", 1, lambda v: v > 0),
        ("max_over_time(nn_test_accuracy[10m])", 1, lambda v: v > 0.9),
        ("max_over_time(nn_worker_tasks_total[10m])", 2, lambda v: v > 0),
        ("max_over_time(nn_resident_memory_bytes[10m])", 3, lambda v: v > 1e7),
    ]:
        result = query(prometheus_port, expression)
        values = [float(r["value"][1]) for r in result]
        if len(values) != instances or not all(check(v) for v in values):
            failures.append(f"{expression}: {values}")
        else:
            print(f"prometheus: {expression} = {', '.join(f'{v:g}' for v in values)}", flush=True)
finally:
    prometheus.terminate()
    prometheus.wait(timeout=30)


def samples_per_second(extra):
    out = subprocess.run([f"{build}/nn", "launch", "--insecure", "--workers", "2", "--model", "784-128-10", "--epochs", "2"] + extra,
                         env=env, capture_output=True, text=True).stdout
    return float(re.findall(r"([\d.]+)k samples/s", out)[-1]) * 1000


plain, served = samples_per_second([]), samples_per_second(["--metrics-port", str(free_port())])
print(f"prometheus: nn launch --insecure --workers 2, epoch 2: {plain:.0f} samples/s without --metrics-port, {served:.0f} with", flush=True)
for f in failures:
    print(f"FAIL: {f}")
print(f"prometheus: {1 if not failures else 0} passed, {1 if failures else 0} failed")
sys.exit(1 if failures else 0)
