"""The engine queue ``ty.engine``: Dramatiq actors for the engine's own jobs, consumed by ``taskyard serve``.

Jobs are put on the queue by Lua (``enqueue_job`` in ``_common.lua``), in the same atomic step as the state
change that calls for them: storing a webhook event queues ``process_event``; a task made by an event reaching
a final state queues ``task_finished``; a trace that ends queues ``analyze_trace`` and a running one
``scan_trace`` (a chain, every 5 s while events keep coming); an alert queues ``deliver_webhook`` per
subscriber and a finished task of a project with task alert subscriptions ``task_event``. Beside the consumers
run two loops, each in one serve process at a time under a Redis lock: the stuck-event sweep and the retention
sweep (:mod:`engine.retention`; every minute, and every few seconds while a backlog remains). A job that asks
to run again later (:class:`engine.event_jobs.Retry`) is re-sent with Dramatiq's delay; an unexpected error is
retried by Dramatiq's Retries middleware.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, CurrentMessage, Retries, ShutdownNotifications, TimeLimit
from dramatiq.middleware.time_limit import TimeLimitExceeded

from engine import alerts, keys
from engine.analysis import Analyzer
from engine.clock import now_ms
from engine.event_jobs import EventJobs, Retry
from engine.event_sweep import EventSweep
from engine.fix_agent import FixAgent
from engine.replay import Replay
from engine.retention import SWEEP_BUDGET_S, RetentionSweep, SweepReport
from engine.store import Op
from engine.webhook_delivery import WebhookDelivery
from workers.liveness import Loop

__all__ = ["EngineQueue"]

logger = logging.getLogger(__name__)

ENGINE_THREADS = 8  # engine jobs run at once per serve process
JOB_TIME_LIMIT_MS = 300_000  # milliseconds one engine job may run
JOB_RETRIES = 5  # Dramatiq retries of a job that raised unexpectedly (Redis blip, a bug)
JOB_MIN_BACKOFF_MS = 1000  # milliseconds before the first such retry
JOB_MAX_BACKOFF_MS = 60_000  # milliseconds, cap on that backoff
POLL_MS = 100  # milliseconds an idle engine consumer waits between fetches
MAINTENANCE_CHANCE = 10_000  # per million broker calls: requeue the jobs of a dead serve process
SWEEP_EVERY_S = 60.0  # seconds between sweeps for events whose processing job was lost
SWEEP_JOIN_S = 2.0  # seconds to wait for the sweep thread when stopping
RETENTION_EVERY_S = 60.0  # seconds between retention sweeps (one serve process at a time, under a Redis lock)
RETENTION_PAUSE_S = 2.0  # seconds between sweeps while a backlog remains (a sweep that ran out of its budget)


class EngineQueue:
    def __init__(self, redis_url: str, jobs: EventJobs, *, heartbeat_timeout_ms: int,
                 threads: int = ENGINE_THREADS, analyzer: Analyzer | None = None,
                 webhooks: WebhookDelivery | None = None, fixer: FixAgent | None = None,
                 replay: Replay | None = None, retention: RetentionSweep | None = None) -> None:
        self.jobs = jobs
        self.sweep = EventSweep(jobs)
        self.broker = RedisBroker(
            url=redis_url, namespace=keys.DRAMATIQ_NAMESPACE, heartbeat_timeout=heartbeat_timeout_ms,
            maintenance_chance=MAINTENANCE_CHANCE,
            middleware=[AgeLimit(), TimeLimit(time_limit=JOB_TIME_LIMIT_MS), ShutdownNotifications(), CurrentMessage(),
                        Retries(max_retries=JOB_RETRIES, min_backoff=JOB_MIN_BACKOFF_MS,
                                max_backoff=JOB_MAX_BACKOFF_MS)])
        self.actors: dict[str, dramatiq.Actor] = {}
        self._declare("process_event", jobs.process)
        self._declare("task_finished", jobs.task_finished)
        if analyzer is not None:  # detectors: a trace that ended, and live scans of a running one
            self._declare("analyze_trace", analyzer.analyze_job)
            self._declare("scan_trace", analyzer.scan_job)
        self.webhooks = webhooks
        if webhooks is not None:  # alert webhooks: one delivery attempt; a finished task's task.* event
            self._declare("deliver_webhook", webhooks.deliver)
            self._declare("task_event", lambda task_id, _attempt: alerts.task_event(jobs.runner, task_id))
        if fixer is not None:  # closing the loop: the fix agent, and replay before and after a fix
            self._declare("fix_agent", fixer.job, give_up=fixer.give_up)
        if replay is not None:
            self._declare("regression_replay", replay.job, give_up=replay.give_up)
        self.worker = dramatiq.Worker(self.broker, queues={keys.ENGINE_QUEUE}, worker_threads=threads,
                                      worker_timeout=POLL_MS)
        self.sweeper = Loop("event-sweep", SWEEP_EVERY_S, self._sweep)
        self.retention = retention
        self.retention_pause_s = RETENTION_PAUSE_S
        self.retainer = (Loop("retention", RETENTION_EVERY_S, self._retain)
                         if retention is not None and retention.enabled else None)

    def _declare(self, name: str, job: Any, *, give_up: Any = None) -> None:
        """An actor for ``job(subject, attempt)``; ``give_up(subject, error)`` runs when its last retry failed."""
        def run(subject: str, attempt: int | str = 1) -> None:
            try:
                outcome = job(subject, int(attempt))
            except (Exception, TimeLimitExceeded) as exc:  # the time limit's exception is a BaseException
                message = CurrentMessage.get_current_message()
                if message is not None and message.options.get("retries", 0) >= JOB_RETRIES:
                    logger.error("engine job failed for good", exc_info=exc, extra={"job": name, "subject": subject})
                    try:
                        if give_up is not None:
                            give_up(subject, exc)
                        self.sweep.give_up(name, subject, exc)
                    except Exception:  # noqa: BLE001 - Redis may be what failed; the sweep is the backstop
                        logger.warning("could not record the failure", extra={"job": name, "subject": subject})
                raise
            if isinstance(outcome, Retry):
                logger.info("engine job will run again", extra={"job": name, "subject": subject,
                                                                "attempt": outcome.attempt,
                                                                "delay_s": outcome.delay_s})
                self.actors[name].send_with_options(args=(subject, outcome.attempt),
                                                    delay=int(outcome.delay_s * 1000))

        self.actors[name] = dramatiq.Actor(run, broker=self.broker, actor_name=name,
                                           queue_name=keys.ENGINE_QUEUE, priority=0, options={})

    def start(self) -> None:
        # Dramatiq's CLI tells middleware the process booted; an embedded Worker does not, and TimeLimit only
        # starts watching deadlines then (without this, JOB_TIME_LIMIT_MS would never apply).
        self.broker.emit_after("process_boot")
        self.worker.start()
        self.sweeper.start()
        if self.retainer is not None:
            self.retainer.start()

    def _sweep(self) -> None:
        """Queue again the events whose processing job was lost (one serve process at a time)."""
        lock = keys.key("lock", name="event-sweep")
        if not self.jobs.runner.run(Op(bool, command=("SET", lock, "1", "NX", "PX", int(SWEEP_EVERY_S * 1000)))):
            return
        for event_id in self.sweep.stuck(now_ms()):
            logger.warning("event was not processed: queued again", extra={"event": event_id})
            self.actors["process_event"].send(event_id)

    def _retain(self) -> list[SweepReport]:
        """Delete expired tasks, events, traces and usage records (one serve process at a time), and answer the
        sweeps it ran. A sweep that ran out of its time budget with work left is followed by another after
        ``retention_pause_s`` (not a whole minute later: a steady load that expires more per minute than one sweep
        deletes would otherwise grow a backlog without bound), for as long as sweeps keep deleting and the loop is
        not stopped. The lock is renewed before each further sweep; each deletion is atomic, so a sweep that
        overlaps another process's (after a renewal came too late) deletes nothing twice."""
        lock = keys.key("lock", name="retention")
        lock_ms = int(RETENTION_EVERY_S * 1000)
        if self.retention is None or not self.jobs.runner.run(
                Op(bool, command=("SET", lock, "1", "NX", "PX", lock_ms))):
            return []
        reports = [self.retention.sweep()]
        stopped = self.retainer.stopped if self.retainer is not None else threading.Event()
        while not reports[-1].finished and reports[-1].total > 0:
            if stopped.wait(self.retention_pause_s):
                break
            self.jobs.runner.run(Op(bool, command=("SET", lock, "1", "PX", lock_ms)))
            reports.append(self.retention.sweep())
        if len(reports) > 1:
            logger.info("retention caught up" if reports[-1].finished else "retention backlog left for later",
                        extra={"sweeps": len(reports), "deleted": sum(r.total for r in reports),
                               "finished": reports[-1].finished})
        return reports

    def stop(self, timeout_ms: int = 10_000) -> None:
        self.sweeper.stop()
        self.sweeper.join(timeout=SWEEP_JOIN_S)
        if self.retainer is not None:
            self.retainer.stop()
            self.retainer.join(timeout=SWEEP_JOIN_S + SWEEP_BUDGET_S)
        self.worker.stop(timeout=timeout_ms)
        self.broker.close()
        self.broker.client.connection_pool.disconnect()
        if self.webhooks is not None:
            self.webhooks.close()
        close = getattr(self.jobs.runner, "close", None)
        if close is not None:  # the jobs' own connections (an embedded Redis stops only when none is left)
            close()
