"""The worker runtime: one process serving one or more worker definitions.

For each definition it runs a Dramatiq worker on the queue ``ty.w.<name>`` with ``concurrency`` threads. Each
message is a task id: the runtime claims the task (skipping it if it finished or runs elsewhere), runs the
backend with the task's timeout, and records the outcome. Around that it heartbeats, watches for cancels, and
runs the reaper. ``stop()`` drains: running tasks get ``drain_timeout`` to finish, then are aborted and requeued.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dramatiq

from config import defaults
from config.settings import TraceSettings, WorkerSpec
from engine import keys, registry, tasks
from engine.clock import now_ms
from engine.connect import sync_client
from engine.errors import StoreUnavailable
from engine.ids import new_id
from engine.models import Task
from engine.pricing import PriceBook
from engine.reaper import Reaper, ReaperOptions
from engine.store import Op, ThreadLocalRunner
from workers.backends import Backend, Outcome, RunHandle, TaskContext, backend_for
from workers.backends.endpoint import check_health
from workers.broker import TaskyardBroker
from workers.liveness import CancelWatcher, Loop, ReaperLoop
from workers.tracing import FLUSH_INTERVAL_S, RunTrace

__all__ = ["RuntimeOptions", "WorkerRuntime"]

logger = logging.getLogger(__name__)

DRAMATIQ_WORKER_TIMEOUT_MS = 100  # milliseconds Dramatiq's threads wait on their in-process queues
RECORD_RETRY_S = 1.0  # seconds between attempts to record an outcome while Redis is unreachable
LOOP_JOIN_S = 2.0  # seconds to wait for each background loop to end when stopping
ORPHAN_GRACE_HEARTBEATS = 2  # heartbeats a held-but-unknown task waits before it is given back


@dataclass(frozen=True)
class RuntimeOptions:
    redis_url: str
    heartbeat_interval_s: float
    offline_after_s: float
    drain_timeout_s: float
    poll_timeout_s: float
    max_lost: int
    source: str = "process"  # who defines the workers: config | process
    reaper: ReaperOptions | None = None  # run the reaper in this process with these options
    traces: TraceSettings = field(default_factory=TraceSettings)
    prices: PriceBook = field(default_factory=PriceBook.build)  # prices LLM calls reported without a cost


class WorkerRuntime:
    def __init__(self, specs: list[WorkerSpec], options: RuntimeOptions, *,
                 base_env: Mapping[str, str] | None = None) -> None:
        if not specs:
            raise ValueError("a worker runtime needs at least one worker definition")
        self.specs = specs
        self.options = options
        self.proc_id = new_id()
        self.base_env = dict(base_env if base_env is not None else os.environ)
        self.runner = ThreadLocalRunner(lambda: sync_client(options.redis_url, single_connection=True))
        self.backends: dict[str, Backend] = {s.name: backend_for(s, base_env=self.base_env) for s in specs}
        self.running: dict[str, RunHandle] = {}
        self._early_cancels: set[str] = set()  # cancels that arrived before their run registered
        self._running_lock = threading.Lock()
        self.stopping = threading.Event()
        self.health_errors: dict[str, str] = {}
        self._orphans: dict[str, int] = {}  # task id -> when this process first saw it held but unknown (ms)
        self._dramatiq: list[tuple[dramatiq.Worker, TaskyardBroker]] = []
        self._loops: list[Loop | CancelWatcher] = []
        self._traces: dict[str, RunTrace] = {}  # task id -> the trace of its run in progress
        self._trace_dir = Path(tempfile.mkdtemp(prefix="taskyard-traces-"))  # command workers' trace files

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        for spec in self.specs:
            self.runner.run(registry.register(spec, source=self.options.source))
        self._check_health()
        self._heartbeat()
        self._loops.append(Loop("heartbeat", self.options.heartbeat_interval_s, self._heartbeat))
        self._loops.append(Loop("traces", FLUSH_INTERVAL_S, self._flush_traces))
        if any(s.endpoint for s in self.specs):
            # Slow health probes must never delay a heartbeat (a late heartbeat gets a live process reaped).
            self._loops.append(Loop("health", self.options.heartbeat_interval_s, self._check_health))
        self._loops.append(CancelWatcher(sync_client(self.options.redis_url, blocking_reads=True),
                                         self.proc_id, self._on_cancel))
        if self.options.reaper is not None:
            self._loops.append(ReaperLoop(Reaper(self.runner, self.options.reaper, owner=self.proc_id)))
        for loop in self._loops:
            loop.start()
        for spec in self.specs:
            self._dramatiq.append(self._start_consumer(spec))
        logger.info("worker process started", extra={"proc": self.proc_id,
                                                     "workers": [s.name for s in self.specs]})

    def _start_consumer(self, spec: WorkerSpec) -> tuple[dramatiq.Worker, TaskyardBroker]:
        broker = TaskyardBroker(url=self.options.redis_url, runner=self.runner, proc_id=self.proc_id,
                                max_lost=self.options.max_lost,
                                heartbeat_timeout_ms=int(self.options.offline_after_s * 1000),
                                poll_timeout_s=self.options.poll_timeout_s)
        backend = self.backends[spec.name]

        def run_task(task_id: str) -> None:
            claim, ack = broker.take_claim()
            if self._run(spec, backend, task_id, claim, ack) and ack is not None:
                broker.acked_by_finish(ack)

        dramatiq.Actor(run_task, broker=broker, actor_name=keys.actor_name(spec.name),
                       queue_name=keys.queue_name(spec.name), priority=0, options={})
        worker = dramatiq.Worker(broker, queues={keys.queue_name(spec.name)}, worker_threads=spec.concurrency,
                                 worker_timeout=DRAMATIQ_WORKER_TIMEOUT_MS)
        worker.queue_prefetch = spec.concurrency  # hold no more messages than can run: nothing strands here
        worker.start()
        return worker, broker

    def stop(self) -> None:
        """Drain: stop taking tasks, give running ones ``drain_timeout`` seconds, requeue the rest, deregister."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        logger.info("worker process stopping", extra={"proc": self.proc_id, "running": len(self.running)})
        for worker, _ in self._dramatiq:
            for consumer in worker.consumers.values():
                # Fetch nothing more (stop, not pause: a paused Dramatiq consumer sleeps 3 s to "restart").
                # Running tasks still ack through it; Worker.stop below requeues anything fetched but not run.
                consumer.stop()
        deadline = time.monotonic() + self.options.drain_timeout_s
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        for handle in list(self.running.values()):
            handle.abort("shutdown")
        for worker, broker in self._dramatiq:
            worker.stop(timeout=int(max(1.0, self.options.drain_timeout_s) * 1000) + 5000)
            broker.close()
            broker.client.connection_pool.disconnect()  # Dramatiq leaves its pool open
        for loop in self._loops:
            loop.stop()
        for loop in self._loops:
            loop.join(timeout=LOOP_JOIN_S)
        try:
            # Anything still marked ours (a handler thread that would not stop) goes back on its queue.
            self.runner.run(tasks.release_process(proc_id=self.proc_id, workers=[s.name for s in self.specs],
                                                  now_ms=now_ms()))
            self.runner.run(registry.deregister(proc_id=self.proc_id, workers=[s.name for s in self.specs]))
        except StoreUnavailable:
            logger.warning("could not deregister; the reaper will requeue this process's tasks")
        self.runner.close()
        shutil.rmtree(self._trace_dir, ignore_errors=True)
        for loop in self._loops:
            if isinstance(loop, CancelWatcher):
                loop.client.close()
        logger.info("worker process stopped", extra={"proc": self.proc_id})

    # -- loops ----------------------------------------------------------------------------------------------
    def _check_health(self) -> None:
        for spec in self.specs:
            if spec.endpoint:
                self.health_errors[spec.name] = check_health(spec)

    def _heartbeat(self) -> None:
        self.runner.run(registry.heartbeat(
            proc_id=self.proc_id, specs=self.specs, now_ms=now_ms(),
            ttl_ms=int(self.options.offline_after_s * 1000), host=socket.gethostname(), pid=os.getpid(),
            errors=dict(self.health_errors)))
        self._audit_claims()

    def _audit_claims(self) -> None:
        """Give back tasks Redis says this process holds but it does not know of (a claim whose reply was lost
        on the wire), once they have stayed unknown for ORPHAN_GRACE_HEARTBEATS heartbeats."""
        held = self.runner.run(Op(list, command=("SMEMBERS", keys.key("proc_tasks", proc=self.proc_id))))
        known = set(self.running)
        for _, broker in self._dramatiq:
            known.update(c.task.id for c in list(broker.claims.values()) if c.task is not None)
        now = now_ms()
        grace_ms = ORPHAN_GRACE_HEARTBEATS * self.options.heartbeat_interval_s * 1000
        unknown = {task_id for task_id in held if task_id not in known}
        self._orphans = {t: self._orphans.get(t, now) for t in unknown}
        for task_id, since in list(self._orphans.items()):
            if now - since >= grace_ms:
                applied, _ = self.runner.run(tasks.finish(task_id=task_id, proc_id=self.proc_id, now_ms=now,
                                                          outcome="requeue"))
                logger.warning("gave back an orphaned task", extra={"task_id": task_id, "applied": applied})
                del self._orphans[task_id]

    def _flush_traces(self) -> None:
        for trace in list(self._traces.values()):
            try:
                trace.flush()
            except StoreUnavailable:
                raise
            except Exception:  # one run's bad events must not stop the others' traces
                logger.exception("could not flush a run's trace", extra={"task_id": trace.task.id})

    def _on_cancel(self, task_id: str) -> None:
        with self._running_lock:
            handle = self.running.get(task_id)
            if handle is None:
                # Claimed at fetch but not started yet: the run aborts as soon as it registers.
                self._early_cancels.add(task_id)
                return
        logger.info("cancelling task", extra={"task_id": task_id})
        handle.abort("cancelled")

    # -- one task -------------------------------------------------------------------------------------------
    def _run(self, spec: WorkerSpec, backend: Backend, task_id: str, claim: tasks.Claim | None,
             ack: tasks.Ack | None) -> bool:
        """Run one claimed task; answers whether its finish call also acknowledged the message."""
        if claim is None:  # not fetched by our consumer (cannot happen with TaskyardBroker): claim it now
            claim = self._store(tasks.claim(task_id=task_id, proc_id=self.proc_id, now_ms=now_ms(),
                                            max_lost=self.options.max_lost))
            ack = None
        if claim.task is None:
            logger.debug("message skipped", extra={"task_id": task_id, "reason": claim.reason})
            return False
        task = claim.task
        handle = RunHandle(task_id)
        with self._running_lock:
            self.running[task_id] = handle
            if task_id in self._early_cancels:  # cancelled between its claim and now
                self._early_cancels.discard(task_id)
                handle.abort("cancelled")
            elif self.stopping.is_set():  # fetched as the process began to stop: give it back
                handle.abort("shutdown")
        try:
            ctx = TaskContext(id=task.id, prompt=task.prompt, context=task.context, worker=spec.name,
                              attempt=task.attempts, timeout=task.timeout or spec.timeout, cwd=task.cwd)
            trace = self._start_trace(spec, task, ctx)
            try:
                # Aborted before it began (cancelled, or the process is stopping): do not start it at all.
                outcome = (Outcome("aborted", error=handle.reason) if handle.stop.is_set()
                           else backend.run(ctx, handle))
            except Exception as exc:  # a backend bug must not lose the task
                logger.exception("backend raised", extra={"task_id": task_id})
                outcome = Outcome("failed", error=f"{type(exc).__name__}: {exc}")
            self._end_trace(trace, spec, task, handle, outcome)
            try:
                return self._record(spec, task, handle, outcome, ack)
            except Exception as exc:  # never leave a task dispatched because its outcome could not be stored
                logger.exception("could not record outcome", extra={"task_id": task_id})
                fallback = Outcome("failed", error=f"could not record outcome: {type(exc).__name__}",
                                   retryable=False)
                return self._record(spec, task, RunHandle(task_id), fallback, ack)
        finally:
            with self._running_lock:
                self.running.pop(task_id, None)

    def _start_trace(self, spec: WorkerSpec, task: Task, ctx: TaskContext) -> RunTrace:
        trace_file = None
        if spec.kind == "command":
            try:
                self._trace_dir.mkdir(parents=True, exist_ok=True)  # a /tmp cleaner may have removed it
                trace_file = self._trace_dir / f"{task.id}.{task.attempts}.jsonl"
                trace_file.touch()
                ctx.trace_file = str(trace_file)
            except OSError:  # tracing never fails a task: run it without a trace file
                logger.exception("cannot make the run's trace file", extra={"task_id": task.id})
                trace_file = None
        trace = RunTrace(self.runner, task, ctx, proc_id=self.proc_id, prices=self.options.prices,
                         limits=self.options.traces, trace_file=trace_file)
        trace.start()
        self._traces[task.id] = trace
        return trace

    def _end_trace(self, trace: RunTrace, spec: WorkerSpec, task: Task, handle: RunHandle,
                   outcome: Outcome) -> None:
        """The run's last events and ``session_end``, written before the outcome so a finished task's trace
        is complete. Tracing never fails a task."""
        self._traces.pop(task.id, None)
        try:
            if handle.reason == "shutdown":
                outcome = Outcome("failed", error="worker stopping: the task goes back on its queue",
                                  events=outcome.events)  # killed by us: its exit code says nothing
                trace.finish(outcome, will_retry=True)
                return
            will_retry = (handle.reason != "cancelled" and outcome.status != "completed" and outcome.retryable
                          and task.attempts < (task.max_retries or spec.max_retries))
            trace.finish(outcome, reason=handle.reason, will_retry=will_retry)
        except Exception:
            logger.exception("could not write the run's trace", extra={"task_id": task.id})

    def _record(self, spec: WorkerSpec, task: Task, handle: RunHandle, outcome: Outcome,
                ack: tasks.Ack | None) -> bool:
        now = now_ms()
        fields = {"exit_code": str(outcome.exit_code)} if outcome.exit_code is not None else {}
        finish = functools.partial(tasks.finish, task_id=task.id, proc_id=self.proc_id, now_ms=now, fields=fields,
                                   ack=ack)
        max_attempts = task.max_retries or spec.max_retries
        if handle.reason == "cancelled":
            op = finish(outcome="cancelled", text="cancelled")
        elif handle.reason == "shutdown":
            op = finish(outcome="requeue", text="")
        elif outcome.status == "completed":
            op = finish(outcome="completed", text=outcome.output)
        elif outcome.retryable and task.attempts < max_attempts:
            delay = min(defaults.RETRY_BACKOFF_BASE_S * 2 ** (task.attempts - 1), defaults.RETRY_BACKOFF_MAX_S)
            op = finish(outcome="retry", text=outcome.error, retry_at_ms=now + int(delay * 1000))
        else:
            op = finish(outcome="failed", text=outcome.error or outcome.status)
        applied, state = self._store(op, persist=True)
        logger.info("task finished", extra={"task_id": task.id, "worker": spec.name, "state": state,
                                            "applied": applied, "status": outcome.status})
        return True

    def _store(self, op, *, persist: bool = False):  # type: ignore[no-untyped-def]
        """Run an op; with ``persist``, keep trying through a Redis outage (an outcome must not be lost)."""
        while True:
            try:
                return self.runner.run(op)
            except StoreUnavailable:
                if not persist or self.stopping.is_set():
                    raise
                logger.warning("store unavailable; will retry recording the outcome")
                time.sleep(RECORD_RETRY_S)
