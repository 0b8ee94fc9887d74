"""The server a Python user would deploy for an exported model, for `scripts/serve-bench` to compare `nn serve`
against: FastAPI on uvicorn (uvloop, httptools), orjson for the JSON both ways, onnxruntime with one thread, the
same request and answer shape.

NN_ONNX_MODEL names the .onnx file. Run: uvicorn --app-dir bench fastapi_onnx:app --workers 1
"""
import os

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["NN_ONNX_MODEL"], options, providers=["CPUExecutionProvider"])
app = FastAPI()


@app.post("/v1/predict")
async def predict(request: Request):
    try:
        x = np.asarray(orjson.loads(await request.body())["instances"], dtype=np.float32)
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as e:
        raise HTTPException(400, str(e))
    if x.ndim != 2 or x.shape[1] != 784:
        raise HTTPException(400, f"instances must be [N, 784], got {list(x.shape)}")
    if x.max(initial=0) > 1:
        x = x / 255
    logits, probabilities = session.run(["logits", "probabilities"], {"image": x})
    top = np.argsort(-probabilities, axis=1)[:, :3]
    predictions = [
        {"class": int(t[0]), "top": [{"class": int(c), "probability": float(p[c])} for c in t],
         "probabilities": p, "logits": z}
        for t, p, z in zip(top, probabilities, logits)
    ]
    return Response(orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


@app.get("/healthz")
async def health():
    return {"status": "ok"}
