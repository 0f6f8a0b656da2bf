"""The bare Litestar baseline for scripts/bench: POST /task parses the JSON body and answers 202 with a record of
the same fields as Taskyard's task, with no validation rules, no Redis and no auth. Same uvicorn settings as
`taskyard serve`."""

from __future__ import annotations

import json
import time
import uuid

from litestar import Litestar, Request, Response, get, post


@post("/task", status_code=202)
async def submit(request: Request) -> Response[dict]:
    body = json.loads(await request.body())
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return Response({
        "id": uuid.uuid4().hex, "worker_name": "sink", "prompt": body["prompt"], "context": None,
        "state": "pending", "result": None, "error": None, "attempts": 0, "max_retries": 1, "timeout": 600.0,
        "pool": None, "exit_code": None, "idempotency_key": None, "created_at": now, "dispatched_at": None,
        "completed_at": None, "dispatch": {"policy": "round-robin", "candidates": ["sink"], "chosen": "sink",
                                           "skipped": []},
    }, status_code=202)


@get("/health")
async def health() -> dict:
    return {"status": "ok"}


app = Litestar([submit, health], logging_config=None)
