"""A paced submit load for the reliability drills (scripts/drill_api_crash.py, drill_worker_crash.py, drill_drain.py).

Request ``i`` (0 <= i < n) is sent once, at ``start + i / rate``, by one of several client threads, so requests
keep arriving at the same rate whatever the server does (a dead server costs fast connection errors, not a
stalled load). A drill may :meth:`~PacedLoad.hold` the load (say while it restarts a server) and
:meth:`~PacedLoad.release` it; the schedule moves on by the time held. Every attempt is recorded: when it was
sent, how long it took, and the status and body of the answer or the class of the connection error, so a drill
can map each answer to what Redis stored.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Attempt", "PacedLoad", "latency_by_phase", "phase_of"]

REQUEST_TIMEOUT_S = 10.0  # seconds one submit may take before it counts as a connection failure
HOLD_CHECK_S = 0.05  # seconds a client thread waiting for its due time sleeps before looking for a hold


@dataclass
class Attempt:
    """One submit: ``status`` None means no HTTP answer came (``error`` names the httpx exception)."""

    n: int
    sent: float  # time.monotonic() when it was sent
    latency_ms: float = 0.0
    status: int | None = None
    body: str = ""
    error: str | None = None
    task_id: str | None = None
    replay: bool = False  # answered X-Idempotent-Replay: an earlier task with its key

    def json_error(self) -> bool:
        """Whether a non-202 answer is JSON ``{"error": "..."}``."""
        try:
            payload = json.loads(self.body)
        except ValueError:
            return False
        return isinstance(payload, dict) and isinstance(payload.get("error"), str)


def phase_of(sent: float, marks: list[tuple[str, float]]) -> str:
    """The name of the last mark at or before ``sent``; ``marks`` is (name, monotonic time) in time order."""
    name = marks[0][0]
    for mark, at in marks:
        if sent >= at:
            name = mark
    return name


def latency_by_phase(attempts: list[Attempt], marks: list[tuple[str, float]], *,
                     only_202: bool = True) -> dict[str, dict[str, float]]:
    """Submit latency figures (``drill_common.latency_figures``) of the attempts sent in each phase of ``marks``
    (only the 202s unless ``only_202`` is false)."""
    from drill_common import latency_figures  # the drills put scripts/ on sys.path

    by_phase: dict[str, list[float]] = {name: [] for name, _ in marks}
    for a in attempts:
        if a.status == 202 or not only_202:
            by_phase[phase_of(a.sent, marks)].append(a.latency_ms)
    return {name: latency_figures(values) for name, values in by_phase.items()}


class PacedLoad:
    """``n`` submits at ``rate_per_s`` from ``threads`` threads; ``body_of(i)`` is the JSON body of request i."""

    def __init__(self, base_url: str, *, n: int, rate_per_s: float, threads: int,
                 body_of: Callable[[int], dict[str, Any]]) -> None:
        self.base_url = base_url
        self.n = n
        self.interval_s = 1.0 / rate_per_s
        self.body_of = body_of
        self.attempts: list[Attempt] = []
        self.in_flight = 0
        self._next = 0
        self._lock = threading.Lock()
        self._start = 0.0
        self._held_s = 0.0  # seconds the load has been held, added to every later due time
        self._held_at = 0.0
        self._running = threading.Event()
        self._running.set()
        self._threads = [threading.Thread(target=self._client, name=f"load-{i}", daemon=True)
                         for i in range(threads)]

    def start(self) -> None:
        self._start = time.monotonic()
        for thread in self._threads:
            thread.start()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def hold(self) -> None:
        """Send nothing more until :meth:`release` (requests already being sent go on)."""
        self._held_at = time.monotonic()
        self._running.clear()

    def release(self) -> None:
        self._held_s += time.monotonic() - self._held_at
        self._running.set()

    def stop(self) -> None:
        """Send no request not yet taken (those being sent go on)."""
        with self._lock:
            self.n = self._next

    def answered(self, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for a in self.attempts if a.status is not None and (status is None or a.status == status))

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.n:
                return None
            self._next += 1
            return self._next - 1

    def _client(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as http:
            while (i := self._take()) is not None:
                while True:
                    self._running.wait()
                    wait_s = self._start + i * self.interval_s + self._held_s - time.monotonic()
                    if wait_s <= 0:
                        break
                    time.sleep(min(wait_s, HOLD_CHECK_S))
                with self._lock:
                    self.in_flight += 1
                attempt = send(http, i, self.body_of(i))
                with self._lock:
                    self.in_flight -= 1
                    self.attempts.append(attempt)


def send(http: httpx.Client, n: int, body: dict[str, Any]) -> Attempt:
    """POST /task once; the answer or the connection error, timed."""
    attempt = Attempt(n=n, sent=time.monotonic())
    try:
        response = http.post("/task", json=body)
    except httpx.HTTPError as exc:
        attempt.error = type(exc).__name__
    else:
        attempt.status = response.status_code
        attempt.body = response.text[:300]
        if response.status_code == 202:
            attempt.task_id = response.json()["id"]
            attempt.replay = response.headers.get("x-idempotent-replay") == "true"
    attempt.latency_ms = (time.monotonic() - attempt.sent) * 1000
    return attempt
