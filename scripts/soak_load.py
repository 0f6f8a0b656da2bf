"""The soak drill's load (scripts/drill_soak.py): task submits, signed GitHub webhooks and trace ingest, each at a
steady rate, open loop (a request is sent at its time whether or not earlier ones have answered, so a slow server
shows as latency, not as a lower rate), with every answer's latency recorded per minute and per kind.

A trace is three requests: create (``POST /api/traces``), one batch of events (``POST /api/traces/{id}/events``
with LLM and tool calls) and its end (a ``session_end`` event), so the engine analyses it when it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MAX_IN_FLIGHT = 256  # requests in flight at most; past it a send waits (and the shortfall shows in the rate)
REQUEST_TIMEOUT_S = 30.0  # seconds one request may take before it counts as an error
EVENTS_PER_TRACE = 12  # events in a trace's one batch (LLM calls, tool calls and results)
KINDS = ("submit", "webhook", "trace")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Recorder:
    """Latencies (ms) per kind and per minute since the start; answers that were not the expected status."""

    t0: float
    latencies: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)

    def record(self, kind: str, started: float, ok: bool, detail: str = "") -> None:
        self.latencies[(kind, int((started - self.t0) // 60))].append((time.monotonic() - started) * 1000)
        if not ok:
            self.errors[kind] += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(f"{kind}: {detail}"[:300])

    def window(self, kind: str, first_minute: int, last_minute: int) -> list[float]:
        return [ms for (k, minute), values in self.latencies.items() if k == kind
                and first_minute <= minute <= last_minute for ms in values]

    def per_minute(self, kind: str) -> list[dict[str, float]]:
        minutes = sorted(m for (k, m) in self.latencies if k == kind)
        return [{"minute": m, "count": len(v := self.latencies[(kind, m)]), "p50_ms": round(percentile(v, 0.5), 1),
                 "p99_ms": round(percentile(v, 0.99), 1)} for m in minutes]


@dataclass(frozen=True)
class Rates:
    submits_per_s: float
    webhooks_per_s: float
    traces_per_s: float


class Connections:
    """A pool of keep-alive HTTP/1.1 connections to one host, speaking just enough HTTP for Taskyard's answers
    (a status line, headers, a ``Content-Length`` body). httpx cost the drill more CPU than the server it loaded
    (56% of a core at 230 requests/s on the 2-core machine), which showed as seconds of latency that were the
    load generator's own."""

    def __init__(self, base_url: str, size: int) -> None:
        url = httpx.URL(base_url)
        self.host, self.port = url.host, url.port or 80
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)  # opened on first use

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = await self._idle.get()
        try:
            if conn is None:
                conn = await asyncio.open_connection(self.host, self.port)
            reader, writer = conn
            head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}",
                    *(f"{k}: {v}" for k, v in headers.items())]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
            status = int(status_line.split()[1])
        except BaseException:
            if conn is not None:
                conn[1].close()
            self._idle.put_nowait(None)
            raise
        self._idle.put_nowait(conn)
        return status, answer

    async def close(self) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if conn is not None:
                conn[1].close()


class Load:
    """Sends the three kinds of traffic to ``base_url`` until ``stop`` is set."""

    def __init__(self, base_url: str, *, worker: str, webhook_body: Path, secret: str, rates: Rates) -> None:
        self.base_url = base_url
        self.worker = worker
        self.body = webhook_body.read_bytes()
        self.signature = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        self.rates = rates
        self.recorder = Recorder(t0=time.monotonic())
        self.stop = asyncio.Event()
        self._numbers = itertools.count()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._pending: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        http = Connections(self.base_url, MAX_IN_FLIGHT)
        try:
            self.recorder = Recorder(t0=time.monotonic())
            await asyncio.gather(self._pace(self.rates.submits_per_s, lambda: self._submit(http)),
                                 self._pace(self.rates.webhooks_per_s, lambda: self._webhook(http)),
                                 self._pace(self.rates.traces_per_s, lambda: self._trace(http)))
            if self._pending:
                await asyncio.wait(self._pending)
        finally:
            await http.close()

    async def _pace(self, rate: float, send) -> None:  # type: ignore[no-untyped-def]
        if rate <= 0:
            return
        interval = 1.0 / rate
        due = time.monotonic()
        while not self.stop.is_set():
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            await self._slots.acquire()
            task = asyncio.create_task(self._guarded(send))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _guarded(self, send) -> None:  # type: ignore[no-untyped-def]
        try:
            await send()
        finally:
            self._slots.release()

    async def _call(self, kind: str, http: Connections, path: str, expect: tuple[int, ...], body: bytes,
                    headers: dict[str, str] | None = None) -> bytes | None:
        started = time.monotonic()
        self.recorder.sent[kind] += 1
        try:
            status, answer = await asyncio.wait_for(
                http.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})}),
                REQUEST_TIMEOUT_S)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            self.recorder.record(kind, started, False, f"POST {path}: {type(exc).__name__} {exc}")
            return None
        ok = status in expect
        self.recorder.record(kind, started, ok, f"POST {path}: {status} {answer[:200]!r}")
        return answer if ok else None

    async def _submit(self, http: Connections) -> None:
        body = json.dumps({"prompt": f"soak {next(self._numbers)}", "worker": self.worker}).encode()
        await self._call("submit", http, "/task", (202,), body)

    async def _webhook(self, http: Connections) -> None:
        headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
                   "X-Hub-Signature-256": self.signature}
        await self._call("webhook", http, "/webhook/github", (202,), self.body, headers)

    async def _trace(self, http: Connections) -> None:
        created = await self._call("trace", http, "/api/traces", (201,),
                                   json.dumps({"name": "soak", "agent": "soak-agent"}).encode())
        if created is None:
            return
        trace_id = json.loads(created)["id"]
        events = []
        for i in range(EVENTS_PER_TRACE):
            if i % 3 == 0:
                events.append({"type": "llm_call", "idempotency_key": f"e{i}",
                               "payload": {"model": "gpt-4o-mini", "tokens_in": 120 + i, "tokens_out": 40}})
            elif i % 3 == 1:
                events.append({"type": "tool_call", "idempotency_key": f"e{i}",
                               "payload": {"tool": "search", "args": {"q": f"step {i}"}}})
            else:
                events.append({"type": "tool_result", "idempotency_key": f"e{i}",
                               "payload": {"tool": "search", "result": "ok " * 20}})
        path = f"/api/traces/{trace_id}/events"
        await self._call("trace", http, path, (200, 201, 202), json.dumps(events).encode())
        end = {"type": "session_end", "idempotency_key": "end", "payload": {"status": "completed"}}
        await self._call("trace", http, path, (200, 201, 202), json.dumps(end).encode())
