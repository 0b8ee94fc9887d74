#!/usr/bin/env python3
"""The draw-a-digit page in headless Chromium: pointer events draw a 7 (mouse) and a 1 (touch) on the canvas, and
the page's top class and bars must follow; the page loads nothing from elsewhere. Screenshots are kept.

usage: serve_browser.py BUILD_DIR WORK_DIR ARTEFACT_DIR
"""
import atexit
import os
import re
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By

build, work, artefacts = sys.argv[1:4]
nn = f"{build}/nn"
model = f"{work}/browser.safetensors"
subprocess.run([nn, "train", "--epochs", "3", "--seed", "1", "--out", model], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
log_path = f"{work}/serve.log"
server = subprocess.Popen([nn, "serve", "--model", model, "--bind", "127.0.0.1:0"], stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
atexit.register(lambda: server.poll() is None and server.kill())
deadline = time.time() + 10
while not (m := re.search(r"at http://127\.0\.0\.1:(\d+)/", open(log_path).read())):
    assert time.time() < deadline and server.poll() is None, open(log_path).read()
    time.sleep(0.05)
url = f"http://127.0.0.1:{m.group(1)}/"

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,760", "--disable-dev-shm-usage"]:
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
atexit.register(driver.quit)
driver.get(url)


def wait(condition, what, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"the page never showed {what}; browser log: {driver.get_log('browser')}")


wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 10, "ten bars")
details = driver.find_element(By.ID, "model").text
assert "784-128-10" in details and "101,770" in details and "%" in details, details
pad = driver.find_element(By.ID, "pad")


def draw(strokes, kind):
    """Each stroke is a list of points relative to the canvas centre, in its 280×280 pixels."""
    pointer = PointerInput(kind, "finger" if kind == interaction.POINTER_TOUCH else "mouse")
    actions = ActionBuilder(driver, mouse=pointer, duration=10)
    for stroke in strokes:
        x, y = stroke[0]
        actions.pointer_action.move_to(pad, x, y).pointer_down()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            for t in range(1, 9):  # intermediate moves, as a hand makes
                actions.pointer_action.move_to(pad, round(x0 + (x1 - x0) * t / 8), round(y0 + (y1 - y0) * t / 8))
        actions.pointer_action.pointer_up()
    actions.perform()


def answer_after(strokes, kind, name):
    driver.find_element(By.ID, "clear").click()
    assert driver.find_element(By.ID, "answer").get_attribute("data-class") == ""
    draw(strokes, kind)
    # The page sends the drawing as the strokes go; wait for the answer to the finished drawing to settle.
    last, stable_since = None, time.time()
    deadline = time.time() + 10
    while time.time() < deadline:
        now = driver.execute_script(
            "return [document.getElementById('answer').dataset.class, [...document.querySelectorAll('#bars .fill')].map(e => e.style.width).join()]")
        if now != last:
            last, stable_since = now, time.time()
        elif now[0] and time.time() - stable_since > 0.5:
            break
        time.sleep(0.05)
    shown, best, widths = driver.execute_script(
        "return [document.getElementById('answer').dataset.class, document.querySelector('span.best').textContent,"
        " [...document.querySelectorAll('#bars .fill')].map(e => parseFloat(e.style.width))]")
    path = f"{artefacts}/serve-draw-{name}.png"
    driver.save_screenshot(path)
    assert abs(sum(widths) - 100) < 1, widths
    return shown, best, max(widths), path


seven = [[(-75, -85), (75, -85), (-15, 95)]]
one = [[(5, -95), (0, 95)]]
results = {}
for name, strokes, kind, want in [("7", seven, interaction.POINTER_MOUSE, "7"), ("1", one, interaction.POINTER_TOUCH, "1")]:
    shown, best, top, path = answer_after(strokes, kind, name)
    assert shown == want and best == want, f"drew a {want} ({kind}), the page says {shown} (bar {best}); screenshot {path}"
    results[name] = (top, path)
    print(f"browser: drew a {want} with {kind} events; the page shows {shown} at {top:.1f}% ({path})")

# Nothing was fetched from anywhere but the server.
requests = [m for m in driver.get_log("performance") if '"Network.requestWillBeSent"' in m["message"]]
hosts = set(re.findall(r'"url":"(https?://[^/"]+)', "".join(m["message"] for m in requests)))
assert hosts <= {url.rstrip("/")}, hosts
print("browser: all checks passed")
