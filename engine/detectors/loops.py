"""loop: an agent repeating itself (pure).

Two call streams are read, each in seq order and ignoring every other event between calls:

- tool calls, one call being ``(tool, arguments)`` (arguments compared as canonical JSON, so key order and a
  JSON-encoded string do not matter);
- LLM calls that report their input, one call being ``(model, prompt)`` or ``(model, messages)``; a conversation
  is compared by its length and its first and last messages, so a growing history never counts as a repeat.

A loop is the same call ``loop_repeats`` times in a row (3: two identical calls are not a loop), or a cycle of
2 or 3 different calls repeated ``loop_cycles`` full times (A-B-A-B). Signature: the tools involved, sorted,
``tool:<a>+<b>`` (never the argument values), or ``llm:<model>``. An LLM loop inside a tool loop is the same
loop, reported once (as the tool loop); the same prompt while the tool calls in between change is progress, not a
loop.

Each run is read on its own (a retried task has one per attempt, :func:`engine.detectors.events.judged_runs`): a
retry that begins with the same calls as the failed attempt is starting over, not looping.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from config.detectors import Thresholds
from engine.detectors.events import Event, call_key, detection, first_str, judged_runs, payload, seq_of, tool_name
from engine.detectors.model import Detection, TraceFacts

__all__ = ["LOOP_VERSION", "MAX_PERIOD", "detect_loop"]

LOOP_VERSION = "loop/2"  # /2: per run (attempt)
MAX_PERIOD = 3  # calls in the longest cycle looked for (A-B-C-A-B-C)
_ARG_KEYS = ("args", "arguments", "input", "parameters")


class _Stream:
    """Calls of one kind: their seqs, display names and interned keys (equal call -> equal int)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.seqs: list[int] = []
        self.names: list[str] = []
        self.keys: list[int] = []
        self._ids: dict[Hashable, int] = {}

    def add(self, seq: int, name: str, key: Hashable) -> None:
        self.seqs.append(seq)
        self.names.append(name)
        self.keys.append(self._ids.setdefault(key, len(self._ids)))


def _tool_key(data: Mapping[str, Any]) -> Hashable:
    for key in _ARG_KEYS:
        if key in data:
            return call_key(data[key])
    return ""


def _llm_input(data: Mapping[str, Any]) -> Hashable | None:
    prompt = data.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return prompt.strip()
    messages = data.get("messages")
    if isinstance(messages, list) and messages:
        return (len(messages), call_key(messages[0]), call_key(messages[-1]))
    return None


def _streams(events: Sequence[Event]) -> tuple[_Stream, _Stream]:
    tools, llms = _Stream("tool"), _Stream("llm")
    for event in events:
        kind = event.get("type")
        if kind == "tool_call":
            data = payload(event)
            name = tool_name(data) or "<unnamed>"
            tools.add(seq_of(event), name, (name, _tool_key(data)))
        elif kind == "llm_call":
            data = payload(event)
            text = _llm_input(data)
            if text is not None:
                model = first_str(data, ("model",))[:100] or "<model>"
                llms.add(seq_of(event), model, (model, text))
    return tools, llms


def _segments(keys: list[int], *, repeats: int, cycles: int) -> list[tuple[int, int, int]]:
    """(period, first index, last index) of every maximal stretch that repeats itself enough."""
    found = []
    n = len(keys)
    for period in range(1, MAX_PERIOD + 1):
        i = period
        while i < n:
            if keys[i] != keys[i - period]:
                i += 1
                continue
            j = i
            while j + 1 < n and keys[j + 1] == keys[j + 1 - period]:
                j += 1
            start = i - period
            length = j - start + 1
            if period == 1:
                enough = length >= repeats
            else:
                enough = length >= period * cycles and len(set(keys[start:start + period])) == period
            if enough:
                found.append((period, start, j))
            i = j + 1
    return found


def _detections(stream: _Stream, limits: Thresholds) -> list[tuple[int, int, Detection]]:
    found = []
    for period, start, end in _segments(stream.keys, repeats=limits.loop_repeats, cycles=limits.loop_cycles):
        length = end - start + 1
        names = stream.names[start:start + period]
        signature = f"{stream.prefix}:" + "+".join(sorted(set(names)))
        if period == 1:
            confidence = min(1.0, 0.7 + 0.1 * (length - limits.loop_repeats + 1))
            summary = (f"{names[0]} called {length} times in a row with the same arguments" if stream.prefix == "tool"
                       else f"the same prompt sent to {names[0]} {length} times in a row")
        else:
            confidence = min(1.0, 0.6 + 0.1 * (length // period))
            summary = f"oscillating between {' -> '.join(names)} ({length // period} cycles)"
        seqs = stream.seqs[start:end + 1]
        found.append((seqs[0], seqs[-1], detection("loop", signature, confidence=confidence, evidence=seqs,
                                                   critical=stream.seqs[start + period], summary=summary,
                                                   version=LOOP_VERSION)))
    return found


def detect_loop(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    found = []
    for run in judged_runs(events):
        found += _loops_of(run.events, limits)
    return found


def _loops_of(events: Sequence[Event], limits: Thresholds) -> list[Detection]:
    tools, llms = _streams(events)
    tool_loops = _detections(tools, limits)
    found = [d for _, _, d in tool_loops]
    for first, last, llm_loop in _detections(llms, limits):
        # The same prompt while the tool calls move on is progress (an agent logging a fixed system prompt);
        # the same prompt around one repeated tool call is that tool loop, already reported.
        between = {key for seq, key in zip(tools.seqs, tools.keys, strict=True) if first <= seq <= last}
        inside_tool_loop = any(first <= t_last and t_first <= last for t_first, t_last, _ in tool_loops)
        if len(between) <= 1 and not inside_tool_loop:
            found.append(llm_loop)
    return found
