"""The drain's signal handler writes nothing itself: a SIGTERM that lands while the main thread is writing a log
line to stderr (the ready line a script waits for, then signals) must still start the drain and stop serve."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn

from api.drain import DrainGate, DrainingServer

DRAIN_WAIT_S = 1.5  # seconds: the drain without workers waits NO_WORKERS_GRACE_S (1 s), then asks uvicorn to exit


class BufferedStderr:
    """Like stderr's io.BufferedWriter: a write entered during another write raises RuntimeError (reentrant)."""

    def __init__(self, on_write: Callable[[str], None]) -> None:
        self.busy = False
        self.on_write = on_write

    def write(self, text: str) -> int:
        if self.busy:
            raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")
        self.busy = True
        try:
            self.on_write(text)  # CPython runs a signal handler here, in the middle of the write
        finally:
            self.busy = False
        return len(text)

    def flush(self) -> None:
        pass


def test_a_sigterm_during_a_log_write_still_drains_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never called
        pass

    gate = DrainGate(app)
    server = DrainingServer(uvicorn.Config(gate), gate, None)
    server.started = True
    fired: list[int] = []

    def on_write(text: str) -> None:
        if "taskyard serving" in text and not fired:
            fired.append(1)
            server.handle_exit(signal.SIGTERM, None)  # what uvicorn's signal handler calls

    stream = BufferedStderr(on_write)
    monkeypatch.setattr("sys.stderr", stream)  # logging's handleError writes to sys.stderr too
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        logging.getLogger("taskyard").info("taskyard serving")
        deadline = time.monotonic() + DRAIN_WAIT_S * 4
        while not server.should_exit and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert fired and gate.draining.is_set()
    assert server.should_exit, "the drain thread never started: serve would answer 503 for ever"
