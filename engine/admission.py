"""Admission shared by every way work enters: ``POST /task`` (async API) and webhook rules (engine jobs).

:func:`admission` plans the candidates and builds the one Lua call that stores and enqueues the task;
:func:`refusal` turns a refused answer into the error the caller reports. The same Op runs on the API's
async runner and on the engine job's sync runner.
"""

from __future__ import annotations

import json

from config.settings import WorkerSpec
from engine import tasks
from engine.dispatcher import plan
from engine.errors import NoOnlineWorkers, QueueFull, TaskyardError, WorkerNotFound
from engine.models import SubmitRequest
from engine.store import Op

__all__ = ["admission", "refusal"]


def admission(request: SubmitRequest, defs: dict[str, WorkerSpec], *, task_id: str, project: str, now_ms: int,
              default_bound: int, offline_after_ms: int,
              extra_fields: dict[str, str] | None = None) -> Op[tasks.AdmitResult]:
    """The admission call for a validated request. Raises WorkerNotFound / NoOnlineWorkers when no worker
    can be a candidate at all; the depth and online checks happen in the script."""
    chosen = plan(request, defs, default_bound=default_bound)
    fields = {
        "prompt": request.prompt,
        "context": json.dumps(request.context) if request.context is not None else "",
        "pool": request.pool or "",
        "idempotency_key": request.idempotency_key or "",
    }
    if request.timeout is not None:
        fields["timeout"] = str(request.timeout)
    if request.max_retries is not None:
        fields["max_retries"] = str(request.max_retries)
    fields.update(extra_fields or {})
    return tasks.admit(
        task_id=task_id, project=project, now_ms=now_ms, candidates=chosen.candidates, policy=chosen.policy,
        rr_group=chosen.rr_group, require_online=chosen.require_online,
        online_since_ms=now_ms - offline_after_ms, skipped=[], fields=fields,
        idempotency_key=request.idempotency_key)


def refusal(result: tasks.AdmitResult, request: SubmitRequest) -> TaskyardError:
    """The error for a ``full`` or ``offline`` admission answer."""
    if result.status == "full":
        return QueueFull(decision=result.decision)
    if request.worker:
        return WorkerNotFound()
    return NoOnlineWorkers(decision=result.decision)
