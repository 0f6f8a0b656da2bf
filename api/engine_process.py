"""The engine process: ``serve`` runs the engine's own work (the ``ty.engine`` consumers that match webhook events,
dispatch their tasks, follow them and write results back; the stuck-event sweep; the cron scheduler) in a child
process, so that work and the API never wait on one interpreter lock: each gets a core.

The child is started with ``spawn`` and rebuilds the rules from the settings it is given. It stops on SIGTERM or
SIGINT (finishing its running jobs), and by itself when ``serve`` is gone (a SIGKILLed parent), so it never
outlives the service. Everything it does is in Redis, so a job cut short is redelivered.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from typing import Any

from config import defaults
from config.settings import Settings, SourceSpec
from engine.connect import sync_client
from engine.errors import TaskyardError
from engine.event_jobs import EventJobs, JobOptions
from engine.github_api import GitHubClient
from engine.rules import RuleBook
from engine.schedules import Schedule, Scheduler, schedules_of
from engine.store import SyncRunner, ThreadLocalRunner
from workers.engine_queue import EngineQueue
from workers.logs import setup_logging

__all__ = ["EngineProcess", "build_rules", "engine_queue"]

logger = logging.getLogger("taskyard")

START_TIMEOUT_S = 60.0  # seconds the engine process may take to start (imports, rules, Redis)
STOP_TIMEOUT_S = 15.0  # seconds it gets to finish running jobs when serve stops, before it is killed
PARENT_CHECK_S = 1.0  # seconds between checks that serve is still there


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
    return EngineQueue(url, jobs, heartbeat_timeout_ms=int(max(60.0, settings.offline_after_s) * 1000))


class EngineProcess:
    def __init__(self, settings: Settings, url: str, default_file: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready = context.Event()
        self.process = context.Process(target=_main, name="taskyard-engine",
                                       args=(settings, url, default_file, os.getpid(), self._ready))

    def start(self) -> None:
        """Start it and wait until its consumers run; TaskyardError when it cannot start."""
        self.process.start()
        waited = 0.0
        while not self._ready.wait(0.1):
            waited += 0.1
            if not self.process.is_alive() or waited > START_TIMEOUT_S:
                self.stop()
                raise TaskyardError("the engine process did not start (its error is in the log above)")

    def stop(self) -> None:
        if self.process.pid is None:
            return
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            logger.warning("engine process did not stop in time: killed")
            self.process.kill()
            self.process.join()


def _main(settings: Settings, url: str, default_file: str, parent: int, ready: Any) -> None:
    setup_logging(settings.log_level)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    rules, schedules = build_rules(settings, default_file)
    runner = SyncRunner(sync_client(url))
    queue = engine_queue(settings, rules, url)
    scheduler = Scheduler(runner, schedules)
    try:
        queue.start()
        scheduler.start()
        ready.set()
        while not stopping.wait(PARENT_CHECK_S):
            if os.getppid() != parent:
                logger.warning("serve is gone: the engine process stops")
                break
    finally:
        scheduler.stop()
        queue.stop()
        runner.client.close()
