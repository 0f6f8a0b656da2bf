"""The bare Litestar baseline for scripts/bench: POST /task parses the JSON body and answers 202 with a task-like
record, with no validation rules, no Redis and no auth. Same uvicorn settings as `taskyard serve`."""

from __future__ import annotations

import json
import time
import uuid

from litestar import Litestar, Request, Response, get, post


@post("/task", status_code=202)
async def submit(request: Request) -> Response[dict]:
    body = json.loads(await request.body())
    return Response({"id": uuid.uuid4().hex, "prompt": body["prompt"], "state": "pending",
                     "created_at": time.time()}, status_code=202)


@get("/health")
async def health() -> dict:
    return {"status": "ok"}


app = Litestar([submit, health], logging_config=None)
