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
from dataclasses import dataclass, field
from typing import Any

from config.detectors import DetectorSettings
from engine import alerts, incidents, keys, traces
from engine.clock import now_ms
from engine.detectors.catalogue import analyze, analyze_incremental
from engine.detectors.model import Detection, TraceFacts
from engine.models import iso_ms
from engine.store import Op, Runner
from engine.traces import Trace

__all__ = ["Analysis", "Analyzer"]

logger = logging.getLogger(__name__)

MAX_EVENTS = 100_000  # events one analysis reads at most (the first ones; a longer trace is cut and says so)
LIVE_WINDOW = 2_000  # most recent events a live scan reads
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

    def to_public(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "scope": "full" if self.final else "live",
                "analyzed_at": iso_ms(self.analyzed_at_ms),
                "events_analyzed": self.events, "truncated": self.truncated,
                "detections": [d.to_public() for d in self.detections], "incidents": self.incidents}

    def to_json(self) -> str:
        return json.dumps(self.to_public(), ensure_ascii=False, separators=(",", ":"))


class Analyzer:
    def __init__(self, runner: Runner, settings: DetectorSettings) -> None:
        self.runner = runner
        self.settings = settings

    def analyze(self, trace_id: str, *, final: bool = True, record: bool = True) -> Analysis | None:
        """Analyse a trace: the whole catalogue (``final``) or a live scan; None when it does not exist (or, for
        a live scan, when it is no longer running). ``record``: also record the detections into incidents (an
        incident counts each trace once, so analysing again is harmless)."""
        trace = self.runner.run(traces.get(trace_id))
        if trace is None:
            return None
        if not final and trace.status != "running":
            return None  # it ended meanwhile: the final analysis has it
        events, truncated = self._events(trace, final=final)
        facts = self._facts(trace)
        if final:
            detections = analyze(events, facts, self.settings)
        else:
            detections = analyze_incremental(events, facts, self.settings)
        result = Analysis(trace_id=trace.id, final=final, analyzed_at_ms=now_ms(), events=len(events),
                          truncated=truncated, detections=detections)
        if record and detections:
            outcomes = self.runner.run(incidents.record(
                project=trace.project, trace_id=trace.id, task_id=trace.task_id or None,
                worker=trace.worker or trace.agent, cost_usd=trace.cost_usd, detections=detections,
                now_ms=result.analyzed_at_ms))
            result.incidents = [o.to_public() for o in outcomes]
            alerts.incident_alerts(self.runner, trace.project, outcomes)  # incident.created / .regressed
        self._store(trace, result)
        return result

    def _events(self, trace: Trace, *, final: bool) -> tuple[list[dict[str, Any]], bool]:
        if not final:
            newest = self.runner.run(Op(traces.parse_stream_entries, command=(
                "XREVRANGE", keys.key("trace_events", id=trace.id), "+", "-", "COUNT", LIVE_WINDOW)))
            return [e.to_public() for e in reversed(newest)], trace.events > LIVE_WINDOW
        found: list[dict[str, Any]] = []
        after = 0
        while len(found) < MAX_EVENTS:
            page = self.runner.run(traces.read_events(trace.id, after_seq=after,
                                                      limit=min(PAGE, MAX_EVENTS - len(found))))
            found += [e.to_public() for e in page]
            if len(page) < PAGE:
                return found, False
            after = page[-1].seq
        return found, True

    def _facts(self, trace: Trace) -> TraceFacts:
        task: dict[str, str] = {}
        kind = None
        if trace.source == "task" and trace.task_id:
            state, error, result = self.runner.run(Op(list, command=(
                "HMGET", keys.key("task", id=trace.task_id), "state", "error", "result")))
            task = {"state": state, "error": error, "result": result}
            definition = self.runner.run(Op(lambda raw: raw, command=(
                "GET", keys.key("worker_def", worker=trace.worker))))
            if definition:
                spec = json.loads(definition)
                kind = "command" if spec.get("command") else "endpoint" if spec.get("endpoint") else "handler"
        worker = trace.worker or trace.agent
        costs = self.runner.run(Op(list, command=(
            "LRANGE", keys.key("recent_costs", project=trace.project, worker=worker or "-"), 0,
            RECENT_COSTS - 1)))
        duration = trace.duration_ms
        if duration is None and trace.status == "running":  # so far: a running trace's time budget counts too
            duration = max(0, now_ms() - trace.created_at_ms)
        return TraceFacts(
            trace_id=trace.id, status=trace.status, source=trace.source, worker=worker, project=trace.project,
            duration_ms=duration, tokens_in=trace.tokens_in, tokens_out=trace.tokens_out,
            cost_usd=trace.cost_usd, task_state=task.get("state"), task_error=task.get("error"),
            task_result=task.get("result"), worker_kind=kind, recent_costs=tuple(float(c) for c in costs))

    def _store(self, trace: Trace, result: Analysis) -> None:
        key = keys.key("trace_analysis", id=trace.id)
        if result.final:
            commands: list[tuple] = [("SET", key, result.to_json())]
            if trace.status == "completed" and trace.cost_usd > 0:
                # The run joins its worker's cost baseline once (a re-analysis does not push it again).
                costs = keys.key("recent_costs", project=trace.project, worker=trace.worker or trace.agent or "-")
                commands += [("HSETNX", keys.key("trace", id=trace.id), "cost_sampled", "1")]
                sampled = self.runner.run(Op(list, commands=tuple(commands)))[-1]
                if sampled:
                    self.runner.run(Op(list, commands=(("LPUSH", costs, repr(trace.cost_usd)),
                                                       ("LTRIM", costs, 0, RECENT_COSTS - 1))))
                return
            self.runner.run(Op(list, commands=tuple(commands)))
        else:
            # A live scan never replaces a final analysis. (A final one written between these two calls would
            # be replaced by this scan; POST /api/traces/{id}/analyze puts it back.)
            stored = self.runner.run(Op(lambda raw: raw, command=("GET", key)))
            if stored is None or json.loads(stored).get("scope") != "full":
                self.runner.run(Op(lambda raw: raw, command=("SET", key, result.to_json())))
