#!/usr/bin/env python3
"""`nn serve` with real HTTP clients: every endpoint, every kind of bad request, uploads of PNG and PGM pictures,
the Prometheus metrics, reloading a new checkpoint under load (file change and SIGHUP), a corrupt checkpoint kept
out, slow clients that do not stall others, and SIGTERM answering the request in flight before exiting 0.

usage: serve_check.py BUILD_DIR WORK_DIR
"""
import atexit
import gzip
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
from PIL import Image

build, work = sys.argv[1], sys.argv[2]
nn = f"{build}/nn"
data = os.environ.get("NN_MNIST_DIR") or os.path.expanduser("~/.local/share/nn/mnist")


def idx(name, offset):
    path = f"{data}/{name}"
    raw = gzip.open(path + ".gz").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
    return np.frombuffer(raw, dtype=np.uint8, offset=offset)


pixels = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 784)
labels = idx("t10k-labels-idx1-ubyte", 8)

model, other = f"{work}/serve-a.safetensors", f"{work}/serve-b.safetensors"
subprocess.run([nn, "train", "--epochs", "3", "--seed", "2", "--out", model], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.run([nn, "train", "--model", "784-64-10", "--epochs", "1", "--seed", "3", "--out", other], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
served = f"{work}/served.safetensors"
shutil.copy(model, served)

LIMIT = 4 << 20
log_path = f"{work}/serve.log"
log = open(log_path, "w")
server = subprocess.Popen([nn, "serve", "--model", served, "--bind", "127.0.0.1:0", "--body-limit", str(LIMIT)],
                          stdout=log, stderr=subprocess.STDOUT)
atexit.register(lambda: server.poll() is None and server.kill())


def log_text():
    return open(log_path).read()


def wait_for(pattern, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        m = re.search(pattern, log_text())
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"the log never said {pattern!r}:\n{log_text()}")


port = int(wait_for(r"at http://127\.0\.0\.1:(\d+)/").group(1))


def request(method, path, body=None, headers=None, connection=None):
    c = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    payload = r.read()
    if connection is None:
        c.close()
    return r.status, r.getheader("content-type"), payload


def post_json(obj, path="/v1/predict"):
    status, _, payload = request("POST", path, json.dumps(obj), {"Content-Type": "application/json"})
    return status, json.loads(payload)


refusals = 0


def expect_error(status, fragment, method="POST", path="/v1/predict", body=None, headers=None):
    global refusals
    refusals += 1
    got, ctype, payload = request(method, path, body, headers)
    assert got == status, (got, status, payload[:300])
    assert ctype == "application/json", ctype
    message = json.loads(payload)["error"]
    assert fragment in message, (fragment, message)
    return message


# Endpoints.
status, _, payload = request("GET", "/healthz")
assert status == 200 and json.loads(payload) == {"status": "ok"}
status, _, payload = request("GET", "/v1/model")
info = json.loads(payload)
assert status == 200 and info["widths"] == [784, 128, 10] and info["parameters"] == 101770, info
assert info["training"]["training"]["epochs"] == 3 and 0.9 < info["testAccuracy"] < 1, info
status, ctype, page = request("GET", "/")
assert status == 200 and ctype.startswith("text/html") and b"<canvas" in page and b"src=" not in page and b"href=" not in page, \
    "the page must be self-contained"

# Predictions from JSON equal `nn predict` (which runs the same network on the same pixels), in 0…1 and in 0…255.
first = list(range(64))
out = subprocess.run([nn, "predict", "--model", model, "--json", "--index", *map(str, first)], check=True,
                     capture_output=True, text=True).stdout
expected = np.array([json.loads(line)["probabilities"] for line in out.splitlines()])
scaled = (pixels[first].astype(np.float32) * np.float32(1 / 255)).astype(float)
status, body = post_json({"instances": [[float(v) for v in row] for row in scaled]})
assert status == 200 and len(body["predictions"]) == 64
got = np.array([p["probabilities"] for p in body["predictions"]])
assert np.abs(got - expected).max() < 1e-6, np.abs(got - expected).max()
assert [p["class"] for p in body["predictions"]] == list(expected.argmax(axis=1))
assert all(len(p["top"]) == 3 and p["top"][0]["class"] == p["class"] for p in body["predictions"])
status, raw255 = post_json({"instances": [pixels[i].tolist() for i in first[:8]]})
assert status == 200 and np.abs(np.array([p["probabilities"] for p in raw255["predictions"]]) - expected[:8]).max() < 1e-6
status, one = post_json({"instances": [scaled[0].tolist()]}, "/v1/predict?top=10")
assert status == 200 and len(one["predictions"][0]["top"]) == 10 and abs(sum(one["predictions"][0]["probabilities"]) - 1) < 1e-5
print(f"serve: JSON predictions of 64 test images equal nn predict (max |Δp| {np.abs(got - expected).max():.1e}), 0…255 input too")

# Pictures: an MNIST digit as PGM and as PNG of other sizes, colours, polarity and transparency, all laid out again.
def png(image):
    b = io.BytesIO()
    image.save(b, format="PNG")
    return b.getvalue()


def predict_image(data, content_type="image/png", name=""):
    status, _, payload = request("POST", "/v1/predict?input=true", data, {"Content-Type": content_type})
    assert status == 200, (name, payload)
    return json.loads(payload)["predictions"][0]


agree = 0
for i in range(50):
    p = predict_image(b"P5\n28 28\n255\n" + pixels[i].tobytes(), "image/x-portable-graymap")
    agree += p["class"] == labels[i]
    assert len(p["input"]) == 784
assert agree >= 47, f"only {agree} of 50 PGM uploads classified correctly"
digit = Image.fromarray(pixels[0].reshape(28, 28))  # a 7, white on black


def on_paper(image):
    paper = Image.new("RGB", (300, 200), "white")
    paper.paste(image, (50, 0))
    return paper


variants = {
    "dark ink on white, 300×200 RGB": on_paper(Image.merge("RGB", [Image.eval(digit, lambda v: 255 - v).resize((200, 200))] * 3)),
    "light ink on black, 56×56 grey": digit.resize((56, 56)),
    "black ink on transparent, RGBA": Image.merge("RGBA", [Image.new("L", (112, 112), 0)] * 3 + [digit.resize((112, 112))]),
    "16-bit grey, 84×84": Image.fromarray(np.array(digit.resize((84, 84))).astype(np.uint16) * 257),
    "palette": Image.eval(digit, lambda v: 255 - v).resize((90, 90)).convert("P"),
}
for name, image in variants.items():
    p = predict_image(png(image), name=name)
    assert p["class"] == 7, (name, p["top"])
print(f"serve: {agree}/50 PGM uploads of test digits right; a 7 read as 7 from {len(variants)} PNG kinds ({'; '.join(variants)})")

# Bad requests: a 4xx with a JSON error that says what was wrong.
zero = [0] * 784
expect_error(400, "has 783 values", body=json.dumps({"instances": [zero[:-1]]}))
expect_error(400, "has more than 784 values", body=json.dumps({"instances": [zero + [0]]}))
expect_error(400, "values must lie in 0…1 or 0…255", body=json.dumps({"instances": [[-0.5] + zero[1:]]}))
expect_error(400, "values must lie in 0…1 or 0…255", body=json.dumps({"instances": [[256] + zero[1:]]}))
expect_error(400, "JSON has no NaN", body='{"instances": [[NaN' + ",0" * 783 + "]]}")
expect_error(400, "malformed JSON", body='{"instances": [[0, 0,')
expect_error(400, "malformed JSON", body='{"instances": [[0,,0]]}', headers={"Content-Type": "application/json"})
expect_error(400, "malformed JSON", body="not json", headers={"Content-Type": "application/json"})
expect_error(400, "not a number", body=json.dumps({"instances": [["0"] * 784]}))
expect_error(400, "unknown key", body=json.dumps({"inputs": [zero]}))
expect_error(400, "is empty", body=json.dumps({"instances": []}))
expect_error(400, "the body is empty", body=b"")
expect_error(413, "more than 1024 instances", body=json.dumps({"instances": [zero] * 1025}, separators=(",", ":")))
expect_error(415, "not an image", body=b"GIF89a" + bytes(100), headers={"Content-Type": "image/gif"})
expect_error(415, "multipart", body=b"--x\r\n\r\n--x--", headers={"Content-Type": "multipart/form-data; boundary=x"})
expect_error(400, "not a readable PNG", body=png(digit)[:60])
expect_error(400, "PGM", body=b"P5\n28 28\n255\n" + bytes(10))
expect_error(422, "blank", body=png(Image.new("L", (40, 40), 255)))
# A PNG whose header claims 100,000 × 100,000 pixels is refused before anything that size is allocated.
huge = bytearray(png(Image.new("L", (1, 1), 0)))  # IHDR: width and height at bytes 16–23, its CRC at 29–32
huge[16:24] = (100000).to_bytes(4, "big") * 2
huge[29:33] = zlib.crc32(bytes(huge[12:29])).to_bytes(4, "big")
expect_error(413, "at most", body=bytes(huge))
expect_error(413, "limit is", body=b"{" + b" " * (LIMIT + 10) + b"}")
expect_error(400, "top must be", path="/v1/predict?top=0", body=json.dumps({"instances": [zero]}))
expect_error(404, "no such endpoint", method="GET", path="/v2/anything")
expect_error(405, "GET is not answered", method="GET", path="/v1/predict")

# A body over the limit sent in chunks, with no length announced: refused as it passes the limit.
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
chunk = b" " * 65536
answer = b""
try:
    for _ in range(LIMIT // len(chunk) + 4):
        s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
except (BrokenPipeError, ConnectionResetError):
    pass
s.settimeout(5)
try:
    while True:
        part = s.recv(65536)
        if not part:
            break
        answer += part
except (ConnectionResetError, socket.timeout):
    pass
s.close()
assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
refusals += 1

# Clients that stall, half-sent requests and garbage do not hold up anyone else.
stalled = []
for i in range(50):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"instances\": [[0" if i % 2 else b"GARBAGE \x00\xff\r\n\r\n")
    stalled.append(c)
start = time.time()
status, body = post_json({"instances": [scaled[1].tolist()]})
assert status == 200 and body["predictions"][0]["class"] == int(expected[1].argmax())
assert time.time() - start < 1, f"a request took {time.time() - start:.2f} s beside 50 stalled connections"
for c in stalled:
    c.close()
print(f"serve: {refusals} kinds of bad request answered 4xx with a JSON reason; 50 stalled or garbage connections did not delay a request")

# Metrics.
status, _, payload = request("GET", "/metrics")
text = payload.decode()
for needle in ['nn_serve_requests_total{endpoint="/v1/predict",status="200"}', 'nn_serve_errors_total{endpoint="/v1/predict",status="400"}',
               'nn_serve_request_seconds_bucket{endpoint="/v1/predict",le="0.001"}', 'nn_serve_batch_size_bucket{le="64.0"}',
               'nn_serve_errors_total{endpoint="other",status="404"}']:
    assert needle in text, needle
print("serve: /metrics counts requests and errors by endpoint and status, latency and batch-size histograms")

# Reloads under load: no request fails while the checkpoint is replaced, by rename (as trainers write) and on SIGHUP.
failures, answered, stop = [], [0], threading.Event()


def load():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"instances": [scaled[2].tolist()] * 4})
    while not stop.is_set():
        try:
            status, _, payload = request("POST", "/v1/predict", body, {"Content-Type": "application/json"}, connection=c)
            if status != 200:
                failures.append(payload)
            answered[0] += 1
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            failures.append(repr(e))
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)


threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
for t in threads:
    t.start()
time.sleep(0.3)
server.send_signal(signal.SIGHUP)
wait_for(r"reloaded .*\(SIGHUP\)")
shutil.copy(other, served + ".tmp")
os.replace(served + ".tmp", served)
wait_for(r"reloaded .*\(the file changed\): 784-64-10")
assert json.loads(request("GET", "/v1/model")[2])["widths"] == [784, 64, 10]
open(served + ".tmp", "wb").write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}")
os.replace(served + ".tmp", served)
wait_for(r"cannot reload .*still serving")
time.sleep(0.3)
stop.set()
for t in threads:
    t.join()
assert not failures, failures[:3]
assert json.loads(request("GET", "/v1/model")[2])["widths"] == [784, 64, 10], "a corrupt checkpoint replaced the model"
print(f"serve: {answered[0]} requests during a SIGHUP reload, a renamed-in checkpoint and a corrupt one: none failed")

# SIGTERM: the request in flight is answered, then the process exits 0 and the port closes.
body = json.dumps({"instances": [scaled[3].tolist()]}).encode()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:1000])
time.sleep(0.2)
server.send_signal(signal.SIGTERM)
wait_for(r"received SIGTERM")
time.sleep(0.3)
try:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    raise AssertionError("new connections are still accepted after SIGTERM")
except ConnectionRefusedError:
    pass
s.sendall(body[1000:])
s.settimeout(5)
answer = b""
while True:
    part = s.recv(65536)
    if not part:
        break
    answer += part
    head, _, rest = answer.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head, re.I)
    if length and len(rest) >= int(length.group(1)):
        break
assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
out = subprocess.run([nn, "predict", "--model", other, "--json", "--index", "3"], check=True, capture_output=True, text=True).stdout
assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"][0]["class"] == json.loads(out)["predicted"]
assert server.wait(timeout=10) == 0, "nn serve did not exit 0 after SIGTERM"
s.close()
print("serve: SIGTERM closed the port, answered the request in flight, exited 0")
print("serve: all checks passed")
