"""What every backend gets and gives back."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Backend", "Outcome", "RunHandle", "TaskContext"]


@dataclass
class RunHandle:
    """One run in progress. ``stop`` is set to abort it (cancel, or the process is stopping); ``reason`` says
    which. Backends poll ``stop`` and kill what they started."""

    task_id: str
    stop: threading.Event = field(default_factory=threading.Event)
    reason: str = ""  # "cancelled" | "shutdown"

    def abort(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.stop.set()


@dataclass
class TaskContext:
    """What a handler function receives."""

    id: str
    prompt: str
    context: dict[str, Any] | None
    worker: str
    attempt: int
    timeout: float  # seconds
    events: list[dict[str, Any]] = field(default_factory=list)
    trace_file: str | None = None  # command workers: where the process may append JSON-lines trace events
    cwd: str | None = None  # the directory to run in instead of the worker's own (regression replay's worktree)

    def emit(self, event: dict[str, Any]) -> None:
        """Record a trace event for this run: ``{"type": "llm_call", "payload": {...}}`` (``timestamp`` and
        ``idempotency_key`` optional). Events reach the task's trace in the order emitted, while it runs."""
        stamped = dict(event)
        if stamped.get("timestamp") is None:
            stamped["timestamp"] = time.time_ns() // 1_000_000  # when it happened, not when it is flushed
        self.events.append(stamped)


@dataclass(frozen=True)
class Outcome:
    """How a run ended. ``status``: completed | failed | timeout | aborted. ``retryable`` failures may retry."""

    status: str
    output: str = ""
    error: str = ""
    exit_code: int | None = None
    retryable: bool = True
    http_status: int | None = None  # endpoint workers: the status of the answer that ended the run
    events: tuple[Any, ...] = ()  # trace events the backend returned with its answer (checked when written)


class Backend(Protocol):
    def run(self, ctx: TaskContext, handle: RunHandle) -> Outcome: ...
