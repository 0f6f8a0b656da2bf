"""The ``handler`` backend: a Python function ``module:function``, sync or async, given a TaskContext.

It returns the result (a string, or anything JSON-serialisable); raising fails the task with the exception.
A sync handler runs in its own thread so a timeout can be enforced: past the timeout the task fails and the
thread is abandoned (Python cannot kill a thread; write handlers that return).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from config.settings import WorkerSpec
from engine.errors import BackendError
from workers.backends.base import Outcome, RunHandle, TaskContext

__all__ = ["HandlerBackend", "load_handler"]

POLL_S = 0.05  # seconds between checks for cancel/stop while a handler runs


def load_handler(path: str) -> Callable[..., Any]:
    """Import ``module:function``; BackendError says what is missing."""
    module_name, _, func_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"cannot import handler module {module_name!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise BackendError(f"handler {path!r}: {module_name} has no function {func_name!r}")
    return func


class _ElasticPool:
    """Threads for handler calls: reuse an idle one, or start one. A call that overruns its timeout keeps its
    thread (Python cannot kill it) without taking capacity from later calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put(job)
        if spawn:
            threading.Thread(target=self._serve, name=f"handler-{self.name}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._jobs.get()()
            with self._lock:
                self._idle += 1


class HandlerBackend:
    def __init__(self, spec: WorkerSpec) -> None:
        assert spec.handler
        self.func = load_handler(spec.handler)
        self.is_async = inspect.iscoroutinefunction(self.func)
        self.pool = _ElasticPool(spec.name)

    def run(self, ctx: TaskContext, handle: RunHandle) -> Outcome:
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                if self.is_async:
                    box["value"] = asyncio.run(self.func(ctx))
                else:
                    box["value"] = self.func(ctx)
            except BaseException as exc:  # noqa: BLE001 - any handler failure fails the task
                box["error"] = exc
            finally:
                done.set()

        self.pool.submit(call)
        deadline = time.monotonic() + ctx.timeout
        while not done.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
            if handle.stop.is_set():
                return Outcome("aborted", error=handle.reason or "aborted")
            if time.monotonic() >= deadline:
                return Outcome("timeout", error=f"timeout after {ctx.timeout:g}s")
        if "error" in box:
            exc = box["error"]
            return Outcome("failed", error=f"{type(exc).__name__}: {exc}")
        value = box.get("value")
        if value is None:
            return Outcome("completed", output="")
        return Outcome("completed", output=value if isinstance(value, str) else json.dumps(value, default=str))
