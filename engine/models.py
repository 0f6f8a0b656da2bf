"""Domain records: tasks, submissions and their states. Plain data, no I/O."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = [
    "FINAL_STATES",
    "TASK_STATES",
    "decode_decision",
    "SubmitRequest",
    "Task",
    "iso_ms",
]

TASK_STATES = ("pending", "dispatched", "completed", "failed", "cancelled")
FINAL_STATES = frozenset({"completed", "failed", "cancelled"})


def decode_decision(raw: str | None) -> dict[str, Any]:
    """A stored dispatch decision; Lua's cjson writes an empty list as ``{}``, so lists are restored here."""
    decision = json.loads(raw) if raw else {}
    if decision:
        for name in ("candidates", "skipped"):
            if not decision.get(name):
                decision[name] = []
    return decision


def iso_ms(ms: str | int | float | None) -> str | None:
    """RFC 3339 UTC with milliseconds from epoch milliseconds; None stays None."""
    if ms is None or ms == "":
        return None
    seconds, millis = divmod(int(ms) if isinstance(ms, int) else int(float(ms)), 1000)
    return f"{_second_text(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    # Timestamps cluster (a listing's tasks, a burst of submits): formatting each second once saves most of it.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


@dataclass(frozen=True)
class SubmitRequest:
    """A validated POST /task body (see :func:`engine.submit.parse_submit`)."""

    prompt: str
    worker: str | None = None
    pool: str | None = None
    context: dict[str, Any] | None = None
    timeout: float | None = None  # seconds
    max_retries: int | None = None  # attempts in all
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Task:
    """A task record as stored; ``from_hash`` reads Redis's field map."""

    id: str
    project: str
    worker_name: str
    prompt: str
    state: str
    seq: int
    created_at_ms: int
    context: dict[str, Any] | None = None
    result: str | None = None
    error: str | None = None
    attempts: int = 0
    max_retries: int = 0  # 0: the worker's default
    timeout: float = 0.0  # seconds; 0: the worker's default
    pool: str | None = None
    idempotency_key: str | None = None
    dispatched_at_ms: int | None = None
    completed_at_ms: int | None = None
    exit_code: int | None = None
    owner: str | None = None
    lost: int = 0
    dispatch: dict[str, Any] = field(default_factory=dict)
    cwd: str | None = None  # set by the engine only (regression replay): run in this directory, not the worker's
    regression_run: str | None = None  # the regression run this task replays a case for (not counted in incidents)

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Task:
        def opt_int(name: str) -> int | None:
            value = h.get(name)
            return int(float(value)) if value not in (None, "") else None

        ctx = h.get("context")
        return cls(
            id=h["id"],
            project=h.get("project", ""),
            worker_name=h.get("worker_name", ""),
            prompt=h.get("prompt", ""),
            state=h.get("state", ""),
            seq=int(h.get("seq", 0)),
            created_at_ms=int(float(h.get("created_at", 0))),
            context=json.loads(ctx) if ctx else None,
            result=h.get("result"),
            error=h.get("error") or None,
            attempts=int(h.get("attempts", 0)),
            max_retries=int(h.get("max_retries") or 0),
            timeout=float(h.get("timeout") or 0),
            pool=h.get("pool") or None,
            idempotency_key=h.get("idempotency_key") or None,
            dispatched_at_ms=opt_int("dispatched_at"),
            completed_at_ms=opt_int("completed_at"),
            exit_code=opt_int("exit_code"),
            owner=h.get("owner") or None,
            lost=int(h.get("lost", 0)),
            dispatch=decode_decision(h.get("dispatch")),
            cwd=h.get("cwd") or None,
            regression_run=h.get("regression_run") or None,
        )

    def to_public(self) -> dict[str, Any]:
        """The task as the API returns it (mecha's field names; times as RFC 3339)."""
        return {
            "id": self.id,
            "worker_name": self.worker_name,
            "prompt": self.prompt,
            "context": self.context,
            "state": self.state,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "max_retries": self.max_retries or None,
            "timeout": self.timeout or None,
            "pool": self.pool,
            "exit_code": self.exit_code,
            "idempotency_key": self.idempotency_key,
            "created_at": iso_ms(self.created_at_ms),
            "dispatched_at": iso_ms(self.dispatched_at_ms),
            "completed_at": iso_ms(self.completed_at_ms),
            "dispatch": self.dispatch,
            **({"regression_run": self.regression_run} if self.regression_run else {}),
        }
