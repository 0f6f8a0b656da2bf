"""Redis clients with Taskyard's connection settings, for every process and script."""

from __future__ import annotations

import re

import redis
import redis.asyncio as aioredis

__all__ = ["async_client", "safe_url", "sync_client"]

SOCKET_TIMEOUT_S = 5.0  # seconds a call waits on Redis (or for a free pooled connection) before failing
MAX_CONNECTIONS = 64  # pooled connections per client
HEALTH_CHECK_S = 30  # seconds of idleness after which a pooled connection is pinged before use


def async_client(url: str) -> aioredis.Redis:
    """An asyncio client on a blocking pool: a burst waits for a free connection instead of failing."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=True, max_connections=MAX_CONNECTIONS, timeout=SOCKET_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_S)
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def sync_client(url: str, *, blocking_reads: bool = False, single_connection: bool = False) -> redis.Redis:
    """A blocking client. ``blocking_reads`` leaves the socket timeout off for BLPOP loops;
    ``single_connection`` gives the client one connection of its own (one thread's use only)."""
    return redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=SOCKET_TIMEOUT_S,
        socket_timeout=None if blocking_reads else SOCKET_TIMEOUT_S, health_check_interval=HEALTH_CHECK_S,
        single_connection_client=single_connection)


def safe_url(url: str) -> str:
    """The Redis URL with any password replaced, for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^/]*@", r"\1***@", url)
