"""The trace store: create, append events, read, list. Each function returns an Op.

A trace is a hash (``ty:trace:<id>``: project, name, agent, worker, status, counts, tokens, cost) plus a Redis
stream of its events whose entry ids are ``<seq>-0``: the stream order is the seq order, a reader resumes with
``XRANGE``/``XREAD`` from any seq, on any replica. ``trace_ingest.lua`` applies a prepared batch in one call
(dedupe, seq checks, append, totals, status, usage records), so a batch is never half applied.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import keys
from engine.models import iso_ms
from engine.store import Op
from engine.trace_events import PreparedEvent

__all__ = [
    "TRACE_STATUSES",
    "Appended",
    "Created",
    "Trace",
    "TraceEvent",
    "append",
    "create",
    "get",
    "list_page",
    "read_events",
]

TRACE_STATUSES = ("running", "completed", "failed", "crashed", "timeout", "cancelled")
SOURCES = ("api", "task", "mesedi")  # who made a trace: POST /api/traces, a task run, POST /executions


@dataclass(frozen=True)
class Trace:
    id: str
    project: str
    name: str
    status: str
    seq: int
    created_at_ms: int
    updated_at_ms: int
    agent: str = ""
    worker: str = ""
    task_id: str = ""
    source: str = "api"
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    ended_at_ms: int | None = None
    duration_ms: int | None = None
    events: int = 0
    last_seq: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Trace:
        return cls(
            id=h["id"], project=h["project"], name=h.get("name", ""), status=h.get("status", "running"),
            seq=int(h.get("seq") or 0), created_at_ms=int(h.get("created_at") or 0),
            updated_at_ms=int(h.get("updated_at") or 0), agent=h.get("agent", ""), worker=h.get("worker", ""),
            task_id=h.get("task_id", ""), source=h.get("source", "api"),
            metadata=json.loads(h["metadata"]) if h.get("metadata") else {},
            tags=json.loads(h["tags"]) if h.get("tags") else [],
            ended_at_ms=int(h["ended_at"]) if h.get("ended_at") else None,
            duration_ms=int(float(h["duration_ms"])) if h.get("duration_ms") else None,
            events=int(h.get("events") or 0), last_seq=int(h.get("last_seq") or 0),
            tokens_in=int(h.get("tokens_in") or 0), tokens_out=int(h.get("tokens_out") or 0),
            cost_usd=float(h.get("cost_usd") or 0))

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "agent": self.agent or None, "worker": self.worker or None,
            "task_id": self.task_id or None, "source": self.source, "status": self.status,
            "metadata": self.metadata, "tags": self.tags, "created_at": iso_ms(self.created_at_ms),
            "updated_at": iso_ms(self.updated_at_ms), "ended_at": iso_ms(self.ended_at_ms),
            "duration_ms": self.duration_ms if self.duration_ms is not None else (
                self.updated_at_ms - self.created_at_ms if self.status == "running" else None),
            "event_count": self.events, "last_seq": self.last_seq, "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out, "cost_usd": round(self.cost_usd, 8),
        }


@dataclass(frozen=True)
class Created:
    """``status``: created | exists (same project: the stored trace) | taken (another project's id)."""

    status: str
    trace: Trace | None


@dataclass(frozen=True)
class Appended:
    """Per prepared event (in the order sent to the store): (outcome, seq); outcome is ok, dup, conflict or stale
    (for stale, the seq is the last stored one). ``found`` False: no such trace in the project."""

    found: bool
    outcomes: list[tuple[str, int]]


@dataclass(frozen=True)
class TraceEvent:
    seq: int
    body: dict[str, Any]

    def to_public(self, trace_id: str | None = None) -> dict[str, Any]:
        public = {"seq": self.seq, **self.body}
        if trace_id is not None:
            public["trace_id"] = trace_id
        return public


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def create(*, trace_id: str, project: str, now_ms: int, name: str, agent: str = "", worker: str = "",
           task_id: str = "", source: str = "api", metadata: dict[str, Any] | None = None,
           tags: Sequence[str] = ()) -> Op[Created]:
    def parse(raw: list[Any]) -> Created:
        status = raw[0]
        return Created(status, Trace.from_hash(_pairs(raw[1])) if len(raw) > 1 else None)

    return Op(parse, script="trace_create", args=(
        trace_id, project, now_ms, name, agent, worker, task_id, source,
        json.dumps(metadata or {}, ensure_ascii=False), json.dumps(list(tags), ensure_ascii=False)))


def append(*, trace_id: str, project: str, now_ms: int, events: Sequence[PreparedEvent]) -> Op[Appended]:
    metas = []
    for e in events:
        ending = ""
        if e.end_status:
            tin, tout = e.totals if e.totals is not None else ("", "")
            ending = f"{e.end_status}:{'' if e.duration_ms is None else e.duration_ms}:{tin}:{tout}"
        metas.append(f"{e.seq or 0}\x1f{e.key}\x1f{e.tokens_in}\x1f{e.tokens_out}\x1f{e.cost_usd!r}\x1f{e.model}"
                     f"\x1f{int(e.priced)}\x1f{int(e.usage)}\x1f{ending}\x1f{int(e.starts)}\x1e")
    args = (trace_id, project, now_ms, "".join(metas), *(e.data for e in events))

    def parse(raw: list[Any]) -> Appended:
        if raw[0] == "missing":
            return Appended(False, [])
        outcomes = []
        for answer in raw[1].split(",") if raw[1] else ():
            kind, _, number = answer.partition(":")
            outcomes.append((kind, int(number)))
        return Appended(True, outcomes)

    return Op(parse, script="trace_ingest", args=args)


def get(trace_id: str) -> Op[Trace | None]:
    return Op(lambda raw: Trace.from_hash(_as_dict(raw)) if raw else None,
              command=("HGETALL", keys.key("trace", id=trace_id)))


def list_page(*, project: str, status: str | None, agent: str | None, below_seq: int | None,
              limit: int) -> Op[tuple[list[Trace], int | None]]:
    """One page newest first; the second value is the cursor for the next page (None: no more)."""
    if status and agent:
        index = keys.key("tr_agent_status", project=project, agent=agent, status=status)
    elif status:
        index = keys.key("tr_status", project=project, status=status)
    elif agent:
        index = keys.key("tr_agent", project=project, agent=agent)
    else:
        index = keys.key("tr_all", project=project)

    def parse(raw: list[Any]) -> tuple[list[Trace], int | None]:
        rows, last, scanned = raw
        page = [Trace.from_hash(_pairs(row)) for row in rows]
        more = int(scanned) == limit and last != ""
        return page, (int(float(last)) if more else None)

    return Op(parse, script="trace_list", args=(index, "+inf" if below_seq is None else below_seq, limit))


def read_events(trace_id: str, *, after_seq: int, limit: int) -> Op[list[TraceEvent]]:
    """Events with seq > ``after_seq``, in seq order, at most ``limit``."""
    start = f"({after_seq}-0" if after_seq > 0 else "-"
    return Op(_parse_entries, command=("XRANGE", keys.key("trace_events", id=trace_id), start, "+",
                                       "COUNT", limit))


def _parse_entries(raw: list[Any]) -> list[TraceEvent]:
    return [TraceEvent(int(entry_id.split("-", 1)[0]), json.loads(_as_dict(fields)["d"])) for entry_id, fields in raw]


def _as_dict(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return raw
    return _pairs(list(raw))


def parse_stream_entries(raw: list[Any]) -> list[TraceEvent]:
    """Entries as XRANGE/XREAD answer them, as events."""
    return _parse_entries(raw)
