"""A task run's trace, written by the worker process (trace id = task id).

At the start the trace is created (so a client can follow it live) and ``task_started`` is queued; while the
backend runs, what it reports is gathered (``ctx.emit`` for handlers, JSON lines appended to
``$TASKYARD_TRACE_FILE`` for commands) and flushed every ``FLUSH_INTERVAL_S`` by the runtime's trace loop;
at the end the rest goes with ``session_end`` (status, duration, exit code or HTTP status). Events are appended
in the order they were reported, the store numbering them; each carries an idempotency key of the run, so a
flush retried after a lost reply stores nothing twice. Tracing never fails a task: a store outage delays the
events, and a run whose trace cannot be written after the task ends logs a warning.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from config.settings import TraceSettings
from engine import traces
from engine.clock import now_ms
from engine.errors import StoreUnavailable
from engine.models import Task
from engine.pricing import PriceBook
from engine.store import Runner
from engine.trace_events import prepare_batch
from workers.backends.base import Outcome, TaskContext

__all__ = ["FLUSH_INTERVAL_S", "RunTrace", "TraceFile"]

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5  # seconds between flushes of running tasks' trace events
MAX_TRACE_FILE_BYTES = 64 * 1024 * 1024  # bytes of a command's trace file read at most per run
FINAL_FLUSH_TRIES = 3  # attempts to write the last events of a run before giving up on them
FINAL_RETRY_S = 0.5  # seconds between those attempts
_STATUS_OF = {"completed": "completed", "failed": "failed", "timeout": "timeout"}


class TraceFile:
    """The JSON-lines file a command may append events to; read incrementally, whole lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.invalid = 0

    def read_new(self, *, final: bool = False) -> list[Any]:
        """Events in the lines appended since the last call, stamped with the time they were read when they
        carry no timestamp. ``final``: the run is over, so an unterminated last line counts too."""
        if self.offset >= MAX_TRACE_FILE_BYTES:
            return []
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read(MAX_TRACE_FILE_BYTES - self.offset)
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = b"" if final else lines.pop()
        found = []
        stamp = now_ms()
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except (ValueError, UnicodeDecodeError, RecursionError):
                self.invalid += 1
                continue
            if isinstance(event, dict) and event.get("timestamp") is None:
                event["timestamp"] = stamp
            found.append(event)
        return found

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class RunTrace:
    def __init__(self, runner: Runner, task: Task, ctx: TaskContext, *, proc_id: str, prices: PriceBook,
                 limits: TraceSettings, trace_file: Path | None) -> None:
        self.runner = runner
        self.task = task
        self.ctx = ctx
        self.prices = prices
        self.limits = limits
        self.run_key = f"{proc_id[:12]}.{task.attempts}"
        self.file = TraceFile(trace_file) if trace_file is not None else None
        self.started_ms = now_ms()
        self._started_mono = time.monotonic()
        self._lock = threading.Lock()
        self._queued: list[dict[str, Any]] = [{"type": "task_started", "timestamp": self.started_ms, "payload": {
            "worker": ctx.worker, "attempt": ctx.attempt, "proc": proc_id, "pid": os.getpid()}}]
        self._taken = 0  # ctx.events already queued
        self._sent = 0  # events handed to the store (numbers the idempotency keys)
        self.rejected = 0  # events the store refused (bad shape)
        self.created = False

    def start(self) -> None:
        try:
            self.runner.run(traces.create(trace_id=self.task.id, project=self.task.project, now_ms=self.started_ms,
                                          name=self.ctx.worker, agent=self.ctx.worker, worker=self.ctx.worker,
                                          task_id=self.task.id, source="task"))
            self.created = True
        except StoreUnavailable:
            logger.warning("could not create the trace; will try again", extra={"task_id": self.task.id})
        except Exception:  # tracing never fails a task
            logger.exception("could not create the trace", extra={"task_id": self.task.id})

    def flush(self) -> None:
        """Write what the run reported so far (called by the runtime's trace loop)."""
        with self._lock:
            self._gather()
            self._write()

    def finish(self, outcome: Outcome, *, reason: str = "", will_retry: bool = False) -> None:
        with self._lock:
            self._gather(final=True)
            self._queued += [dict(e) if isinstance(e, dict) else e for e in outcome.events]
            payload: dict[str, Any] = {"status": _status(outcome, reason),
                                       "duration_ms": int((time.monotonic() - self._started_mono) * 1000),
                                       "attempt": self.ctx.attempt}
            if outcome.exit_code is not None:
                payload["exit_code"] = outcome.exit_code
            if outcome.http_status is not None:
                payload["http_status"] = outcome.http_status
            if outcome.error:
                payload["error"] = outcome.error[:2000]
            if will_retry:
                payload["will_retry"] = True
            _, refused = prepare_batch([e if isinstance(e, dict) else {} for e in self._queued], prices=self.prices,
                                       max_event_bytes=self.limits.max_event_bytes, now_ms=now_ms())
            if self.rejected + len(refused):
                payload["rejected_events"] = self.rejected + len(refused)
            if self.file is not None and self.file.invalid:
                payload["invalid_trace_lines"] = self.file.invalid
            self._queued.append({"type": "session_end", "timestamp": now_ms(), "payload": payload})
            for attempt in range(FINAL_FLUSH_TRIES):
                if self._write():
                    break
                if attempt + 1 < FINAL_FLUSH_TRIES:
                    time.sleep(FINAL_RETRY_S)
            else:
                logger.warning("trace events of a finished run were not stored",
                               extra={"task_id": self.task.id, "events": len(self._queued)})
            if self.rejected:
                logger.warning("a run reported invalid trace events", extra={"task_id": self.task.id,
                                                                               "rejected": self.rejected})
            if self.file is not None:
                self.file.remove()

    def _gather(self, *, final: bool = False) -> None:
        events = self.ctx.events
        if len(events) > self._taken:
            new = events[self._taken:]
            self._queued += new
            self._taken += len(new)
        if self.file is not None:
            self._queued += self.file.read_new(final=final)

    def _write(self) -> bool:
        """Send the queued events, a batch at a time; True when nothing is left queued."""
        if self._queued and not self.created:
            self.start()
            if not self.created:
                return False
        while self._queued:
            if not self._send_batch():
                return False
        return True

    def _send_batch(self) -> bool:
        batch = []
        for i, raw in enumerate(self._queued[: self.limits.max_batch]):
            if not isinstance(raw, dict):
                batch.append(raw)  # refused by prepare_batch, and counted
                continue
            event = dict(raw)
            event.pop("seq", None)  # the store numbers a task's events in the order they were reported
            event["idempotency_key"] = f"{self.run_key}.{self._sent + i}"
            batch.append(event)
        ready, rejected = prepare_batch(batch, prices=self.prices, max_event_bytes=self.limits.max_event_bytes,
                                        now_ms=now_ms())
        try:
            if ready:
                self.runner.run(traces.append(trace_id=self.task.id, project=self.task.project, now_ms=now_ms(),
                                              events=ready))
        except StoreUnavailable:
            return False
        self.rejected += len(rejected)
        self._sent += len(batch)
        del self._queued[: len(batch)]
        return True


def _status(outcome: Outcome, reason: str) -> str:
    if reason == "cancelled" or outcome.status == "aborted":
        return "cancelled"
    return _STATUS_OF.get(outcome.status, "failed")
