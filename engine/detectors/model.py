"""What a detector says about a trace: plain data, no I/O (issue 5, DESIGN section 6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAILURE_CLASSES", "Detection", "TraceFacts"]

# Every failure class the catalogue knows, in a stable order.
FAILURE_CLASSES = ("crash", "timeout", "lost_worker", "loop", "step_budget", "time_budget", "token_budget",
                   "tool_error", "validator_failure", "prompt_injection", "cost_spike", "empty_output",
                   "exit_nonzero")


@dataclass(frozen=True)
class Detection:
    """One failure found in a trace. Incidents group detections by (project, failure_class, signature), so the
    signature must be stable for "the same bug" and different for different ones."""

    failure_class: str  # one of FAILURE_CLASSES
    signature: str  # stable grouping key within the class (e.g. a normalised error fingerprint, a tool name)
    confidence: float  # 0..1
    evidence: tuple[int, ...]  # seqs of the events that show it, ascending
    critical_step_seq: int | None  # the seq where it went wrong (None: the trace as a whole)
    summary: str  # one line a person can read
    detector_version: str  # bumped when a detector's output changes, so an upgrade does not silently regroup

    def to_public(self) -> dict[str, Any]:
        return {"failure_class": self.failure_class, "signature": self.signature,
                "confidence": self.confidence, "evidence": list(self.evidence),
                "critical_step_seq": self.critical_step_seq, "summary": self.summary,
                "detector_version": self.detector_version}


@dataclass(frozen=True)
class TraceFacts:
    """What detectors know about a trace besides its events (from the trace record and, for a task's trace,
    the task). Events themselves are dicts ``{seq, type, timestamp, payload, idempotency_key?}`` in seq order."""

    trace_id: str
    status: str  # running | completed | failed | crashed | timeout | cancelled
    source: str = "api"  # api | task | mesedi
    worker: str = ""  # the worker (task traces) or the agent
    duration_ms: int | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    task_state: str | None = None  # the task's state when the trace is a task run
    task_error: str | None = None
    task_result: str | None = None
    worker_kind: str | None = None  # command | endpoint | handler
    recent_costs: tuple[float, ...] = field(default_factory=tuple)  # the worker's recent run costs (cost_spike)
    project: str = ""  # the trace's project: picks the project's threshold overrides (``detectors.projects``)
