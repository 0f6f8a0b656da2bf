from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from litestar.testing import TestClient

from api.app import create_app
from config.loader import load_settings
from config.settings import WorkerSpec
from engine import registry
from engine.clock import now_ms
from engine.reaper import ReaperOptions
from engine.service import ServiceOptions, TaskService
from engine.store import AsyncRunner, SyncRunner
from workers.runtime import RuntimeOptions, WorkerRuntime

pytestmark = pytest.mark.integration

OFFLINE_AFTER_MS = 3000


@pytest.fixture()
def runner(redis_client: redis.Redis) -> SyncRunner:
    return SyncRunner(redis_client)


class ServiceHarness:
    """Runs TaskService coroutines from sync tests, on a fresh event loop and client each call."""

    def __init__(self, url: str, bound: int) -> None:
        self.url = url
        self.options = ServiceOptions(default_bound=bound, offline_after_ms=OFFLINE_AFTER_MS, max_lost=3)

    def __call__(self, fn: Callable[[TaskService], Any]) -> Any:
        async def go() -> Any:
            client = aioredis.from_url(self.url, decode_responses=True)
            try:
                return await fn(TaskService(AsyncRunner(client), self.options))
            finally:
                await client.aclose()

        return asyncio.run(go())


@pytest.fixture()
def service(redis_client: redis.Redis, redis_url: str) -> ServiceHarness:
    return ServiceHarness(redis_url, bound=256)


def define(runner: SyncRunner, *specs: WorkerSpec, online: bool = True, proc: str = "p" * 32) -> None:
    """Register definitions; with ``online``, a (test) process heartbeats for them."""
    for spec in specs:
        runner.run(registry.register(spec, source="test"))
    if online:
        runner.run(registry.heartbeat(proc_id=proc, specs=list(specs), now_ms=now_ms(), ttl_ms=OFFLINE_AFTER_MS,
                                      host="test", pid=0))


@pytest.fixture()
def spec_factory() -> Iterator[Callable[..., WorkerSpec]]:
    def make(name: str, **kw: Any) -> WorkerSpec:
        kw.setdefault("handler", "workers.builtin:echo")
        return WorkerSpec(name=name, **kw)

    yield make


@pytest.fixture()
def start_runtime(redis_client, redis_url: str) -> Iterator[Callable[..., WorkerRuntime]]:
    started: list[WorkerRuntime] = []

    def start(*specs: WorkerSpec, drain_timeout_s: float = 5.0) -> WorkerRuntime:
        runtime = WorkerRuntime(list(specs), RuntimeOptions(
            redis_url=redis_url, heartbeat_interval_s=0.5, offline_after_s=1.5, drain_timeout_s=drain_timeout_s,
            poll_timeout_s=0.5, max_lost=3,
            reaper=ReaperOptions(offline_after_ms=1500, task_expiry_ms=3_600_000, max_lost=3)))
        runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


class Endpoint(BaseHTTPRequestHandler):
    """A worker endpoint (mecha's contract) answering from ``script``: [(status, JSON body), ...]."""

    calls: list[dict] = []
    script: list[tuple[int, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append(body)
        status, payload = type(self).script.pop(0) if type(self).script else (200, {"result": "done"})
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def endpoint() -> Iterator[str]:
    Endpoint.calls, Endpoint.script = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@contextmanager
def app_client(tmp_path: Path, config: str, redis_url: str) -> Iterator[TestClient]:
    """The real app for ``config`` (a taskyard.yaml text) on ``redis_url``, through Litestar's TestClient."""
    path = tmp_path / "taskyard.yaml"
    path.write_text(config)
    with TestClient(app=create_app(load_settings(path, env={}), redis_url=redis_url)) as client:
        yield client
