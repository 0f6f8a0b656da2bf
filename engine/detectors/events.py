"""Reading trace events the way every detector does (pure): payloads, runs, tool names, tokens, times, texts.

Events are the stored envelopes ``{seq, type, timestamp, payload, idempotency_key?}`` in seq order. A payload
that is not an object reads as empty; a field of the wrong type reads as missing. Nothing here raises on a
malformed event: a detector skips what it cannot read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.detectors.model import Detection

__all__ = ["END", "MAX_EVIDENCE", "START_TYPES", "STEP_TYPES", "Event", "Run", "ToolNames", "call_key", "detection",
           "first_str", "judged_runs", "number", "payload", "runs", "seq_of", "strings", "timestamp_ms", "tokens",
           "tool_name"]

Event = Mapping[str, Any]

END = "session_end"
START_TYPES = frozenset({"task_started", "session_start"})  # a run (a task attempt) begins
STEP_TYPES = frozenset({"llm_call", "tool_call"})  # what counts as one step of an agent
MAX_EVIDENCE = 50  # seqs kept in a detection's evidence at most (the first ones)
MAX_TEXT_CHARS = 20_000  # characters of one string a text detector reads at most
MAX_STRINGS = 200  # strings gathered from one payload value at most
_SECONDS_BEFORE = 10**11  # a numeric timestamp below this is epoch seconds, at or above it epoch milliseconds
_EMPTY: Mapping[str, Any] = {}
_ID_KEYS = ("call_id", "tool_call_id", "id")


def payload(event: Event) -> Mapping[str, Any]:
    value = event.get("payload")
    return value if isinstance(value, dict) else _EMPTY


def seq_of(event: Event) -> int:
    value = event.get("seq")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def first_str(data: Mapping[str, Any], keys: Sequence[str]) -> str:
    """The first non-blank string among ``keys`` (stripped), or ""."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and value >= 0 else 0.0  # NaN, infinities, negatives: 0


_IN_KEYS = ("tokens_in", "input_tokens", "prompt_tokens")
_OUT_KEYS = ("tokens_out", "output_tokens", "completion_tokens")


def tokens(data: Mapping[str, Any]) -> int:
    """Tokens in + out an ``llm_call`` reports (any of the documented spellings, at the top or in ``usage``)."""
    total = 0.0
    for source in (data, data.get("usage")):
        if isinstance(source, dict):
            for keys in (_IN_KEYS, _OUT_KEYS):
                for key in keys:
                    if key in source:
                        total += number(source[key])
                        break
    return int(total)


def tool_name(data: Mapping[str, Any]) -> str:
    name = first_str(data, ("tool", "tool_name", "name"))
    return name[:100]


class ToolNames:
    """Which tool a ``tool_result`` belongs to: its own ``tool`` name, else its call's (by ``call_id`` /
    ``tool_call_id`` / ``id``), else the latest ``tool_call``'s. Feed it every ``tool_call`` in order."""

    def __init__(self) -> None:
        self.by_id: dict[str, str] = {}
        self.last = ""

    def call(self, data: Mapping[str, Any]) -> str:
        self.last = tool_name(data) or "<unnamed>"
        call_id = first_str(data, _ID_KEYS)
        if call_id:
            self.by_id[call_id] = self.last
        return self.last

    def result(self, data: Mapping[str, Any]) -> str:
        return tool_name(data) or self.by_id.get(first_str(data, _ID_KEYS), "") or self.last or "<unnamed>"


def call_key(value: Any) -> Hashable:
    """A stable, hashable stand-in for a call's arguments or prompt: equal for equal values whatever the dict key
    order, and a JSON text equals the value it encodes (``'{"a": 1}'`` is ``{"a": 1}``)."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "["):
            try:
                return _freeze(json.loads(text))
            except (ValueError, RecursionError):
                pass
        return text
    return _freeze(value)


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        if all(type(v) is str for v in value.values()):  # the common flat case, same result as below
            items = tuple(value.items())
        else:
            items = tuple((k, _freeze(v)) for k, v in value.items())
        try:
            return ("{", tuple(sorted(items)))
        except TypeError:  # keys of mixed types (not from JSON)
            return ("{", tuple(sorted(items, key=lambda item: repr(item[0]))))
    if isinstance(value, list):
        return ("[", tuple(_freeze(v) for v in value))
    if isinstance(value, bool):  # True == 1 otherwise
        return ("b", value)
    if isinstance(value, str | int | float) or value is None:
        return value
    return ("?", repr(value))


def timestamp_ms(value: Any) -> int | None:
    """Epoch milliseconds from an RFC 3339 string or epoch seconds/milliseconds; None when unreadable."""
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.strip()).timestamp() * 1000)
        except (ValueError, OverflowError, OSError):
            return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return int(value * 1000) if value < _SECONDS_BEFORE else int(value)
    return None


def strings(value: Any, *, limit: int = MAX_STRINGS) -> Iterator[str]:
    """The string leaves of a JSON value (depth first, at most ``limit``), each cut to ``MAX_TEXT_CHARS``."""
    stack = [value]
    found = 0
    while stack and found < limit:
        item = stack.pop()
        if isinstance(item, str):
            if item:
                found += 1
                yield item[:MAX_TEXT_CHARS]
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


@dataclass
class Run:
    """One run (a task attempt) inside a trace: from a start event (or the trace's beginning) to its
    ``session_end``, or to the next start event when the run never ended."""

    events: list[Event] = field(default_factory=list)
    started: Event | None = None  # the task_started / session_start that opened it
    end: Event | None = None  # its session_end
    cut: bool = False  # another run started before this one ended

    @property
    def end_payload(self) -> Mapping[str, Any]:
        return payload(self.end) if self.end is not None else _EMPTY

    @property
    def status(self) -> str:
        if self.end is None:
            return ""
        value = self.end_payload.get("status")
        return value if isinstance(value, str) and value else "completed"


def runs(events: Sequence[Event]) -> list[Run]:
    """The trace cut into runs; a retried task has one per attempt."""
    found: list[Run] = []
    current = Run()
    for event in events:
        kind = event.get("type")
        if kind in START_TYPES:
            if current.events:
                current.cut = current.end is None
                found.append(current)
            current = Run(started=event)
        current.events.append(event)
        if kind == END:
            current.end = event
            found.append(current)
            current = Run()
    if current.events:
        found.append(current)
    return found


def judged_runs(events: Sequence[Event]) -> list[Run]:
    """The runs per-run limits judge (loop and the budgets): :func:`runs`, except that a trace without any start
    event (an external agent's) is one run whatever ``session_end`` events it holds (its end: the last one)."""
    if any(event.get("type") in START_TYPES for event in events):
        return runs(events)
    if not events:
        return []
    ends = [event for event in events if event.get("type") == END]
    return [Run(events=list(events), end=ends[-1] if ends else None)]


def detection(failure_class: str, signature: str, *, confidence: float, evidence: Sequence[int],
              critical: int | None, summary: str, version: str) -> Detection:
    seqs = tuple(sorted({seq for seq in evidence if seq > 0}))[:MAX_EVIDENCE]  # 0: an event without a seq
    return Detection(failure_class=failure_class, signature=signature[:200], confidence=round(confidence, 3),
                     evidence=seqs, critical_step_seq=critical or None, summary=summary[:300],
                     detector_version=version)
