"""Emitting alert events to a project's webhook subscriptions.

:func:`emit_op` is one call of ``webhook_emit.lua``: it finds the subscriptions of the event type (filtered by
failure class for incident events), writes one delivery record per subscription and queues its
``deliver_webhook`` engine job in the same atomic step, so a delivery is never stored without its job. It is
an Op, so the analysis job (sync runner) and the API (async runner) emit alike; :func:`emit` runs it on a sync
runner. With a ``dedupe`` key the delivery ids derive from it, so emitting the same event twice (a redelivered
job) makes no second delivery.

Triggers: the analysis path for ``incident.created`` / ``incident.regressed`` (:func:`incident_alerts`), the
incident service for ``incident.resolved``, and the ``task_event`` engine job for ``task.failed`` /
``task.completed`` (queued by ``finalize`` in Lua only when the project has a task subscription).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from engine import incidents, keys
from engine.clock import now_ms
from engine.ids import new_id
from engine.incidents import Incident, Outcome
from engine.models import iso_ms
from engine.store import Op, Runner

__all__ = ["DELIVERY_TTL_MS", "emit", "emit_op", "incident_alerts", "incident_data", "task_event"]

logger = logging.getLogger(__name__)

DELIVERY_TTL_MS = 7 * 86_400_000  # milliseconds (7 days) a delivery record is kept
TASK_TEXT_CHARS = 2000  # characters of a task's error or result carried in a task event


def emit_op(project: str, event_type: str, data: dict[str, Any], *, failure_class: str | None = None,
            dedupe: str | None = None, only: str | None = None, now: int | None = None) -> Op[list[str]]:
    """Deliveries of one event to the subscriptions that want it (``only``: to that subscription alone, whatever
    its events). Answers the new delivery ids."""
    return Op(list, script="webhook_emit", args=(
        project, event_type, dedupe or new_id(), now if now is not None else now_ms(),
        json.dumps(data, ensure_ascii=False, separators=(",", ":")), failure_class or "", only or "",
        DELIVERY_TTL_MS))


def emit(runner: Runner, project: str, event_type: str, data: dict[str, Any], *, failure_class: str | None = None,
         dedupe: str | None = None) -> list[str]:
    """:func:`emit_op` on a sync runner."""
    return runner.run(emit_op(project, event_type, data, failure_class=failure_class, dedupe=dedupe))


def incident_data(incident: Incident) -> dict[str, Any]:
    """An incident as alert events carry it."""
    return {"id": incident.id, "failure_class": incident.failure_class, "signature": incident.signature,
            "summary": incident.summary, "trace_id": incident.trace_id, "task_id": incident.task_id or None,
            "worker": incident.worker or None, "status": incident.status, "count": incident.count,
            "regressions": incident.regressions, "first_seen": iso_ms(incident.first_seen_ms),
            "last_seen": iso_ms(incident.last_seen_ms)}


def incident_alerts(runner: Runner, project: str, outcomes: Sequence[Outcome]) -> list[str]:
    """``incident.created`` / ``incident.regressed`` for each alert-worthy outcome of one recording (each
    happens once per incident creation or regression, decided atomically by ``incident_record.lua``)."""
    made: list[str] = []
    for outcome in outcomes:
        if not outcome.alert:
            continue
        incident = runner.run(incidents.get(outcome.incident_id, project=project, shown=1))
        if incident is None:
            continue
        event_type = f"incident.{outcome.kind}"
        made += emit(runner, project, event_type, incident_data(incident), failure_class=incident.failure_class,
                     dedupe=f"{event_type}:{incident.id}:{incident.regressions}")
    return made


def task_event(runner: Runner, task_id: str) -> list[str]:
    """The ``task_event`` engine job: ``task.completed`` or ``task.failed`` for a task that reached that state."""
    fields = ("state", "project", "worker_name", "error", "result", "attempts", "completed_at", "created_at")
    raw = runner.run(Op(list, command=("HMGET", keys.key("task", id=task_id), *fields)))
    task = dict(zip(fields, raw, strict=True))
    state = task["state"]
    if state not in ("completed", "failed") or not task["project"]:
        return []
    data = {"task_id": task_id, "state": state, "worker": task["worker_name"],
            "attempts": int(task["attempts"] or 0), "created_at": iso_ms(task["created_at"]),
            "completed_at": iso_ms(task["completed_at"])}
    if state == "failed":
        data["error"] = (task["error"] or "")[:TASK_TEXT_CHARS]
    else:
        data["result"] = (task["result"] or "")[:TASK_TEXT_CHARS]
    return emit(runner, task["project"], f"task.{state}", data, dedupe=f"task.{state}:{task_id}")
