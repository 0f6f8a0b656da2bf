"""step_budget, time_budget, token_budget: a run that went past its limits (pure; also run on a trace that is
still running, so a runaway agent is flagged while it runs).

Limits are per run: a retried task's trace holds one run per attempt (``task_started`` ... ``session_end``,
:func:`engine.detectors.events.judged_runs`), and each attempt is judged on its own (three attempts of 120 steps
are not 360 steps). A trace without a start event (an external agent) is one run.

- steps: ``llm_call`` and ``tool_call`` events of a run; fires past ``max_steps``, critical step = the first one
  over.
- tokens: in + out of a run's ``llm_call`` events (every documented spelling); when the trace is a single run,
  also the trace's own totals (``facts``, ``session_end`` ``total_tokens_in``/``total_tokens_out``) when larger
  (they count every run). Fires past ``max_tokens``.
- time: a run's wall time, from its first event (its ``task_started``) to its ``session_end`` (the end's
  ``duration_ms`` when it gives one, else the span of the timestamps); a run not ended (a live scan, a lost
  worker) is measured to its last event. When the trace is a single run, ``facts.duration_ms`` counts too
  (whichever is longest). Fires past ``max_duration``, critical step = the run's first event stamped after the
  limit.

Signature: the worker (or agent) name, ``-`` when there is none: thresholds are per worker. Several runs over
the limit give one detection (merged by the catalogue).
"""

from __future__ import annotations

from collections.abc import Sequence

from config.detectors import Thresholds
from engine.detectors.events import (
    END,
    STEP_TYPES,
    Event,
    Run,
    detection,
    judged_runs,
    number,
    payload,
    seq_of,
    timestamp_ms,
    tokens,
)
from engine.detectors.model import Detection, TraceFacts

__all__ = ["BUDGET_VERSIONS", "detect_step_budget", "detect_time_budget", "detect_token_budget"]

# /2: judged per run (attempt), not over the whole trace
BUDGET_VERSIONS = {"step_budget": "step_budget/2", "time_budget": "time_budget/2", "token_budget": "token_budget/2"}


def _attempt(index: int, runs: list[Run]) -> str:
    return f" (attempt {index + 1} of {len(runs)})" if len(runs) > 1 else ""


def detect_step_budget(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    found = []
    runs = judged_runs(events)
    for index, run in enumerate(runs):
        steps = 0
        critical = None
        for event in run.events:
            if event.get("type") in STEP_TYPES:
                steps += 1
                if steps == limits.max_steps + 1:
                    critical = seq_of(event)
        if critical is not None:
            found.append(detection("step_budget", facts.worker or "-", confidence=1.0, evidence=[critical],
                                   critical=critical,
                                   summary=f"{steps} steps in a run{_attempt(index, runs)}, over the budget of "
                                           f"{limits.max_steps}",
                                   version=BUDGET_VERSIONS["step_budget"]))
    return found


def detect_token_budget(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    found = []
    runs = judged_runs(events)
    for index, run in enumerate(runs):
        used = 0
        critical = None
        reported = 0
        for event in run.events:
            kind = event.get("type")
            if kind == "llm_call":
                used += tokens(payload(event))
                if critical is None and used > limits.max_tokens:
                    critical = seq_of(event)
            elif kind == END and len(runs) == 1:
                data = payload(event)
                reported = max(reported,
                               int(number(data.get("total_tokens_in")) + number(data.get("total_tokens_out"))))
        if len(runs) == 1:  # the trace's totals count every run: they say something only of a single one
            reported = max(reported, facts.tokens_in + facts.tokens_out)
        total = max(used, reported)
        if total <= limits.max_tokens:
            continue
        if critical is None:  # over by the reported totals only: the end of the run
            critical = seq_of(run.events[-1]) if run.events else None
        found.append(detection("token_budget", facts.worker or "-", confidence=1.0 if used == total else 0.9,
                               evidence=[critical] if critical else [], critical=critical,
                               summary=f"{total:,} tokens in a run{_attempt(index, runs)}, over the budget of "
                                       f"{limits.max_tokens:,}",
                               version=BUDGET_VERSIONS["token_budget"]))
    if not found and not events and facts.tokens_in + facts.tokens_out > limits.max_tokens:
        found.append(detection("token_budget", facts.worker or "-", confidence=0.9, evidence=[], critical=None,
                               summary=f"{facts.tokens_in + facts.tokens_out:,} tokens, over the budget of "
                                       f"{limits.max_tokens:,}",
                               version=BUDGET_VERSIONS["token_budget"]))
    return found


def _first_stamp(events: Sequence[Event]) -> int | None:
    return next((t for e in events if (t := timestamp_ms(e.get("timestamp"))) is not None), None)


def _last_stamp(events: Sequence[Event]) -> int | None:
    return next((t for e in reversed(events) if (t := timestamp_ms(e.get("timestamp"))) is not None), None)


def _run_duration(run: Run, start: int | None) -> int:
    """A run's wall time in ms: its end's ``duration_ms`` when given, else its first to its last timestamp (the
    ``session_end``'s for an ended run, the last event's for one not ended)."""
    if run.end is not None:
        given = int(number(run.end_payload.get("duration_ms")))
        if given > 0:
            return given
    last = _last_stamp(run.events)
    return last - start if start is not None and last is not None and last > start else 0


def detect_time_budget(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    limit_ms = limits.max_duration * 1000
    found = []
    runs = judged_runs(events)
    for index, run in enumerate(runs):
        start = _first_stamp(run.events)
        duration = _run_duration(run, start)
        if len(runs) == 1:  # the trace's duration is this run's only when there is one
            duration = max(duration, facts.duration_ms or 0)
        if duration <= limit_ms:
            continue
        critical = None
        if start is not None:
            critical = next((seq_of(e) for e in run.events
                             if (t := timestamp_ms(e.get("timestamp"))) is not None and t - start > limit_ms), None)
        if critical is None:
            critical = seq_of(run.end if run.end is not None else run.events[-1])
        summary = f"ran {duration / 1000:,.0f}s{_attempt(index, runs)}, over the budget of {limits.max_duration:,.0f}s"
        found.append(detection("time_budget", facts.worker or "-", confidence=1.0,
                               evidence=[critical] if critical else [], critical=critical, summary=summary,
                               version=BUDGET_VERSIONS["time_budget"]))
    if not found and not events and (facts.duration_ms or 0) > limit_ms:
        found.append(detection("time_budget", facts.worker or "-", confidence=1.0, evidence=[], critical=None,
                               summary=f"ran {(facts.duration_ms or 0) / 1000:,.0f}s, over the budget of "
                                       f"{limits.max_duration:,.0f}s",
                               version=BUDGET_VERSIONS["time_budget"]))
    return found
