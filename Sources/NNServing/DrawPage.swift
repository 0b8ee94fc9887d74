/// The page at `GET /`: draw a digit, see the model's ten probabilities as you draw. Self-contained (no scripts,
/// styles or fonts from elsewhere): it sends the canvas as a PNG to /v1/predict, so it sees exactly what an upload
/// gets, and shows the 28×28 input the server laid the drawing out as.
enum DrawPage {
    static let bytes = Array(html.utf8)

    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nn: draw a digit</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
  main { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }
  #pad { border: 1px solid #999; background: #fff; touch-action: none; cursor: crosshair; border-radius: 4px; }
  #bars { display: grid; grid-template-columns: 1.5rem 16rem 4rem; gap: .35rem .5rem; align-items: center; }
  .bar { height: 1.1rem; background: #e4e4e4; border-radius: 3px; overflow: hidden; }
  .fill { height: 100%; width: 0; background: #4a7bd0; transition: width .08s; }
  .best .fill { background: #d0764a; }
  .best { font-weight: bold; }
  #answer { font-size: 3rem; font-weight: bold; min-height: 3.5rem; }
  #seen { image-rendering: pixelated; border: 1px solid #ccc; width: 84px; height: 84px; background: #000; }
  button { font-size: 1rem; padding: .4rem 1.2rem; margin-top: .6rem; }
  #model { font-size: .85rem; color: #555; max-width: 26rem; }
  #model dt { font-weight: bold; float: left; clear: left; width: 7rem; }
  #model dd { margin-left: 7.5rem; overflow-wrap: anywhere; }
  #status { color: #a33; min-height: 1.2rem; }
</style>
</head>
<body>
<h1>Draw a digit</h1>
<main>
  <section>
    <canvas id="pad" width="280" height="280" aria-label="drawing pad"></canvas><br>
    <button id="clear" type="button">Clear</button>
    <p id="status" role="status"></p>
  </section>
  <section>
    <div>Top class: <span id="answer" data-class=""></span></div>
    <div id="bars"></div>
    <p>What the model sees (28×28):<br><canvas id="seen" width="28" height="28"></canvas></p>
  </section>
  <section>
    <h2>Model</h2>
    <dl id="model"></dl>
  </section>
</main>
<script>
"use strict";
const pad = document.getElementById("pad"), ctx = pad.getContext("2d");
const bars = document.getElementById("bars"), answer = document.getElementById("answer");
const status = document.getElementById("status"), seen = document.getElementById("seen").getContext("2d");
let drawing = false, inked = false, last = null, pending = false, again = false, classes = 10;

function blank() {
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false; answer.textContent = ""; answer.dataset.class = "";
  seen.fillStyle = "#000"; seen.fillRect(0, 0, 28, 28);
  showBars(new Array(classes).fill(0), -1);
}

function showBars(p, best) {
  bars.replaceChildren();
  p.forEach((v, i) => {
    const label = document.createElement("span"); label.textContent = i;
    const bar = document.createElement("div"); bar.className = "bar";
    const fill = document.createElement("div"); fill.className = "fill"; fill.style.width = (100 * v).toFixed(1) + "%";
    bar.append(fill);
    const value = document.createElement("span"); value.textContent = (100 * v).toFixed(1) + "%";
    value.id = "p" + i;
    for (const e of [label, bar, value]) if (i === best) e.classList.add("best");
    bars.append(label, bar, value);
  });
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height };
}

function stroke(to) {
  ctx.strokeStyle = "#000"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.beginPath(); ctx.moveTo(last.x, last.y); ctx.lineTo(to.x, to.y); ctx.stroke();
  last = to; inked = true; predict();
}

pad.addEventListener("pointerdown", e => { drawing = true; pad.setPointerCapture(e.pointerId); last = point(e); stroke(point(e)); });
pad.addEventListener("pointermove", e => { if (drawing) stroke(point(e)); });
for (const type of ["pointerup", "pointercancel"]) pad.addEventListener(type, () => { drawing = false; predict(); });
document.getElementById("clear").addEventListener("click", blank);

// One request at a time; strokes made while it runs are sent when it returns.
function predict() {
  if (!inked) return;
  if (pending) { again = true; return; }
  pending = true;
  pad.toBlob(async png => {
    try {
      const r = await fetch("/v1/predict?input=true&top=1", { method: "POST", headers: { "Content-Type": "image/png" }, body: png });
      const body = await r.json();
      if (!r.ok) { status.textContent = body.error; return; }
      status.textContent = "";
      const p = body.predictions[0];
      answer.textContent = p.class; answer.dataset.class = p.class;
      showBars(p.probabilities, p.class);
      const image = seen.createImageData(28, 28);
      p.input.forEach((v, i) => { const g = Math.round(255 * v); image.data.set([g, g, g, 255], 4 * i); });
      seen.putImageData(image, 0, 0);
    } catch (err) {
      status.textContent = "the server did not answer: " + err;
    } finally {
      pending = false;
      if (again) { again = false; predict(); }
    }
  }, "image/png");
}

async function describe() {
  const m = await (await fetch("/v1/model")).json();
  classes = m.classes;
  const rows = [["Architecture", m.architecture], ["Parameters", m.parameters.toLocaleString("en")],
                ["Test accuracy", m.testAccuracy === undefined ? "not recorded" : (100 * m.testAccuracy).toFixed(2) + "%"],
                ["File", m.path], ["Loaded", m.loadedAt]];
  const t = m.training.training || m.training.experiment;
  if (t) rows.push(["Training", Object.entries(t).map(([k, v]) => k + " " + JSON.stringify(v)).join(", ")]);
  const list = document.getElementById("model"); list.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    list.append(dt, dd);
  }
  blank();
}
describe().catch(err => { status.textContent = "cannot read the model: " + err; blank(); });
</script>
</body>
</html>
"""#
}
