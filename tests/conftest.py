"""Shared fixtures. Integration and e2e tests use a real Redis: the local server on 127.0.0.1:6379 when it
answers (database 13, flushed around each test), otherwise an embedded one started for the session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

TEST_DB = 13  # the Redis database the tests own (flushed); the service's own default is 0


def _local_redis_url() -> str | None:
    url = os.environ.get("TASKYARD_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{TEST_DB}")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return None
    return url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = _local_redis_url()
    if url is not None:
        yield url
        return
    from engine.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="taskyard-test-redis-") as tmp:
        server = EmbeddedRedis(Path(tmp))
        yield server.url
        server.close()


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
