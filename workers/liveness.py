"""Background loops of a worker process: heartbeats, cancel signals, and the reaper."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from engine import keys
from engine.errors import StoreUnavailable
from engine.reaper import Reaper

__all__ = ["CancelWatcher", "Loop", "ReaperLoop"]

logger = logging.getLogger(__name__)

REAPER_INTERVAL_S = 1.0  # seconds between reaper passes
CANCEL_WAIT_S = 1.0  # seconds a cancel watcher blocks on its list before checking for shutdown


class Loop(threading.Thread):
    """Call ``step`` every ``interval`` seconds until stopped; store outages are logged, never fatal."""

    def __init__(self, name: str, interval: float, step: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.step = step
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.step()
            except StoreUnavailable as exc:
                logger.warning("%s: store unavailable", self.name, extra={"error": str(exc)})
            except Exception:
                logger.exception("%s failed", self.name)
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()


class ReaperLoop(Loop):
    def __init__(self, reaper: Reaper) -> None:
        super().__init__("reaper", REAPER_INTERVAL_S, reaper.tick)


class CancelWatcher(threading.Thread):
    """Blocks on this process's cancel list and aborts the named runs."""

    def __init__(self, client: redis.Redis, proc_id: str, on_cancel: Callable[[str], None]) -> None:
        super().__init__(name="cancel-watcher", daemon=True)
        self.client = client
        self.key = keys.key("proc_cancel", proc=proc_id)
        self.on_cancel = on_cancel
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                item = self.client.blpop([self.key], timeout=CANCEL_WAIT_S)
            except redis.RedisError:
                self.stopped.wait(CANCEL_WAIT_S)
                continue
            if item:
                value = item[1]
                self.on_cancel(value.decode() if isinstance(value, bytes) else value)

    def stop(self) -> None:
        self.stopped.set()
