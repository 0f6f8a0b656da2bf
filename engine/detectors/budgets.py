"""step_budget, time_budget, token_budget: a run that went past its limits (pure; also run on a trace that is
still running, so a runaway agent is flagged while it runs).

- steps: ``llm_call`` and ``tool_call`` events; fires past ``max_steps``, critical step = the first one over.
- tokens: in + out of the ``llm_call`` events (every documented spelling), or the trace's own totals
  (``facts``, ``session_end`` ``total_tokens_in``/``total_tokens_out``) when larger; fires past ``max_tokens``.
- time: the trace's duration (``facts.duration_ms``, a ``session_end``'s ``duration_ms``, or the span of the
  event timestamps, whichever is longest); fires past ``max_duration``, critical step = the first event stamped
  after the limit.

Signature: the worker (or agent) name, ``-`` when there is none: thresholds are per worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from config.detectors import Thresholds
from engine.detectors.events import END, STEP_TYPES, Event, detection, number, payload, seq_of, timestamp_ms, tokens
from engine.detectors.model import Detection, TraceFacts

__all__ = ["BUDGET_VERSIONS", "detect_step_budget", "detect_time_budget", "detect_token_budget"]

BUDGET_VERSIONS = {"step_budget": "step_budget/1", "time_budget": "time_budget/1", "token_budget": "token_budget/1"}


def detect_step_budget(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    steps = 0
    critical = None
    for event in events:
        if event.get("type") in STEP_TYPES:
            steps += 1
            if steps == limits.max_steps + 1:
                critical = seq_of(event)
    if critical is None:
        return []
    return [detection("step_budget", facts.worker or "-", confidence=1.0, evidence=[critical], critical=critical,
                      summary=f"{steps} steps, over the budget of {limits.max_steps}",
                      version=BUDGET_VERSIONS["step_budget"])]


def detect_token_budget(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    used = 0
    critical = None
    reported = facts.tokens_in + facts.tokens_out
    for event in events:
        kind = event.get("type")
        if kind == "llm_call":
            used += tokens(payload(event))
            if critical is None and used > limits.max_tokens:
                critical = seq_of(event)
        elif kind == END:
            data = payload(event)
            reported = max(reported, int(number(data.get("total_tokens_in")) + number(data.get("total_tokens_out"))))
    total = max(used, reported)
    if total <= limits.max_tokens:
        return []
    if critical is None:  # over by the reported totals only: the end of the trace
        critical = seq_of(events[-1]) if events else None
    return [detection("token_budget", facts.worker or "-", confidence=1.0 if used == total else 0.9,
                      evidence=[critical] if critical else [], critical=critical,
                      summary=f"{total:,} tokens, over the budget of {limits.max_tokens:,}",
                      version=BUDGET_VERSIONS["token_budget"])]


def _stamps(events: Sequence[Event]) -> tuple[int | None, int | None]:
    first = next((t for e in events if (t := timestamp_ms(e.get("timestamp"))) is not None), None)
    last = next((t for e in reversed(events) if (t := timestamp_ms(e.get("timestamp"))) is not None), None)
    return first, last


def detect_time_budget(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    limit_ms = limits.max_duration * 1000
    start, last = _stamps(events)
    candidates = [facts.duration_ms or 0, (last - start) if start is not None and last is not None else 0]
    candidates += [int(number(payload(e).get("duration_ms"))) for e in events if e.get("type") == END]
    duration = max(candidates)
    if duration <= limit_ms:
        return []
    critical = None
    if start is not None:
        critical = next((seq_of(e) for e in events
                         if (t := timestamp_ms(e.get("timestamp"))) is not None and t - start > limit_ms), None)
    if critical is None:
        ends = [e for e in events if e.get("type") == END]
        critical = seq_of(ends[-1] if ends else events[-1]) if events else None
    summary = f"ran {duration / 1000:,.0f}s, over the budget of {limits.max_duration:,.0f}s"
    return [detection("time_budget", facts.worker or "-", confidence=1.0, evidence=[critical] if critical else [],
                      critical=critical, summary=summary, version=BUDGET_VERSIONS["time_budget"])]
