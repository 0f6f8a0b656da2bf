"""Webhook event store: receive (with delivery dedupe), state moves, reads and listing. Each returns an Op.

An event keeps its raw payload, the attributes its source extracted, the rules that matched it with the
tasks they made (``matches``), its state and a history of state moves. The Lua scripts keep the per-state and
per-source indexes exact; this module shapes their arguments and answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine import keys
from engine.audit import AUDIT_MAX_ENTRIES
from engine.audit import encode as encode_audit
from engine.lazy_json import LazyJSON
from engine.models import iso_ms
from engine.registry import redact
from engine.store import Op

__all__ = [
    "EVENT_STATES",
    "Event",
    "Received",
    "get",
    "list_page",
    "receive",
    "count_replay",
    "stored_record",
    "update",
    "write_back_done",
    "record_match",
    "record_write_back",
    "summary",
]

EVENT_STATES = ("received", "matched", "dispatched", "completed", "failed", "skipped", "write_back_failed")
DEDUPE_TTL_MS = 7 * 86_400_000  # milliseconds a delivery id is remembered (GitHub redelivers for 3 days)
SUMMARY_FIELDS = ("id", "project", "source", "type", "state", "actor", "subject", "attrs", "created_at",
                  "updated_at", "seq", "delivery_id", "matches", "error", "replay_of")
# States after which matching and dispatch are over (write-back may still move completed/failed events on).
SETTLED_STATES = frozenset({"matched", "completed", "failed", "skipped", "write_back_failed"})


@dataclass(frozen=True)
class Received:
    """``created`` False: a repeated delivery; ``event_id`` is the event the first copy made."""

    created: bool
    event_id: str


@dataclass(frozen=True)
class Event:
    id: str
    project: str
    source: str
    type: str
    state: str
    seq: int
    created_at_ms: int
    updated_at_ms: int
    actor: str | None = None
    subject: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    delivery_id: str | None = None
    matches: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    payload: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    write_back: dict[str, Any] = field(default_factory=dict)
    replay_of: str | None = None  # the event this one replays (POST /api/events/{id}/replay)

    @classmethod
    def from_hash(cls, h: dict[str, str], *, history: list[str] | None = None,
                  write_back: dict[str, str] | None = None, lazy_payload: bool = False) -> Event:
        """``lazy_payload``: the payload as a :class:`~engine.lazy_json.LazyJSON`, decoded when first read."""
        payload = h.get("payload")
        return cls(
            id=h["id"], project=h.get("project", ""), source=h.get("source", ""), type=h.get("type", ""),
            state=h.get("state", ""), seq=int(h.get("seq", 0)),
            created_at_ms=int(float(h.get("created_at", 0))), updated_at_ms=int(float(h.get("updated_at", 0))),
            actor=h.get("actor") or None, subject=h.get("subject") or None,
            attrs=json.loads(h["attrs"]) if h.get("attrs") else {},
            delivery_id=h.get("delivery_id") or None,
            matches=json.loads(h["matches"]) if h.get("matches") else [],
            error=h.get("error") or None,
            payload=(LazyJSON(payload) if lazy_payload else json.loads(payload)) if payload else None,
            history=[json.loads(x) for x in history or []],
            write_back={k: json.loads(v) for k, v in (write_back or {}).items()},
            replay_of=h.get("replay_of") or None,
        )

    @property
    def task_ids(self) -> list[str]:
        return [m["task_id"] for m in self.matches if m.get("task_id")]

    def to_public(self, *, detail: bool = False) -> dict[str, Any]:
        """The event as the API returns it; ``detail`` adds the payload, history and write-back results."""
        out: dict[str, Any] = {
            "id": self.id, "source": self.source, "type": self.type, "state": self.state,
            "actor": self.actor, "subject": self.subject, "attrs": self.attrs,
            "delivery_id": self.delivery_id, "created_at": iso_ms(self.created_at_ms),
            "updated_at": iso_ms(self.updated_at_ms), "error": self.error,
            "matches": self.matches, "replay_of": self.replay_of,
        }
        if detail:
            out["payload"] = self.payload
            out["history"] = [{**h, "at": iso_ms(h.get("at"))} for h in self.history]
            out["write_back"] = self.write_back
        return out


def receive(*, event_id: str, project: str, source: str, delivery_id: str | None, now_ms: int,
            type: str, actor: str | None, subject: str | None, attrs: dict[str, Any],
            raw_payload: str, extra: dict[str, str] | None = None) -> Op[Received]:
    """Store a new event and queue its processing, or answer the earlier event of the same delivery. The
    audit entry of the delivery is written in the same step. ``raw_payload`` is the body as received (JSON);
    ``extra`` are more fields of the record (``replay_of``)."""
    detail = {"source": source, "type": type, "delivery": delivery_id, "actor": actor}
    args: list[Any] = [event_id, project, source, delivery_id or "", now_ms,
                       json.dumps(redact(detail), separators=(",", ":")), AUDIT_MAX_ENTRIES, DEDUPE_TTL_MS,
                       "type", type, "actor", actor or "", "subject", subject or "",
                       "attrs", json.dumps(attrs, separators=(",", ":")), "payload", raw_payload]
    for name, value in (extra or {}).items():
        args += [name, value]

    def parse(raw: list[Any]) -> Received:
        return Received(True, event_id) if raw[0] == "ok" else Received(False, raw[1])

    return Op(parse, script="event_receive", args=tuple(args))


def update(*, event_id: str, now_ms: int, state: str = "", detail: str = "", expect: tuple[str, ...] = (),
           fields: dict[str, str] | None = None, follow: bool = False,
           audit: list[tuple[str, dict[str, Any]]] | None = None) -> Op[tuple[bool, str | None]]:
    """Write fields and move the event to ``state`` if it is in one of ``expect`` (any when empty). With
    ``follow``, a dispatched event whose tasks have all ended then moves to completed / failed in the same
    step. ``audit`` entries (see :func:`engine.audit.encode`) are written in the same call. Answers
    (applied, current state); state None when the event is gone."""
    if state and state not in EVENT_STATES:
        raise ValueError(f"unknown event state {state!r}")
    entries = [encode_audit(action, detail) for action, detail in audit or []]
    args: list[Any] = [event_id, state, now_ms, detail, ",".join(expect), "1" if follow else "0",
                       AUDIT_MAX_ENTRIES, len(entries), *[x for entry in entries for x in entry]]
    for name, value in (fields or {}).items():
        args += [name, value]

    def parse(raw: list[Any]) -> tuple[bool, str | None]:
        if raw[0] == "missing":
            return False, None
        return raw[0] == "ok", raw[1]

    return Op(parse, script="event_update", args=tuple(args))


def record_match(*, event_id: str, rule: str, entry: dict[str, Any], now_ms: int) -> Op[str]:
    """Record what a queued dispatch of ``rule`` became on the event (and follow it); see event_match.lua."""
    return Op(str, script="event_match",
              args=(event_id, rule, json.dumps(entry, separators=(",", ":")), now_ms))


def get(event_id: str, *, detail: bool = True, lazy_payload: bool = False) -> Op[Event | None]:
    """The event with its history and write-back results (one transaction), or None. Without ``detail``, the
    record alone; ``lazy_payload`` (without detail) leaves the payload to be decoded when first read."""
    commands: tuple[tuple, ...] = (
        ("HGETALL", keys.key("event", id=event_id)),
        ("LRANGE", keys.key("event_history", id=event_id), 0, -1),
        ("HGETALL", keys.key("event_wb", id=event_id)),
    )

    def parse(raw: list[Any]) -> Event | None:
        h, history, wb = (_as_dict(raw[0]), raw[1], _as_dict(raw[2]))
        if not h:
            return None
        return Event.from_hash(h, history=history, write_back=wb)

    if not detail:
        return Op(lambda raw: Event.from_hash(_as_dict(raw), lazy_payload=lazy_payload) if raw else None,
                  command=("HGETALL", keys.key("event", id=event_id)))
    return Op(parse, commands=commands)


def stored_record(event_id: str) -> Op[dict[str, str] | None]:
    """The stored record as Redis holds it (the payload as received, byte for byte), or None."""
    return Op(lambda found: _as_dict(found) or None, command=("HGETALL", keys.key("event", id=event_id)))


def count_replay(event_id: str) -> Op[int | None]:
    """Number the next replay of a stored event (1 for the first; counted on the event as ``replays``), or None
    when the event is gone (retention may delete it between a read and this)."""
    return Op(lambda n: int(n) or None, script="event_replay_number", args=(event_id,))


def summary(event_id: str) -> Op[Event | None]:
    """The event without its raw payload, history or write-back results (cheap: payloads run to megabytes)."""
    def parse(raw: list[str | None]) -> Event | None:
        if raw[0] is None:
            return None
        return Event.from_hash({k: v for k, v in zip(SUMMARY_FIELDS, raw, strict=True) if v is not None})

    return Op(parse, command=("HMGET", keys.key("event", id=event_id), *SUMMARY_FIELDS))


def list_page(*, project: str, state: str | None, source: str | None, below_seq: int | None,
              limit: int) -> Op[tuple[list[Event], int | None]]:
    """Newest first from the narrowest index; answers the page and the next page's cursor (None at the end)."""
    if state and source:
        index = keys.key("ev_source_state", project=project, source=source, state=state)
    elif state:
        index = keys.key("ev_state", project=project, state=state)
    elif source:
        index = keys.key("ev_source", project=project, source=source)
    else:
        index = keys.key("ev_all", project=project)

    def parse(raw: list[Any]) -> tuple[list[Event], int | None]:
        found, last_seq, scanned = raw
        return [Event.from_hash(_pairs(h)) for h in found], (int(last_seq) if scanned == limit else None)

    return Op(parse, script="event_list", args=(index, "+inf" if below_seq is None else below_seq, limit))


def write_back_done(event_id: str) -> Op[dict[str, dict[str, Any]]]:
    """Write-back steps already done for an event: "<task id>:<step key>" -> result."""
    return Op(lambda raw: {k: json.loads(v) for k, v in _as_dict(raw).items()},
              command=("HGETALL", keys.key("event_wb", id=event_id)))


def record_write_back(event_id: str, task_id: str, step: str, result: dict[str, Any]) -> Op[int]:
    """Remember a write-back step that succeeded, so a retry never repeats it."""
    return Op(int, command=("HSET", keys.key("event_wb", id=event_id), f"{task_id}:{step}",
                            json.dumps(result, separators=(",", ":"))))


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _as_dict(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return raw
    return _pairs(raw or [])
