"""Running the detectors on a stored trace and recording what they find (issue 5).

:class:`Analyzer` reads a trace, its events and what the engine knows around it (the task, the worker's kind,
the worker's recent run costs), runs the detector catalogue, stores the result as the trace's analysis and
records each detection into its incident. It runs synchronously (an engine job, or a thread of the API for
``POST /api/traces/{id}/analyze``) on any :class:`~engine.store.Runner`.

- full (the trace ended, or on demand): the whole catalogue; the run's cost joins the worker's recent costs, which the
  ``cost_spike`` detector compares the next runs with.
- live scan (the trace still runs): only the classes that make sense mid-run (loops, budgets) over the last
  ``LIVE_WINDOW`` events, so a runaway agent is flagged while it runs; a live scan never replaces a final
  analysis.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config.detectors import DetectorSettings
from engine import alerts, incidents, keys, registry, traces
from engine.clock import now_ms
from engine.detectors.catalogue import analyze, analyze_incremental
from engine.detectors.model import Detection, TraceFacts
from engine.event_jobs import Retry
from engine.models import iso_ms
from engine.store import Op, Runner
from engine.traces import Trace

__all__ = ["Analysis", "Analyzer"]

logger = logging.getLogger(__name__)

MAX_EVENTS = 100_000  # events one analysis reads at most (a longer trace: its head and its tail, and says so)
TAIL_EVENTS = 1_000  # of those, the last ones of a longer trace
# Most recent events a live scan reads. Loops show in the last few dozen events; a live scan's cost grows with
# this window times the number of running traces (2,000 every 2 s cut trace ingest by two thirds with 64
# traces running), so the window is small and the full analysis at the end reads everything.
LIVE_WINDOW = 300
SCAN_EVERY_S = 5.0  # seconds between the steps of a running trace's live-scan chain
SCAN_GUARD_S = 60.0  # seconds a chain's guard lasts unless renewed (as trace_ingest.lua's SCAN_GUARD_MS)
TASK_WAIT_TRIES = 5  # times analyze_trace waits for a task's outcome before analysing without it
TASK_WAIT_S = 1.0  # seconds between those tries
PAGE = 5_000  # events per read
RECENT_COSTS = 50  # completed runs per worker kept for the cost_spike baseline


@dataclass
class Analysis:
    trace_id: str
    final: bool
    analyzed_at_ms: int
    events: int  # events read
    truncated: bool
    detections: list[Detection]
    incidents: list[dict[str, Any]] = field(default_factory=list)  # per detection: {incident_id, outcome}
    trace_ended: bool = True  # the trace had ended when it was analysed (a live scan never replaces this)
    seen_events: int = 0  # the trace's event count when it was read

    def to_public(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "scope": "full" if self.final else "live",
                "trace_ended": self.trace_ended, "analyzed_at": iso_ms(self.analyzed_at_ms),
                "events_analyzed": self.events, "truncated": self.truncated,
                "detections": [d.to_public() for d in self.detections], "incidents": self.incidents}

    def to_json(self) -> str:
        return json.dumps(self.to_public(), ensure_ascii=False, separators=(",", ":"))


class Analyzer:
    def __init__(self, runner: Runner, settings: DetectorSettings) -> None:
        self.runner = runner
        self.settings = settings
        # callbacks (project, worker, outcomes) after detections were recorded: auto-heal's trigger
        self.on_outcomes: list[Callable[[str, str, list[incidents.Outcome]], None]] = []

    # -- engine jobs --------------------------------------------------------------------------------------
    def analyze_job(self, trace_id: str, attempt: int) -> Retry | None:
        """``analyze_trace``: the full analysis of a trace that ended. A task's run ends its trace just before
        the task's outcome is recorded: wait for the outcome (a few tries) so empty_output and the task's
        error are judged."""
        trace = self.runner.run(traces.get(trace_id))
        if trace is None:
            return None
        if trace.source == "task" and trace.task_id and attempt < TASK_WAIT_TRIES:
            state = self.runner.run(Op(lambda raw: raw, command=("HGET", keys.key("task", id=trace.task_id),
                                                                 "state")))
            if state in ("pending", "dispatched"):
                return Retry(delay_s=TASK_WAIT_S, attempt=attempt + 1)
        self.analyze(trace_id, final=True, trace=trace)
        return None

    def scan_job(self, trace_id: str, attempt: int) -> Retry | None:
        """``scan_trace``: one step of a running trace's live-scan chain. The trace store starts a chain when a
        batch lands and none is alive; each step scans, then looks again SCAN_EVERY_S later and scans only if
        events arrived meanwhile (``scan_next.lua``), so the last batch of a burst is scanned too, and a chain
        ends, atomically, once a step finds nothing new."""
        guard_ms = int(SCAN_GUARD_S * 1000)
        if attempt > 1 and not self.runner.run(Op(int, script="scan_next", args=(trace_id, guard_ms))):
            return None
        if attempt == 1:
            self.runner.run(Op(int, command=("DEL", keys.key("trace_scan_dirty", id=trace_id))))
        if self.analyze(trace_id, final=False) is None:  # gone, or it ended: the full analysis takes over
            self.runner.run(Op(int, command=("DEL", keys.key("trace_scan", id=trace_id))))
            return None
        return Retry(delay_s=SCAN_EVERY_S, attempt=attempt + 1)

    # -- analysis -----------------------------------------------------------------------------------------
    def analyze(self, trace_id: str, *, final: bool = True, record: bool = True,
                trace: Trace | None = None) -> Analysis | None:
        """Analyse a trace: the whole catalogue (``final``) or a live scan; None when it does not exist (or, for
        a live scan, when it is no longer running). ``record``: also record the detections into incidents (an
        incident counts each trace once, so analysing again is harmless). ``trace``: the record, when the caller
        has just read it."""
        if trace is None:
            trace = self.runner.run(traces.get(trace_id))
        if trace is None:
            return None
        if not final and trace.status != "running":
            return None  # it ended meanwhile: the final analysis has it
        events, truncated = self._events(trace, final=final)
        facts, replay = self._facts(trace)
        record = record and not replay  # a regression run's replay judges a fix; it is not a new occurrence
        if final:
            detections = analyze(events, facts, self.settings)
        else:
            detections = analyze_incremental(events, facts, self.settings)
        result = Analysis(trace_id=trace.id, final=final, analyzed_at_ms=now_ms(), events=len(events),
                          truncated=truncated, detections=detections, trace_ended=trace.status != "running",
                          seen_events=trace.events)
        if record and detections:
            outcomes = self.runner.run(incidents.record(
                project=trace.project, trace_id=trace.id, task_id=trace.task_id or None,
                worker=trace.worker or trace.agent, cost_usd=trace.cost_usd, detections=detections,
                now_ms=result.analyzed_at_ms))
            result.incidents = [o.to_public() for o in outcomes]
            alerts.incident_alerts(self.runner, trace.project, outcomes)  # incident.created / .regressed
            for callback in self.on_outcomes:
                try:
                    callback(trace.project, trace.worker, outcomes)
                except Exception:  # a follow-up never undoes the analysis
                    logger.exception("an analysis callback failed", extra={"trace_id": trace.id})
        self._store(trace, result, replay=replay)
        return result

    def _events(self, trace: Trace, *, final: bool) -> tuple[list[dict[str, Any]], bool]:
        """A live scan: the newest LIVE_WINDOW events. Full: every event, or for a trace longer than
        MAX_EVENTS its first ones and its last TAIL_EVENTS (where it ended: the crash, the exit, the timeout)."""
        stream = keys.key("trace_events", id=trace.id)
        if not final:
            newest = self.runner.run(Op(traces.parse_stream_entries, command=(
                "XREVRANGE", stream, "+", "-", "COUNT", LIVE_WINDOW)))
            return [e.to_public() for e in reversed(newest)], trace.events > LIVE_WINDOW
        head_max = MAX_EVENTS if trace.events <= MAX_EVENTS else MAX_EVENTS - TAIL_EVENTS
        found: list[dict[str, Any]] = []
        after = 0
        while len(found) < head_max:
            page = self.runner.run(traces.read_events(trace.id, after_seq=after,
                                                      limit=min(PAGE, head_max - len(found))))
            found += [e.to_public() for e in page]
            if not page or len(found) >= head_max:
                break
            after = page[-1].seq
        if trace.events <= len(found):
            return found, False
        tail = self.runner.run(Op(traces.parse_stream_entries, command=(
            "XREVRANGE", stream, "+", f"({found[-1]['seq'] if found else 0}-0", "COUNT", TAIL_EVENTS)))
        found += [e.to_public() for e in reversed(tail)]
        return found, trace.events > len(found)

    def _facts(self, trace: Trace) -> tuple[TraceFacts, bool]:
        """The facts detectors judge the trace with, and whether it is a regression run's replay."""
        task: dict[str, str] = {}
        kind = None
        replay = False
        if trace.source == "task" and trace.task_id:
            state, error, result, replay_of = self.runner.run(Op(list, command=(
                "HMGET", keys.key("task", id=trace.task_id), "state", "error", "result", "regression_run")))
            task = {"state": state, "error": error, "result": result}
            replay = bool(replay_of)
            found = self.runner.run(registry.get_def(trace.worker)) if trace.worker else None
            kind = found[0].kind if found is not None else None
        worker = trace.worker or trace.agent
        entries = self.runner.run(Op(list, command=(
            "LRANGE", keys.key("recent_costs", project=trace.project, worker=worker or "-"), 0,
            RECENT_COSTS - 1)))
        costs = []
        for entry in entries:  # "<trace id> <usd>"; the run itself is never part of its own baseline
            owner, _, usd = entry.rpartition(" ")
            if owner != trace.id:
                costs.append(float(usd))
        duration = trace.duration_ms
        if duration is None and trace.status == "running":  # so far: a running trace's time budget counts too
            duration = max(0, now_ms() - trace.created_at_ms)
        return TraceFacts(
            trace_id=trace.id, status=trace.status, source=trace.source, worker=worker, project=trace.project,
            duration_ms=duration, tokens_in=trace.tokens_in, tokens_out=trace.tokens_out,
            cost_usd=trace.cost_usd, task_state=task.get("state"), task_error=task.get("error"),
            task_result=task.get("result"), worker_kind=kind, recent_costs=tuple(costs)), replay

    def _store(self, trace: Trace, result: Analysis, *, replay: bool = False) -> None:
        # a replayed run (regression run) is no sample of the worker's normal cost
        sample = result.final and trace.status == "completed" and trace.cost_usd > 0 and not replay
        costs = keys.key("recent_costs", project=trace.project, worker=trace.worker or trace.agent or "-")
        self.runner.run(Op(int, script="analysis_store", args=(
            trace.id, result.to_json(), "1" if result.trace_ended else "0",
            f"{trace.id} {trace.cost_usd!r}" if sample else "", costs, RECENT_COSTS)))
