"""A bare HTTP echo server on the same stack KServe uses (FastAPI on uvicorn, one worker): the
baseline for what HTTP + JSON costs before any model work."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/v1/models/echo:predict")
async def echo(request: Request) -> dict:
    body = await request.json()
    return {"predictions": body.get("instances", [])}


@app.get("/ready")
async def ready() -> dict:
    return {"ready": True}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
