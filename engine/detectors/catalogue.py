"""The detector catalogue: every failure class's detector, run over a trace (pure and deterministic).

``analyze`` runs them all (when a trace ends, or on demand); ``analyze_incremental`` runs only those that make
sense while a trace still runs (loop and the three budgets), so a runaway agent is flagged before it ends.

The same events and facts always give the same detections, in the same order: by failure class (the order of
``FAILURE_CLASSES``), then critical step, then signature. Detections of one class with the same signature are
one detection (evidence merged, the earliest critical step, the highest confidence): an incident counts a trace
once per (class, signature).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from config.detectors import DetectorSettings, Thresholds
from engine.detectors.budgets import BUDGET_VERSIONS, detect_step_budget, detect_time_budget, detect_token_budget
from engine.detectors.events import MAX_EVIDENCE, Event, seq_of
from engine.detectors.injection import INJECTION_VERSION, detect_prompt_injection
from engine.detectors.loops import LOOP_VERSION, detect_loop
from engine.detectors.model import FAILURE_CLASSES, Detection, TraceFacts
from engine.detectors.outcomes import (
    OUTCOME_VERSIONS,
    detect_cost_spike,
    detect_crash,
    detect_empty_output,
    detect_exit_nonzero,
    detect_lost_worker,
    detect_timeout,
    detect_validator_failure,
)
from engine.detectors.tools import TOOL_VERSION, detect_tool_error

__all__ = ["DETECTORS", "DETECTOR_VERSIONS", "INCREMENTAL_CLASSES", "Detector", "analyze", "analyze_incremental",
           "limits_for", "merge"]

Detector = Callable[[Sequence[Event], TraceFacts, Thresholds], list[Detection]]

DETECTORS: dict[str, Detector] = {
    "crash": detect_crash,
    "timeout": detect_timeout,
    "lost_worker": detect_lost_worker,
    "loop": detect_loop,
    "step_budget": detect_step_budget,
    "time_budget": detect_time_budget,
    "token_budget": detect_token_budget,
    "tool_error": detect_tool_error,
    "validator_failure": detect_validator_failure,
    "prompt_injection": detect_prompt_injection,
    "cost_spike": detect_cost_spike,
    "empty_output": detect_empty_output,
    "exit_nonzero": detect_exit_nonzero,
}
# What each class's detections carry as detector_version (bumped beside the detector when its output changes).
DETECTOR_VERSIONS: dict[str, str] = {**OUTCOME_VERSIONS, **BUDGET_VERSIONS, "loop": LOOP_VERSION,
                                     "tool_error": TOOL_VERSION, "prompt_injection": INJECTION_VERSION}
INCREMENTAL_CLASSES = ("loop", "step_budget", "time_budget", "token_budget")  # useful while a trace still runs
_RANK = {name: i for i, name in enumerate(FAILURE_CLASSES)}
assert tuple(DETECTORS) == FAILURE_CLASSES and set(DETECTOR_VERSIONS) == set(FAILURE_CLASSES)


def analyze(events: Sequence[Event], facts: TraceFacts,
            thresholds: Thresholds | DetectorSettings | None = None) -> list[Detection]:
    """Every failure the trace shows. ``thresholds``: the run's limits, or the ``detectors:`` settings (resolved
    here for ``facts.worker`` and ``facts.project``); None uses the defaults."""
    return _run(FAILURE_CLASSES, events, facts, thresholds)


def analyze_incremental(events: Sequence[Event], facts: TraceFacts,
                        thresholds: Thresholds | DetectorSettings | None = None) -> list[Detection]:
    """The failures that can be judged while the trace still runs: loop, step_budget, time_budget, token_budget
    (over the events so far; run it again on the whole trace after each batch)."""
    return _run(INCREMENTAL_CLASSES, events, facts, thresholds)


def limits_for(facts: TraceFacts, thresholds: Thresholds | DetectorSettings | None) -> Thresholds:
    """The thresholds that apply to this trace's run."""
    if isinstance(thresholds, DetectorSettings):
        return thresholds.for_run(worker=facts.worker, project=facts.project)
    return thresholds if thresholds is not None else Thresholds()


def _run(classes: Iterable[str], events: Sequence[Event], facts: TraceFacts,
         thresholds: Thresholds | DetectorSettings | None) -> list[Detection]:
    limits = limits_for(facts, thresholds)
    ordered = _in_seq_order(events)
    found: list[Detection] = []
    for name in classes:
        found += DETECTORS[name](ordered, facts, limits)
    return merge(found)


def _in_seq_order(events: Sequence[Event]) -> Sequence[Event]:
    seqs = [seq_of(e) for e in events]
    if all(a <= b for a, b in zip(seqs, seqs[1:], strict=False)):
        return events
    return sorted(events, key=seq_of)  # stable: events with equal seqs keep their order


def merge(found: Iterable[Detection]) -> list[Detection]:
    """One detection per (class, signature), sorted by class, critical step, signature."""
    groups: dict[tuple[str, str], list[Detection]] = {}
    for item in found:
        groups.setdefault((item.failure_class, item.signature), []).append(item)
    merged = []
    for (failure_class, signature), items in groups.items():
        first = items[0]
        if len(items) == 1:
            merged.append(first)
            continue
        criticals = [d.critical_step_seq for d in items if d.critical_step_seq is not None]
        evidence = tuple(sorted({seq for d in items for seq in d.evidence}))[:MAX_EVIDENCE]
        merged.append(Detection(failure_class=failure_class, signature=signature,
                                confidence=max(d.confidence for d in items), evidence=evidence,
                                critical_step_seq=min(criticals) if criticals else None,
                                summary=f"{first.summary} ({len(items)} times)",
                                detector_version=first.detector_version))
    merged.sort(key=lambda d: (_RANK.get(d.failure_class, len(_RANK)), d.critical_step_seq is None,
                               d.critical_step_seq or 0, d.signature))
    return merged
