"""The sweep for events whose engine job was lost, and the hook for a job that failed for good.

Open events (``received`` or ``dispatched``) sit in ``ty:events:open`` by when they were last looked at. One
``serve`` engine a minute looks at those untouched for ``STUCK_AFTER_MS``:

- still ``received``: its ``process_event`` job died with its process before Dramatiq's maintenance noticed: it
  is queued again, and after ``MAX_SWEEPS`` such sweeps the event fails with a reason to act on. Not while the
  engine queue is backlogged: then old events are waiting for their jobs, not lost.
- ``dispatched``: followed (its ``task_finished`` job may have been lost) and, if still running, looked at again
  later, its free concurrency keys handed to their waiters.
"""

from __future__ import annotations

from dataclasses import dataclass

from config import defaults
from engine import events, keys
from engine.clock import now_ms
from engine.event_jobs import EventJobs
from engine.store import Op

__all__ = ["MAX_SWEEPS", "STUCK_AFTER_MS", "SWEEP_MAX_BACKLOG", "EventSweep"]

STUCK_AFTER_MS = 300_000  # milliseconds an event may stay open untouched before the sweep looks at it
MAX_SWEEPS = 3  # times the sweep queues an event again before failing it
SWEEP_BATCH = 100  # events looked at per sweep
SWEEP_MAX_BACKLOG = 1000  # engine jobs queued above which the sweep waits (old events are then just queued)


@dataclass
class EventSweep:
    jobs: EventJobs

    def stuck(self, now: int) -> list[str]:
        """One sweep; answers the ``received`` events whose processing the caller should queue again."""
        runner = self.jobs.runner
        if runner.run(Op(int, command=("LLEN", keys.key("dq_engine")))) > SWEEP_MAX_BACKLOG:
            return []
        ids = runner.run(Op(list, command=("ZRANGEBYSCORE", keys.key("ev_open"), "-inf", now - STUCK_AFTER_MS,
                                           "LIMIT", 0, SWEEP_BATCH)))
        again = []
        for event_id in ids:
            state = runner.run(Op(lambda raw: raw, command=("HGET", keys.key("event", id=event_id), "state")))
            if state == "dispatched":
                _, state = runner.run(events.update(event_id=event_id, now_ms=now, follow=True))
                if state == "dispatched":  # tasks still running, or dispatches waiting: look again later
                    runner.run(Op(int, command=("ZADD", keys.key("ev_open"), now, event_id)))
                    self.jobs.poke_waiting(event_id)
                continue
            if state != "received":  # gone, or settled without the index noticing
                runner.run(Op(int, command=("ZREM", keys.key("ev_open"), event_id)))
                continue
            sweeps = runner.run(Op(int, command=("HINCRBY", keys.key("event", id=event_id), "sweeps", 1)))
            if sweeps > MAX_SWEEPS:
                reason = f"processing failed {MAX_SWEEPS} times; the serve logs say why"
                runner.run(events.update(event_id=event_id, now_ms=now, state="failed", expect=("received",),
                                         detail=reason, fields={"error": reason}))
                continue
            runner.run(Op(int, command=("ZADD", keys.key("ev_open"), now, event_id)))
            again.append(event_id)
        return again

    def give_up(self, job: str, subject: str, error: BaseException) -> None:
        """A job failed its last retry: an event still waiting on it fails now, with the reason."""
        if job != "process_event":
            return
        reason = f"processing failed: {type(error).__name__}: {error}"[:defaults.MAX_EVENT_ERROR_CHARS]
        applied, _ = self.jobs.runner.run(events.update(event_id=subject, now_ms=now_ms(), state="failed",
                                                        expect=("received",), detail=reason, fields={"error": reason}))
        if applied:  # outcomes of its queued dispatches have nothing left to merge into
            self.jobs.runner.run(Op(int, command=("DEL", keys.key("event_deferred", id=subject))))
