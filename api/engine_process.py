"""The engine process: ``serve`` runs the engine's own work (the ``ty.engine`` consumers that match webhook events,
dispatch their tasks, follow them and write results back; the stuck-event sweep; the cron scheduler) in a child
process, so that work and the API never wait on one interpreter lock: each gets a core.

The child is started with ``spawn`` and rebuilds the rules from the settings it is given; it reports ready over a
pipe. It stops on SIGTERM (finishing its running jobs; serve sends it, Ctrl-C included), and by itself within a
second when ``serve`` is gone (a SIGKILLed parent, at any point of its start), so it never outlives the service.
``serve`` starts it again if it dies. Everything it does is in Redis, so a job cut short is redelivered.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

from config import defaults
from config.settings import Settings, SourceSpec
from engine.analysis import Analyzer
from engine.artifacts import LocalDiskStore
from engine.auto_heal import AutoHeal
from engine.connect import sync_client
from engine.errors import TaskyardError
from engine.event_jobs import EventJobs, JobOptions
from engine.fix_agent import FixAgent
from engine.github_api import GitHubClient
from engine.loop_options import LoopOptions
from engine.playbooks import load_playbooks
from engine.replay import Replay
from engine.retention import RetentionPolicy, RetentionSweep
from engine.rules import RuleBook
from engine.schedules import Schedule, Scheduler, schedules_of
from engine.store import SyncRunner, ThreadLocalRunner
from engine.webhook_delivery import WebhookDelivery
from workers.engine_queue import EngineQueue
from workers.logs import setup_logging

__all__ = ["EngineProcess", "build_rules", "engine_queue"]

logger = logging.getLogger("taskyard")

START_TIMEOUT_S = 60.0  # seconds the engine process may take to start (imports, rules, Redis)
STOP_TIMEOUT_S = 15.0  # seconds it gets to finish running jobs when serve stops, before it is killed
PARENT_CHECK_S = 1.0  # seconds between checks that serve is still there
SUPERVISE_POLL_S = 1.0  # seconds between serve's checks that the engine process is alive
RESTART_BACKOFF_MIN_S = 1.0  # seconds before starting a dead engine process again; doubles while it fails
RESTART_BACKOFF_MAX_S = 60.0  # seconds, cap on that backoff


def build_rules(settings: Settings, default_file: str) -> tuple[RuleBook, list[Schedule]]:
    """The rules of the config with the schedules' rules. Raises ConfigError naming every bad rule."""
    rules = RuleBook.build(settings, origins=settings.worker_files, default_file=default_file)
    schedules = schedules_of(settings, default_file=default_file)
    return RuleBook([*rules.rules(), *(s.rule for s in schedules)]), schedules


def engine_queue(settings: Settings, rules: RuleBook, url: str) -> EngineQueue:
    """The engine jobs: event matching, dispatch, following tasks, GitHub write-back."""
    clients: dict[int, GitHubClient] = {}

    def github_client(spec: SourceSpec) -> GitHubClient:
        client = clients.get(id(spec))
        if client is None:
            client = clients[id(spec)] = GitHubClient(spec.api_url or defaults.GITHUB_API_URL, spec.token)
        return client

    jobs = EventJobs(
        runner=ThreadLocalRunner(lambda: sync_client(url, single_connection=True)), rules=rules,
        sources=dict(settings.sources), github_client=github_client,
        options=JobOptions(default_bound=settings.max_queue_depth,
                           offline_after_ms=int(settings.offline_after_s * 1000)))
    analyzer = Analyzer(jobs.runner, settings.detectors)
    options = LoopOptions.from_settings(settings, load_playbooks())
    fixer, replay = FixAgent(jobs.runner, options), Replay(jobs.runner, analyzer, options)
    AutoHeal(jobs.runner, options).attach(analyzer, fixer, replay)
    retention = RetentionSweep(jobs.runner, RetentionPolicy.from_settings(settings.retention),
                               artifacts=LocalDiskStore(settings.data_dir / "artifacts"),
                               known_projects={defaults.DEFAULT_PROJECT, *(k.project for k in settings.api_keys)})
    return EngineQueue(url, jobs, heartbeat_timeout_ms=int(max(60.0, settings.offline_after_s) * 1000),
                       analyzer=analyzer, webhooks=WebhookDelivery(jobs.runner, settings.outbound.allow_hosts),
                       fixer=fixer, replay=replay, retention=retention)


class EngineProcess:
    """The child process and its supervisor: a child that dies (a crash, an OOM kill) is started again after a
    backoff, and logged, so webhooks never pile up unprocessed behind a dead engine."""

    def __init__(self, settings: Settings, url: str, default_file: str, *, scheduler: bool = True) -> None:
        self._args = (settings, url, default_file, scheduler)
        self._context = multiprocessing.get_context("spawn")
        self.process: Any = None
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="engine-supervisor", daemon=True)
        self.restarts = 0

    def start(self) -> None:
        """Start it and wait until its consumers run; TaskyardError when it cannot start."""
        self._spawn()
        self._supervisor.start()

    def _spawn(self) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        self.process = self._context.Process(target=_main, name="taskyard-engine",
                                             args=(*self._args, os.getpid(), sender))
        self.process.start()
        sender.close()  # the child holds the only sending end: a dead child means end-of-file here
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not receiver.poll(0.1):
                if not self.process.is_alive() or time.monotonic() > deadline:
                    self._terminate()
                    raise TaskyardError("the engine process did not start (its error is in the log above)")
            receiver.recv()
        except EOFError:
            self._terminate()
            raise TaskyardError("the engine process did not start (its error is in the log above)") from None
        finally:
            receiver.close()

    def _supervise(self) -> None:
        backoff = RESTART_BACKOFF_MIN_S
        while not self._stopping.is_set():
            self.process.join(SUPERVISE_POLL_S)
            if self._stopping.is_set() or self.process.is_alive():
                continue
            logger.error("engine process died: starting it again",
                         extra={"exitcode": self.process.exitcode, "in_s": backoff})
            if self._stopping.wait(backoff):
                return
            try:
                self._spawn()
                self.restarts += 1
                backoff = RESTART_BACKOFF_MIN_S
            except TaskyardError:
                backoff = min(RESTART_BACKOFF_MAX_S, backoff * 2)

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join(SUPERVISE_POLL_S * 2 + START_TIMEOUT_S)
        self._terminate()

    def _terminate(self) -> None:
        if self.process is None or self.process.pid is None:
            return
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            logger.warning("engine process did not stop in time: killed")
            self.process.kill()
        self.process.join()


def _watch_parent(parent: int, stopping: threading.Event) -> None:
    while not stopping.wait(PARENT_CHECK_S):
        if os.getppid() != parent:
            logger.warning("serve is gone: the engine process stops")
            stopping.set()


def _main(settings: Settings, url: str, default_file: str, with_scheduler: bool, parent: int, ready: Any) -> None:
    setup_logging(settings.log_level)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    # Ctrl-C reaches the whole process group; serve handles it and then stops this process with SIGTERM (were
    # both to act on it, serve's supervisor would see a dead engine and start another).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # First thing: whatever happens below, this process never outlives serve.
    threading.Thread(target=_watch_parent, args=(parent, stopping), name="parent-watch", daemon=True).start()
    rules, schedules = build_rules(settings, default_file)
    runner = SyncRunner(sync_client(url))
    queue = engine_queue(settings, rules, url)
    scheduler = Scheduler(runner, schedules if with_scheduler else [])  # one per serve fires the cron
    try:
        if not stopping.is_set():
            queue.start()
            scheduler.start()
            try:
                ready.send("ready")
            except OSError:  # serve is gone already
                stopping.set()
            ready.close()
        stopping.wait()
    finally:
        scheduler.stop()
        queue.stop()
        runner.client.close()
