"""The ``endpoint`` backend: mecha's worker contract over HTTP.

``POST {endpoint}/task`` with ``{"id", "prompt", "context"}``. A 2xx answer completes the task with its
``result`` (or ``output``) field, or the raw body when it is not JSON; a JSON ``error`` field, or
``"status": "failed"``, fails it; trace events in ``metadata.events`` (or ``events``) join the task's trace.
429, 5xx and connection errors are retried with backoff until the task's
timeout; any other 4xx fails at once. ``GET {endpoint}/health`` is polled by the heartbeat.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from config.settings import WorkerSpec
from workers.backends.base import Outcome, RunHandle, TaskContext

__all__ = ["EndpointBackend", "check_health"]

BACKOFF_BASE_S = 0.5  # seconds before the first retry of a 429/5xx/connection error; doubles each time
BACKOFF_MAX_S = 10.0  # seconds, cap on that backoff
HEALTH_TIMEOUT_S = 3.0  # seconds a health probe may take
CONNECT_TIMEOUT_S = 5.0  # seconds to open a connection


class EndpointBackend:
    def __init__(self, spec: WorkerSpec) -> None:
        assert spec.endpoint
        self.spec = spec
        self.url = f"{spec.endpoint}/task"

    def run(self, ctx: TaskContext, handle: RunHandle) -> Outcome:
        deadline = time.monotonic() + ctx.timeout
        body = {"id": ctx.id, "prompt": ctx.prompt, "context": ctx.context or {}}
        if ctx.cwd:  # a replayed case: the endpoint runs the code of this checkout (it must share our disk)
            body["cwd"] = ctx.cwd
        delay, last_error = BACKOFF_BASE_S, ""
        with httpx.Client(headers=self.spec.headers) as client:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return Outcome("timeout", error=f"timeout after {ctx.timeout:g}s"
                                   + (f" (last error: {last_error})" if last_error else ""))
                if handle.stop.is_set():
                    return Outcome("aborted", error=handle.reason or "aborted")
                try:
                    resp = client.post(self.url, json=body,
                                       timeout=httpx.Timeout(remaining, connect=min(CONNECT_TIMEOUT_S, remaining)))
                except httpx.TimeoutException:
                    return Outcome("timeout", error=f"timeout after {ctx.timeout:g}s")
                except httpx.HTTPError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    if resp.status_code == 429 or resp.status_code >= 500:
                        last_error = f"HTTP {resp.status_code}"
                    elif resp.status_code >= 400:
                        return Outcome("failed", error=f"HTTP {resp.status_code}: {resp.text[:500]}",
                                       retryable=False, http_status=resp.status_code)
                    else:
                        return _outcome_of(resp)
                if handle.stop.wait(min(delay, max(0.0, deadline - time.monotonic()))):
                    continue
                delay = min(delay * 2, BACKOFF_MAX_S)


def _outcome_of(resp: httpx.Response) -> Outcome:
    status = resp.status_code
    try:
        data = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return Outcome("completed", output=resp.text, http_status=status)
    if not isinstance(data, dict):
        return Outcome("completed", output=resp.text, http_status=status)
    events = _events_of(data)
    if data.get("error") or data.get("status") in ("failed", "error"):
        return Outcome("failed", error=str(data.get("error") or "endpoint reported failure"),
                       output=str(data.get("result") or ""), http_status=status, events=events)
    result = data.get("result", data.get("output"))
    if result is None:
        return Outcome("completed", output=resp.text, http_status=status, events=events)
    return Outcome("completed", output=result if isinstance(result, str) else json.dumps(result),
                   http_status=status, events=events)


def _events_of(data: dict) -> tuple[Any, ...]:
    """Trace events an endpoint returned: ``metadata.events`` (or a top-level ``events``), a list of objects."""
    metadata = data.get("metadata")
    found = metadata.get("events") if isinstance(metadata, dict) else None
    if found is None:
        found = data.get("events")
    if not isinstance(found, list):
        return ()
    return tuple(found)  # items that are not events are refused (and counted) when the trace is written


def check_health(spec: WorkerSpec) -> str:
    """'' when ``GET {endpoint}/health`` answers 2xx, else the reason."""
    try:
        resp = httpx.get(f"{spec.endpoint}/health", headers=spec.headers, timeout=HEALTH_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return f"health check failed: {type(exc).__name__}"
    return "" if resp.is_success else f"health check failed: HTTP {resp.status_code}"
