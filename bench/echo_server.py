"""A bare HTTP echo server on the same stack KServe uses (FastAPI on uvicorn; one worker, or several as
uvicorn runs them): the
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
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    uvicorn.run("bench.echo_server:app" if workers > 1 else app, host="127.0.0.1", port=int(sys.argv[1]),
                workers=workers, log_level="warning", access_log=False)
