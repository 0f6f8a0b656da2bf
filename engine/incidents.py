"""The incident store: detections clustered by (project, failure class, signature). Each function returns an Op.

An incident is a hash (``ty:incident:<id>``) with the sets of what it affected (traces with their cost, tasks,
workers) and a history list. ``ty:p:<project>:incsig:<digest>`` (digest = SHA-1 of class and signature) names the
incident of a signature, so ``incident_record.lua`` decides "first occurrence" in one call: however many
replicas record the same signature at once, one incident is made and exactly one caller hears ``created``.

Listing indexes (all, by status, by class, by worker) share one score, the incident's last-activity seq from
``ty:seq:incident``, bumped by every counted occurrence (not by triage): newest activity first.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.detectors.model import FAILURE_CLASSES, Detection
from engine.ids import new_id
from engine.models import iso_ms
from engine.store import Op

__all__ = [
    "ALERT_OUTCOMES",
    "INCIDENT_STATUSES",
    "OUTCOMES",
    "Incident",
    "Outcome",
    "Updated",
    "get",
    "list_page",
    "record",
    "signature_digest",
    "update",
]

INCIDENT_STATUSES = ("open", "acknowledged", "resolved", "regressed")
OUTCOMES = ("created", "regressed", "updated", "duplicate")
ALERT_OUTCOMES = frozenset({"created", "regressed"})  # the outcomes an alert fires for, once each

MAX_WORKERS = 50  # workers (or agents) an incident remembers and is indexed under; later ones still count
MAX_HISTORY = 200  # history entries kept per incident; the oldest are dropped
MAX_MEMBERS = 1000  # affected traces (with costs) and tasks an incident names; older ones drop, counts stay exact
MAX_SUMMARY_CHARS = 500  # characters of the first detection's summary kept
LIST_SHOWN = 10  # affected traces and tasks named per incident in a listing (counts are always exact)
DETAIL_SHOWN = 100  # affected traces and tasks named by GET /api/incidents/{id}
SCAN_BUDGET = 2000  # incidents a filtered listing page examines at most before answering with a cursor


@dataclass(frozen=True)
class Outcome:
    """What recording one detection did: ``kind`` is created | regressed | updated | duplicate."""

    incident_id: str
    kind: str
    failure_class: str
    signature: str

    @property
    def alert(self) -> bool:
        """Whether this occurrence is alert-worthy (first occurrence, or back after a resolve)."""
        return self.kind in ALERT_OUTCOMES

    def to_public(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "outcome": self.kind, "failure_class": self.failure_class,
                "signature": self.signature}


@dataclass(frozen=True)
class Incident:
    id: str
    project: str
    failure_class: str
    signature: str
    status: str
    owner: str
    summary: str
    first_seen_ms: int
    last_seen_ms: int
    updated_at_ms: int
    seq: int
    count: int  # occurrences: traces counted
    trace_count: int
    task_count: int
    traces: tuple[str, ...]  # the newest affected traces (capped)
    tasks: tuple[str, ...]  # the newest affected tasks (capped)
    workers: tuple[str, ...]  # most recently affected first
    cost_wasted_usd: float
    trace_id: str  # the representative trace: the first occurrence's
    task_id: str
    worker: str
    detector_version: str
    evidence: tuple[int, ...]  # of the representative detection
    critical_step_seq: int | None
    confidence: float
    regressions: int
    resolved_at_ms: int | None = None
    history: tuple[dict[str, Any], ...] | None = None  # only when read one by one
    fix_run_id: str = ""  # the fix a regression run verified (set with the resolve it caused)
    regression_run_id: str = ""  # that regression run

    @classmethod
    def from_row(cls, row: list[Any], history: list[str] | None = None) -> Incident:
        flat, traces, tasks, workers, n_traces, n_tasks = row
        h = dict(zip(flat[::2], flat[1::2], strict=True))
        critical = h.get("critical_step_seq") or ""
        return cls(
            id=h["id"], project=h["project"], failure_class=h["failure_class"], signature=h.get("signature", ""),
            status=h["status"], owner=h.get("owner", ""), summary=h.get("summary", ""),
            first_seen_ms=int(h["first_seen"]), last_seen_ms=int(h["last_seen"]),
            updated_at_ms=int(h.get("updated_at") or h["last_seen"]), seq=int(h.get("seq") or 0),
            count=int(h.get("count") or 0), trace_count=int(n_traces), task_count=int(n_tasks),
            traces=tuple(traces), tasks=tuple(tasks), workers=tuple(workers),
            cost_wasted_usd=float(h.get("cost_wasted_usd") or 0), trace_id=h.get("trace_id", ""),
            task_id=h.get("task_id", ""), worker=h.get("worker", ""), detector_version=h.get("detector_version", ""),
            evidence=tuple(json.loads(h.get("evidence") or "[]")),
            critical_step_seq=int(critical) if critical else None,
            confidence=float(h.get("confidence") or 0), regressions=int(h.get("regressions") or 0),
            resolved_at_ms=int(h["resolved_at"]) if h.get("resolved_at") else None,
            history=tuple(json.loads(e) for e in history) if history is not None else None,
            fix_run_id=h.get("fix_run_id", ""), regression_run_id=h.get("regression_run_id", ""))

    def to_public(self, *, playbook: str | None = None) -> dict[str, Any]:
        """The listing's shape; an incident read with its history (GET /api/incidents/{id}) adds the
        representative detection's evidence, the playbook and the history."""
        public: dict[str, Any] = {
            "id": self.id, "failure_class": self.failure_class, "signature": self.signature,
            "status": self.status, "owner": self.owner or None, "summary": self.summary,
            "first_seen": iso_ms(self.first_seen_ms), "last_seen": iso_ms(self.last_seen_ms),
            "updated_at": iso_ms(self.updated_at_ms), "resolved_at": iso_ms(self.resolved_at_ms),
            "count": self.count, "regressions": self.regressions,
            "trace_count": self.trace_count, "task_count": self.task_count,
            "traces": list(self.traces), "tasks": list(self.tasks), "workers": list(self.workers),
            "cost_wasted_usd": round(self.cost_wasted_usd, 8),
            "representative": {"trace_id": self.trace_id, "task_id": self.task_id or None,
                               "worker": self.worker or None},
            "detector_version": self.detector_version,
            "fix": ({"fix_run_id": self.fix_run_id or None, "regression_run_id": self.regression_run_id}
                    if self.regression_run_id else None),
        }
        if self.history is not None:
            public["evidence"] = {"seqs": list(self.evidence), "critical_step_seq": self.critical_step_seq,
                                  "confidence": self.confidence}
            public["playbook"] = playbook
            public["history"] = [_public_entry(e) for e in self.history]
        return public


@dataclass(frozen=True)
class Updated:
    """A PATCH applied: the incident afterwards and its status before (None: the status did not change)."""

    incident: Incident
    previous_status: str | None


def _public_entry(entry: dict[str, Any]) -> dict[str, Any]:
    public = dict(entry)
    public["at"] = iso_ms(entry.get("at"))
    return public


def signature_digest(failure_class: str, signature: str) -> str:
    """The key part naming a (class, signature) pair: SHA-1 hex of both (a signature may hold any text)."""
    return hashlib.sha1(f"{failure_class}\x1f{signature}".encode(), usedforsecurity=False).hexdigest()


def record(*, project: str, trace_id: str, task_id: str | None, worker: str, cost_usd: float,
           detections: Sequence[Detection], now_ms: int) -> Op[list[Outcome]]:
    """Count one trace's detections into their incidents, in one atomic call; one Outcome per detection, in
    order. ``cost_usd`` is the trace's cost so far (a trace recorded again counts at its largest figure).
    A detection of an unknown class, a negative or non-finite cost -> ValueError (a programming error)."""
    if not math.isfinite(cost_usd) or cost_usd < 0:
        raise ValueError(f"cost_usd must be a finite non-negative number, not {cost_usd!r}")
    args: list[Any] = [project, trace_id, task_id or "", worker, repr(float(cost_usd)), now_ms, MAX_WORKERS,
                       MAX_HISTORY, MAX_MEMBERS]
    for d in detections:
        if d.failure_class not in FAILURE_CLASSES:
            raise ValueError(f"unknown failure class {d.failure_class!r}")
        args += [signature_digest(d.failure_class, d.signature), new_id(), d.failure_class, d.signature,
                 d.summary[:MAX_SUMMARY_CHARS], d.detector_version, json.dumps(list(d.evidence)),
                 "" if d.critical_step_seq is None else str(d.critical_step_seq), repr(float(d.confidence))]

    def parse(raw: str) -> list[Outcome]:
        outcomes = []
        for d, answer in zip(detections, raw.split(",") if raw else (), strict=True):
            kind, _, incident_id = answer.partition(":")
            outcomes.append(Outcome(incident_id, kind, d.failure_class, d.signature))
        return outcomes

    return Op(parse, script="incident_record", args=tuple(args))


def get(incident_id: str, *, project: str, shown: int = DETAIL_SHOWN) -> Op[Incident | None]:
    """The incident with its history, or None (no such incident in the project)."""
    def parse(raw: list[Any]) -> Incident | None:
        if raw[0] == "missing":
            return None
        return Incident.from_row(raw[1], history=raw[2])

    return Op(parse, script="incident_get", args=(incident_id, project, shown))


def list_page(*, project: str, status: str | None, failure_class: str | None, worker: str | None,
              below_seq: int | None, limit: int, scan_budget: int = SCAN_BUDGET,
              shown: int = LIST_SHOWN) -> Op[tuple[list[Incident], int | None]]:
    """One page, newest activity first; the second value is the cursor for the next page (None: no more).
    A page with several filters may be short (even empty) and still have a cursor: see incident_list.lua."""
    def parse(raw: list[Any]) -> tuple[list[Incident], int | None]:
        rows, cursor = raw
        return [Incident.from_row(r) for r in rows], (int(float(cursor)) if cursor != "" else None)

    return Op(parse, script="incident_list", args=(
        project, status or "", failure_class or "", worker or "",
        "+inf" if below_seq is None else below_seq, limit, scan_budget, shown))


def update(incident_id: str, *, project: str, status: str | None, owner: str | None, set_owner: bool, by: str,
           now_ms: int) -> Op[Updated | None]:
    """Change the status (None: leave it) and, with ``set_owner``, the owner ("" or None: nobody); each change
    goes to the history as ``by``. None: no such incident in the project. The caller validates the status."""
    def parse(raw: list[Any]) -> Updated | None:
        if raw[0] == "missing":
            return None
        return Updated(Incident.from_row(raw[2], history=raw[3]), raw[1] or None)

    return Op(parse, script="incident_update", args=(
        incident_id, project, status or "", "1" if set_owner else "0", owner or "", by, now_ms, MAX_HISTORY,
        DETAIL_SHOWN))
