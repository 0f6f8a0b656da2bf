"""ArtifactService on a real Redis and a real disk: the size limit holds while streaming, and no bytes outlive a
failed metadata write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from config.settings import ArtifactSettings
from engine.artifact_service import ArtifactService
from engine.artifacts import LocalDiskStore
from engine.errors import ArtifactTooLarge, StoreUnavailable
from engine.ids import new_id
from engine.store import AsyncRunner, Op

pytestmark = pytest.mark.integration

CHUNK = b"x" * 1024


def _trace(r: redis.Redis) -> str:
    trace_id = new_id()
    r.hset(f"ty:trace:{trace_id}", mapping={"project": "default", "name": "x"})
    return trace_id


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _with_service(redis_url: str, root: Path, fn: Any, *, runner_wrapper: Any = None) -> Any:
    async def go() -> Any:
        client = aioredis.from_url(redis_url, decode_responses=True)
        try:
            runner = AsyncRunner(client)
            service = ArtifactService(runner_wrapper(runner) if runner_wrapper else runner, LocalDiskStore(root),
                                      ArtifactSettings(max_bytes=10 * 1024))
            return await fn(service)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_an_endless_body_is_cut_just_past_the_limit(redis_client: redis.Redis, redis_url: str,
                                                    tmp_path: Path) -> None:
    trace_id = _trace(redis_client)
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield CHUNK

    async def go(service: ArtifactService) -> None:
        with pytest.raises(ArtifactTooLarge):
            await service.upload("default", trace_id, content_type="text/plain", name="x", chunks=endless())

    _with_service(redis_url, tmp_path, go)
    assert pulled == 11  # 10 KiB allowed: the 11th KiB is refused, nothing more is read
    assert _files(tmp_path) == [] and redis_client.keys("ty:artifact:*") == []


class _FailingMetadata:
    """The real runner, except that the metadata write fails as if Redis went away."""

    def __init__(self, runner: AsyncRunner) -> None:
        self.runner = runner

    async def run(self, op: Op[Any]) -> Any:
        if op.command is not None and op.command[0] == "INCR":
            raise StoreUnavailable("store unavailable: ConnectionError")
        return await self.runner.run(op)


def test_bytes_are_removed_when_their_metadata_cannot_be_written(redis_client: redis.Redis, redis_url: str,
                                                                 tmp_path: Path) -> None:
    trace_id = _trace(redis_client)

    async def body() -> AsyncIterator[bytes]:
        yield CHUNK

    async def go(service: ArtifactService) -> None:
        with pytest.raises(StoreUnavailable):
            await service.upload("default", trace_id, content_type="text/plain", name="x", chunks=body())

    _with_service(redis_url, tmp_path, go, runner_wrapper=_FailingMetadata)
    assert _files(tmp_path) == []
