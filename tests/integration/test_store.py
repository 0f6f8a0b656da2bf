"""The Redis seam: auto-pipelined async ops fail one by one, never together."""

from __future__ import annotations

import asyncio

import pytest
import redis

from engine import keys
from engine.connect import async_client
from engine.errors import StoreUnavailable, ValidationFailed
from engine.store import AsyncRunner, Op, SyncRunner, ThreadLocalRunner


def test_an_unencodable_op_fails_alone_and_its_batch_mates_succeed(redis_client, redis_url: str) -> None:
    async def go() -> list[object]:
        client = async_client(redis_url)
        runner = AsyncRunner(client)
        ops = [Op(str, command=("SET", "ty:test:a", "1")), Op(str, command=("SET", "ty:test:b", "bad\ud800")),
               Op(int, command=("INCR", "ty:test:c"))]
        try:
            return await asyncio.wait_for(asyncio.gather(*(runner.run(op) for op in ops),
                                                         return_exceptions=True), timeout=5)
        finally:
            await client.aclose()

    ok, bad, count = asyncio.run(go())
    assert ok == "True" and count == 1
    assert isinstance(bad, ValidationFailed)
    assert redis_client.get("ty:test:b") is None


def test_sync_runner_refuses_unencodable_text_with_a_taskyard_error(redis_client) -> None:
    with pytest.raises(ValidationFailed):
        SyncRunner(redis_client).run(Op(str, command=("SET", keys.key("task", id="x"), "\udcff")))


def test_a_thread_runner_that_cannot_connect_raises_store_unavailable() -> None:
    # A single-connection client connects when it is made, before any op: that failure is translated too.
    def unreachable() -> redis.Redis:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    with pytest.raises(StoreUnavailable, match="store unavailable: ConnectionError"):
        ThreadLocalRunner(unreachable).run(Op(str, command=("PING",)))
