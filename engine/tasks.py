"""Task store operations: admit, claim, finish, cancel, get, list, reap. Each returns an :class:`Op`.

The Lua scripts in ``engine/lua/`` hold the invariants (depth bound, exactly-once claim, exact indexes); this
module only shapes their arguments and answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine import keys
from engine.models import TASK_STATES, Task, decode_decision
from engine.store import Op

__all__ = [
    "LATENCY_BUCKETS_MS",
    "Ack",
    "AdmitResult",
    "Claim",
    "admit",
    "cancel",
    "claim",
    "fetch_claim",
    "finish",
    "get",
    "list_page",
    "reap_dead",
    "redispatch",
    "release_process",
    "reap_due",
    "reap_missing",
]

# Dispatch latency histogram bounds, in milliseconds (submit -> the worker process starts the run).
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True)
class AdmitResult:
    """``status`` is ok (stored and queued), dup (an earlier task with the idempotency key), full, offline."""

    status: str
    task_id: str | None = None
    worker: str | None = None
    decision: dict[str, Any] | None = None


@dataclass(frozen=True)
class Claim:
    """The answer to a claim: run the task (``task`` set), or skip the message (``reason`` says why)."""

    task: Task | None
    reason: str = ""


@dataclass(frozen=True)
class Ack:
    """Where the Dramatiq message that carried a run is held, so ``finish`` can acknowledge it."""

    ack_key: str
    msgs_key: str
    redis_message_id: str
    message_id: str


def _utf8(text: str) -> str:
    """Text as Redis can store it: a worker's output may carry lone surrogates; they become U+FFFD-like '?'."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def admit(
    *,
    task_id: str,
    project: str,
    now_ms: int,
    candidates: list[tuple[str, int, int, float]],
    policy: str,
    rr_group: str,
    require_online: bool,
    online_since_ms: int,
    skipped: list[dict[str, Any]],
    fields: dict[str, str],
    idempotency_key: str | None,
) -> Op[AdmitResult]:
    """Store and enqueue a task on the first candidate (from the round-robin cursor) with room.

    Each candidate is (worker, bound, default max_retries, default timeout in seconds); ``fields`` that set
    max_retries or timeout override the chosen worker's defaults (later fields win in HSET)."""
    args: list[Any] = [
        task_id, project, now_ms, idempotency_key or "", rr_group, policy,
        "1" if require_online else "0", online_since_ms, json.dumps(skipped), len(candidates),
    ]
    for name, bound, retries, timeout in candidates:
        args += [name, bound, retries, timeout]
    for name, value in fields.items():
        args += [name, value]

    def parse(raw: list[str]) -> AdmitResult:
        status = raw[0]
        if status == "ok":
            return AdmitResult("ok", task_id=task_id, worker=raw[1], decision=decode_decision(raw[2]))
        if status == "dup":
            return AdmitResult("dup", task_id=raw[1])
        return AdmitResult(status, decision=decode_decision(raw[1]))

    return Op(parse, script="admit", args=tuple(args))


def claim(*, task_id: str, proc_id: str, now_ms: int, max_lost: int) -> Op[Claim]:
    """Move the task to ``dispatched`` for this process, unless it finished or runs elsewhere."""

    def parse(raw: list[Any]) -> Claim:
        if raw[0] == "run":
            return Claim(Task.from_hash(_pairs(raw[1])))
        return Claim(None, raw[1])

    return Op(parse, script="claim", args=(task_id, proc_id, now_ms, max_lost, *LATENCY_BUCKETS_MS))


def fetch_claim(*, worker: str, broker_id: str, proc_id: str, now_ms: int, max_lost: int,
                room: int) -> Op[list[tuple[str, Claim]]]:
    """Dramatiq's fetch of up to ``room`` messages fused with claiming their tasks: (message data, claim)."""

    def parse(raw: list[Any]) -> list[tuple[str, Claim]]:
        return [(raw[i], Claim(Task.from_hash(_pairs(raw[i + 1][1])))) for i in range(0, len(raw), 2)]

    return Op(parse, script="fetch_claim",
              args=(worker, broker_id, proc_id, now_ms, max_lost, room, *LATENCY_BUCKETS_MS))


def finish(
    *,
    task_id: str,
    proc_id: str,
    now_ms: int,
    outcome: str,
    text: str = "",
    expect_state: str = "",
    retry_at_ms: int = 0,
    fields: dict[str, str] | None = None,
    ack: Ack | None = None,
) -> Op[tuple[bool, str]]:
    """Record an outcome; answers (applied, state). Not applied when the task already finished elsewhere.
    With ``ack``, the Dramatiq message that carried the run is acknowledged in the same call."""
    args: list[Any] = [task_id, proc_id, now_ms, outcome, _utf8(text), expect_state, retry_at_ms]
    args += [ack.ack_key, ack.msgs_key, ack.redis_message_id] if ack else ["", "", ""]
    for name, value in (fields or {}).items():
        args += [name, _utf8(value)]
    return Op(lambda raw: (raw[0] == "ok", raw[1]), script="finish", args=tuple(args))


def cancel(*, task_id: str, project: str, now_ms: int) -> Op[tuple[str, str | None]]:
    """Cancel a task: (cancelled|signalled|final|missing, final state if any)."""
    return Op(lambda raw: (raw[0], raw[1] if len(raw) > 1 else None), script="cancel",
              args=(task_id, project, now_ms))


def get(task_id: str) -> Op[Task | None]:
    """The task, or None."""

    def parse(raw: list[str] | dict[str, str]) -> Task | None:
        h = raw if isinstance(raw, dict) else _pairs(raw)
        return Task.from_hash(h) if h else None

    return Op(parse, command=("HGETALL", keys.key("task", id=task_id)))


def list_page(*, project: str, state: str | None, worker: str | None, below_seq: int | None,
              limit: int) -> Op[tuple[list[Task], int | None]]:
    """Newest first from the narrowest index; ``below_seq`` is the cursor of the previous page. Answers the
    page and the next page's cursor (None on the last page)."""
    if state is not None and state not in TASK_STATES:
        raise ValueError(f"unknown state {state!r}")
    if state and worker:
        index = keys.key("idx_worker_state", project=project, worker=worker, state=state)
    elif state:
        index = keys.key("idx_state", project=project, state=state)
    elif worker:
        index = keys.key("idx_worker", project=project, worker=worker)
    else:
        index = keys.key("idx_all", project=project)
    below = "+inf" if below_seq is None else str(below_seq)
    def parse(raw: list[Any]) -> tuple[list[Task], int | None]:
        found, last_seq, scanned = raw
        return [Task.from_hash(_pairs(h)) for h in found], (int(last_seq) if scanned == limit else None)

    return Op(parse, script="list_tasks", args=(index, below, limit))


def redispatch(*, task_id: str, from_worker: str, now_ms: int, rr_group: str, online_since_ms: int,
               candidates: list[tuple[str, int, int, float]]) -> Op[str | None]:
    """Move a stranded round-robin task to another online candidate with room; answers the new worker."""
    args: list[Any] = [task_id, from_worker, now_ms, rr_group, online_since_ms, len(candidates)]
    for name, bound, _retries, _timeout in candidates:
        args += [name, bound]
    return Op(lambda raw: raw[1] if raw[0] == "ok" else None, script="redispatch", args=tuple(args))


def reap_dead(*, proc_id: str, workers: Iterable[str], now_ms: int, max_lost: int, cutoff_ms: int) -> Op[int]:
    """Requeue the tasks of a process that stopped heartbeating and forget it; answers how many, or -1 when
    the process turns out to be alive (a heartbeat newer than ``cutoff_ms`` arrived meanwhile)."""
    return Op(int, script="reap", args=("dead", now_ms, max_lost, proc_id, cutoff_ms, *workers))


def release_process(*, proc_id: str, workers: Iterable[str], now_ms: int) -> Op[int]:
    """A process stopping cleanly gives back the tasks it still holds (not counted as lost deliveries)."""
    return Op(int, script="reap", args=("release", now_ms, 1, proc_id, 0, *workers))


def reap_due(*, task_ids: Iterable[str], now_ms: int) -> Op[int]:
    """Enqueue delayed retries whose time has come."""
    return Op(int, script="reap", args=("due", now_ms, 0, "", 0, *task_ids))


def reap_missing(*, task_ids: Iterable[str], now_ms: int) -> Op[int]:
    """Enqueue again pending tasks whose Dramatiq message is gone (or fail them if their worker was removed)."""
    return Op(int, script="reap", args=("missing", now_ms, 0, "", 0, *task_ids))
