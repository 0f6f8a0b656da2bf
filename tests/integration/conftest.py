from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from config.settings import WorkerSpec
from engine import registry
from engine.clock import now_ms
from engine.service import ServiceOptions, TaskService
from engine.store import AsyncRunner, SyncRunner

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
