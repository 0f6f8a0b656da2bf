"""Trace events as they arrive: validation and normalisation, one event at a time (pure, no I/O).

An event's envelope is ``{seq?, type, timestamp?, idempotency_key?, payload?}``. Each event is checked on its
own so a batch can be accepted in part: :func:`prepare_batch` answers the events ready to store and, for the
others, why they were refused. What is stored is the envelope without ``seq`` (the seq is the stream entry id),
with the timestamp normalised to RFC 3339 UTC milliseconds.

Ordering (decided here, documented in docs/api.md): a batch is applied in seq order, so it may arrive shuffled;
events without a seq are applied after those with one, in the order sent, each taking the next seq. Across
batches seq must grow: an event whose seq is at or below the last stored one is a duplicate (same idempotency
key), a conflict (another event holds that seq) or stale (the seq was skipped and can no longer be filled).
An event with a seq but no idempotency key gets a content key (``~<sha1 of seq, type, timestamp, payload>``), so
resending the same batch is harmless and a different event at the same seq is a conflict.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from engine.models import iso_ms
from engine.pricing import PriceBook

__all__ = ["END_STATUSES", "MAX_SEQ", "PreparedEvent", "Rejection", "prepare_batch", "prepare_event"]

MAX_SEQ = 10**15  # largest seq accepted (Lua numbers are doubles: exact up to 2**53)
MAX_KEY_CHARS = 200  # characters of an idempotency key
MAX_TYPE_CHARS = 64  # characters of an event type
END_STATUSES = frozenset({"completed", "failed", "crashed", "timeout", "cancelled"})
START_TYPES = frozenset({"task_started", "session_start"})  # these put an ended trace back to running
_ACCOUNTED = frozenset({"llm_call", "session_end"})  # types whose payload moves the trace's totals or status
_TYPE_RE = re.compile(r"[a-z][a-z0-9_.:-]*")
_RFC3339_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ]|$)")  # not the other ISO 8601 forms (week dates...)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FIELDS = frozenset({"seq", "type", "timestamp", "idempotency_key", "payload"})
# One encoder for every event: json.dumps with options builds a new one per call (a third of the cost of a small
# event). No circular check: the value came from json.loads, which cannot make a cycle.
# NaN and Infinity are refused: they are not JSON, and a browser's JSON.parse of the live stream would fail.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False).encode
MAX_DEPTH = 64  # levels of nesting an event may hold (deeper payloads are refused before they are stored)
_SECONDS_BEFORE = 10**11  # a numeric timestamp below this is epoch seconds, at or above it epoch milliseconds


@dataclass(slots=True)
class PreparedEvent:
    """One valid event, ready for ``trace_ingest.lua``. ``seq`` None: the store assigns the next one."""

    index: int
    seq: int | None
    key: str  # idempotency key ("" when none: the event is always appended)
    given_key: str | None  # the idempotency key the sender gave (None: none, or a content key)
    data: str  # the stored JSON: {type, timestamp, idempotency_key?, payload}
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    model: str = ""
    priced: bool = False
    usage: bool = False  # an llm_call that reports a model or tokens: also a usage record
    end_status: str = ""  # session_end: the trace's final status
    starts: bool = False  # task_started / session_start: an ended trace runs again (a retry)
    duration_ms: int | None = None
    totals: tuple[int, int] | None = None  # session_end: the run's own token totals (in, out), when it reports them


@dataclass(frozen=True)
class Rejection:
    index: int
    idempotency_key: str | None
    reason: str

    def to_public(self) -> dict[str, Any]:
        return {"index": self.index, "idempotency_key": self.idempotency_key, "reason": self.reason}


class _Bad(Exception):
    pass


def prepare_batch(events: Sequence[Any], *, prices: PriceBook, max_event_bytes: int,
                  now_ms: int) -> tuple[list[PreparedEvent], list[Rejection]]:
    """Validate each event; answer the valid ones in the order they must be applied, and the rejections."""
    ready: list[PreparedEvent] = []
    rejected: list[Rejection] = []
    now_iso = iso_ms(now_ms) or ""
    for index, raw in enumerate(events):
        try:
            ready.append(prepare_event(index, raw, prices=prices, max_event_bytes=max_event_bytes, now_ms=now_ms,
                                       now_iso=now_iso))
        except _Bad as exc:
            key = raw.get("idempotency_key") if isinstance(raw, dict) else None
            rejected.append(Rejection(index, key if isinstance(key, str) else None, str(exc)))
    with_seq = sorted((e for e in ready if e.seq is not None), key=lambda e: (e.seq, e.index))
    return with_seq + [e for e in ready if e.seq is None], rejected


def prepare_event(index: int, raw: Any, *, prices: PriceBook, max_event_bytes: int, now_ms: int,
                  now_iso: str | None = None) -> PreparedEvent:
    if not isinstance(raw, dict):
        raise _Bad("event must be a JSON object")
    if not _FIELDS.issuperset(raw):
        raise _Bad(f"unknown field: {sorted(set(raw) - _FIELDS)[0]}")
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise _Bad("type is required")
    if not _valid_type(kind):
        raise _Bad(f"invalid type: lowercase letters, digits and _.:- (at most {MAX_TYPE_CHARS} characters)")
    seq = raw.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ):
        raise _Bad(f"invalid seq: must be an integer from 1 to {MAX_SEQ}")
    key = raw.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS
                            or _CONTROL.search(key)):
        raise _Bad(f"invalid idempotency_key: a non-empty string of at most {MAX_KEY_CHARS} characters, "
                   "without control characters")
    payload = raw.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise _Bad("payload must be a JSON object")
    given_stamp = raw.get("timestamp")
    stamp = now_iso if given_stamp is None and now_iso else _timestamp(given_stamp, now_ms)
    body: dict[str, Any] = {"type": kind, "timestamp": stamp}
    if key is not None:
        body["idempotency_key"] = key
    body["payload"] = payload
    try:
        data = _encode(body)
        size = len(data.encode("utf-8"))
    except RecursionError:
        raise _Bad(f"payload nested too deeply (at most {MAX_DEPTH} levels)") from None
    except (ValueError, TypeError, UnicodeEncodeError):  # NaN, lone surrogates; from code: non-JSON values
        raise _Bad("event is not valid JSON text") from None
    if data.count("{") + data.count("[") > MAX_DEPTH and _depth(payload) > MAX_DEPTH:
        raise _Bad(f"payload nested too deeply (at most {MAX_DEPTH} levels)")
    if size > max_event_bytes:
        raise _Bad(f"event too large: {size} bytes (at most {max_event_bytes})")
    if key is None and seq is not None:  # the content as sent (a defaulted timestamp is the receive time)
        sent = json.dumps([seq, kind, given_stamp, payload], sort_keys=True, ensure_ascii=False)
        content_key = "~" + hashlib.sha1(sent.encode("utf-8")).hexdigest()
        return PreparedEvent(index, seq, content_key, None, data, **_accounting(kind, payload, prices))
    if kind in _ACCOUNTED:
        return PreparedEvent(index, seq, key or "", key, data, **_accounting(kind, payload, prices))
    return PreparedEvent(index, seq, key or "", key, data, starts=kind in START_TYPES)


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (so a hostile value cannot exhaust the stack here)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


@lru_cache(maxsize=1024)
def _valid_type(kind: str) -> bool:
    return len(kind) <= MAX_TYPE_CHARS and bool(_TYPE_RE.fullmatch(kind))


def _timestamp(value: Any, now_ms: int) -> str:
    """RFC 3339 UTC with milliseconds; a missing timestamp is the server's receive time."""
    if value is None:
        return iso_ms(now_ms) or ""
    if isinstance(value, bool):
        raise _Bad("invalid timestamp")
    if isinstance(value, int | float):
        ms = value * 1000 if value < _SECONDS_BEFORE else value
        if not 0 <= ms < 253402300800000:  # year 10000
            raise _Bad("invalid timestamp")
        return iso_ms(int(ms)) or ""
    if isinstance(value, str) and 10 <= len(value) <= 40 and _RFC3339_DATE.match(value):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Bad("invalid timestamp: RFC 3339 or epoch seconds/milliseconds") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = int(moment.timestamp() * 1000)
        if not 0 <= ms < 253402300800000:  # 1970 to the year 9999, as numeric timestamps
            raise _Bad("invalid timestamp: outside 1970-9999")
        return iso_ms(ms) or ""
    raise _Bad("invalid timestamp: RFC 3339 or epoch seconds/milliseconds")


_IN_NAMES = ("tokens_in", "input_tokens", "prompt_tokens")
_OUT_NAMES = ("tokens_out", "output_tokens", "completion_tokens")


def _count(payload: dict[str, Any], names: Sequence[str]) -> int:
    nested = payload.get("usage")
    usage: dict[str, Any] = nested if isinstance(nested, dict) else {}
    for source in (payload, usage):
        for name in names:
            value = source.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**12:
                raise _Bad(f"invalid {name}: must be a non-negative integer")
            return value
    return 0


def _accounting(kind: str, payload: dict[str, Any], prices: PriceBook) -> dict[str, Any]:
    """Tokens and cost of an ``llm_call``; final status and duration of a ``session_end``."""
    if kind == "llm_call":
        tokens_in, tokens_out = _count(payload, _IN_NAMES), _count(payload, _OUT_NAMES)
        model = payload.get("model")
        if model is not None and (not isinstance(model, str) or len(model) > 200 or _CONTROL.search(model)):
            raise _Bad("invalid model: a string of at most 200 characters, without control characters")
        given = payload.get("cost_usd")
        if given is not None:
            if isinstance(given, bool) or not isinstance(given, int | float) or not 0 <= given < 10**9:
                raise _Bad("invalid cost_usd: must be a non-negative number")
            cost, priced = float(given), True
        else:
            cost, priced = prices.cost(model, tokens_in, tokens_out)
        return {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost, "model": model or "",
                "priced": priced, "usage": bool(model or tokens_in or tokens_out or given)}
    if kind == "session_end":
        status = payload.get("status", "completed")
        if not isinstance(status, str) or status not in END_STATUSES:
            raise _Bad(f"invalid session_end status: one of {', '.join(sorted(END_STATUSES))}")
        duration = payload.get("duration_ms")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int | float)
                                     or not 0 <= duration < 10**12):
            raise _Bad("invalid duration_ms: must be a non-negative number")
        totals = None
        if "total_tokens_in" in payload or "total_tokens_out" in payload:
            totals = (_count(payload, ("total_tokens_in",)), _count(payload, ("total_tokens_out",)))
        return {"end_status": status, "duration_ms": None if duration is None else int(duration), "totals": totals}
    return {"starts": kind in START_TYPES}
