"""The API's own pipelined Redis connection (engine/resp.py under AsyncRunner), against a real Redis: the same
answers as redis-py, replies matched to their callers under concurrency, failures confined and recovered."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import uvloop

from engine.connect import async_client
from engine.embedded import EmbeddedRedis
from engine.errors import StoreUnavailable, ValidationFailed
from engine.resp import PackError, pack_command
from engine.store import AsyncRunner, Op, SyncRunner, ThreadLocalRunner

pytestmark = pytest.mark.integration

T = TypeVar("T")


def _with_runner(url: str, fn: Callable[[AsyncRunner], Awaitable[T]], *, timeout_s: float = 5.0,
                 loop: str = "asyncio") -> T:
    async def go() -> T:
        client = async_client(url)
        runner = AsyncRunner(client, timeout_s=timeout_s)
        try:
            return await asyncio.wait_for(fn(runner), timeout=30)
        finally:
            await runner.aclose()
            await client.aclose()

    return uvloop.run(go()) if loop == "uvloop" else asyncio.run(go())


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # the API runs on uvloop under uvicorn


def _ident(raw: Any) -> Any:
    return raw


# Every plain command the store's ops send, with the keys it reads set up first.
COMMANDS: list[tuple] = [
    ("SET", "ty:resp:s", "v"), ("GET", "ty:resp:s"), ("GET", "ty:resp:missing"), ("DEL", "ty:resp:gone"),
    ("HGETALL", "ty:resp:h"), ("HGETALL", "ty:resp:missing"), ("HGET", "ty:resp:h", "a"),
    ("HMGET", "ty:resp:h", "a", "nope"), ("HINCRBY", "ty:resp:h", "n", 2), ("HSET", "ty:resp:h2", "x", "1"),
    ("SMEMBERS", "ty:resp:set"), ("SREM", "ty:resp:set", "zz"), ("INCR", "ty:resp:i"), ("LLEN", "ty:resp:l"),
    ("LRANGE", "ty:resp:l", 0, -1), ("ZADD", "ty:resp:z2", 1.5, "m"), ("ZCARD", "ty:resp:z"),
    ("ZRANGE", "ty:resp:z", 0, -1, "WITHSCORES"), ("ZRANGEBYSCORE", "ty:resp:z", "-inf", "+inf", "WITHSCORES"),
    ("ZREVRANGE", "ty:resp:z", 0, -1), ("ZREM", "ty:resp:z", "nope"),
    ("XRANGE", "ty:resp:x", "-", "+"), ("XREVRANGE", "ty:resp:x", "+", "-", "COUNT", 1), ("XTRIM", "ty:resp:x2",
                                                                                          "MAXLEN", 10),
]


def _seed(client: redis.Redis) -> None:
    client.hset("ty:resp:h", mapping={"a": "1", "b": "ünï"})
    client.sadd("ty:resp:set", "p", "q")
    client.rpush("ty:resp:l", "x", "y")
    client.zadd("ty:resp:z", {"m1": 1, "m2": 2.5})
    client.xadd("ty:resp:x", {"f": "1"})
    client.xadd("ty:resp:x", {"f": "2", "g": "3"})


def _on_own_sync_connection(url: str, op: Op[Any]) -> Any:
    runner = _own(url)
    try:
        return runner.run(op)
    finally:
        runner.close()


@pytest.mark.parametrize("runner", ["async", "sync"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(map(str, c[:2])))
def test_every_command_the_store_sends_answers_as_redis_py_answers_it(redis_client, redis_url, command,
                                                                      runner) -> None:
    # Given the same data twice
    _seed(redis_client)
    expected = SyncRunner(redis_client).run(Op(_ident, command=command))
    redis_client.flushdb()
    _seed(redis_client)
    # When a runner sends the command over its own connection (the API's pipe, or a thread's socket)
    op = Op(_ident, command=command)
    got = (_with_runner(redis_url, lambda r: r.run(op)) if runner == "async"
           else _on_own_sync_connection(redis_url, op))
    # Then the op sees the same value, shape and types as on the sync runner's redis-py client
    if command[0] in ("XRANGE", "XREVRANGE"):
        assert [fields for _, fields in got] == [fields for _, fields in expected]
    else:
        assert got == expected and type(got) is type(expected)


def test_info_answers_as_a_dict_like_redis_py(redis_client, redis_url) -> None:
    info = _with_runner(redis_url, lambda r: r.run(Op(_ident, command=("INFO", "memory"))))
    assert isinstance(info, dict) and info["used_memory"] > 0


@LOOPS
def test_five_hundred_concurrent_ops_each_get_their_own_reply(redis_client, redis_url, loop) -> None:
    async def go(runner: AsyncRunner) -> list[Any]:
        ops = []
        for i in range(500):
            if i % 3 == 0:
                ops.append(runner.run(Op(_ident, command=("ECHO", f"v{i}"))))
            elif i % 3 == 1:
                ops.append(runner.run(Op(int, command=("INCRBY", f"ty:resp:c{i}", i))))
            else:
                await asyncio.sleep(0)  # spread the ops over several batches, several in flight at once
                ops.append(runner.run(Op(_ident, command=("ECHO", "ü" * (i % 7) + str(i)))))
        return await asyncio.gather(*ops)

    results = _with_runner(redis_url, go, loop=loop)
    for i, got in enumerate(results):
        assert got == (f"v{i}" if i % 3 == 0 else i if i % 3 == 1 else "ü" * (i % 7) + str(i))


def test_an_error_reply_fails_only_its_own_op(redis_client, redis_url) -> None:
    redis_client.set("ty:resp:str", "not a hash")

    async def go(runner: AsyncRunner) -> tuple[Any, ...]:
        return await asyncio.gather(
            runner.run(Op(_ident, command=("ECHO", "before"))),
            runner.run(Op(_ident, command=("HGET", "ty:resp:str", "f"))),
            runner.run(Op(_ident, command=("ECHO", "after"))), return_exceptions=True)

    before, wrong, after = _with_runner(redis_url, go)
    assert (before, after) == ("before", "after")
    assert isinstance(wrong, StoreUnavailable) and "WRONGTYPE" in str(wrong)


def test_an_argument_redis_cannot_carry_fails_only_its_own_op(redis_client, redis_url) -> None:
    async def go(runner: AsyncRunner) -> tuple[Any, ...]:
        return await asyncio.gather(
            runner.run(Op(_ident, command=("SET", "ty:resp:none", None))),
            runner.run(Op(_ident, command=("ECHO", "fine"))), return_exceptions=True)

    refused, fine = _with_runner(redis_url, go)
    assert isinstance(refused, PackError) and fine == "fine"
    assert redis_client.exists("ty:resp:none") == 0


def test_arguments_are_sent_as_redis_py_sends_them() -> None:
    assert pack_command(("SET", "k", 7)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n"
    assert pack_command(("ZADD", "z", 1.5, b"\xff")) == b"*4\r\n$4\r\nZADD\r\n$1\r\nz\r\n$3\r\n1.5\r\n$1\r\n\xff\r\n"
    assert pack_command(("ECHO", "é")) == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"
    with pytest.raises(PackError):
        pack_command(("SET", "k", True))
    with pytest.raises(PackError):
        pack_command(("SET", "k", "\ud800"))


def test_scripts_run_again_after_redis_forgets_them(redis_client, redis_url) -> None:
    async def go(runner: AsyncRunner) -> tuple[Any, Any]:
        op = Op(_ident, script="usage_sum", args=("default", "model", "+", "-", 100))
        first = await runner.run(op)
        redis_client.script_flush()  # what a Redis restart does to the script cache
        return first, await runner.run(op)

    first, second = _with_runner(redis_url, go)
    assert first == second


@LOOPS
def test_a_killed_connection_is_replaced_by_the_next_call(redis_client, redis_url, loop) -> None:
    async def go(runner: AsyncRunner) -> tuple[int, int, str]:
        first_id = await runner.run(Op(int, command=("CLIENT", "ID")))
        redis_client.client_kill_filter(_id=first_id)  # Redis drops the runner's connection
        deadline = time.monotonic() + 5
        while True:  # the call that meets the dead connection may fail; the next one reconnects
            try:
                second_id = await runner.run(Op(int, command=("CLIENT", "ID")))
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        return first_id, second_id, await runner.run(Op(_ident, command=("ECHO", "again")))

    first_id, second_id, echo = _with_runner(redis_url, go, loop=loop)
    assert second_id != first_id and echo == "again"


@pytest.fixture()
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: a Redis that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for conn in held:
        conn.close()


@LOOPS
def test_a_redis_that_stops_answering_fails_calls_within_the_timeout(silent_server: int, loop: str) -> None:
    async def go(runner: AsyncRunner) -> tuple[Any, float]:
        started = time.monotonic()
        result = await asyncio.gather(runner.run(Op(_ident, command=("PING",))), return_exceptions=True)
        return result[0], time.monotonic() - started

    error, took = _with_runner(f"redis://127.0.0.1:{silent_server}/0", go, timeout_s=0.5, loop=loop)
    assert isinstance(error, StoreUnavailable)
    assert 0.5 <= took < 2.0


def test_an_unreachable_redis_is_store_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    error = _with_runner(f"redis://127.0.0.1:{port}/0", lambda r: asyncio.gather(
        r.run(Op(_ident, command=("PING",))), return_exceptions=True))[0]
    assert isinstance(error, StoreUnavailable) and "ConnectionRefusedError" in str(error)


@pytest.fixture()
def acl_user(redis_client: redis.Redis) -> Iterator[tuple[str, str]]:
    name, password = "ty-resp-test", "s3cret-resp-pw"
    redis_client.acl_setuser(name, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"],
                             commands=["+@all"])
    yield name, password
    redis_client.acl_deluser(name)


def _tcp_url(redis_url: str, *, user: str, password: str) -> str:
    if not redis_url.startswith("redis://"):
        pytest.skip("needs the TCP Redis (the embedded one listens on a unix socket)")
    host_port_db = redis_url.split("://", 1)[1].split("@")[-1]
    return f"redis://{user}:{password}@{host_port_db}"


def test_credentials_and_database_from_the_url_are_used(redis_client, redis_url, acl_user) -> None:
    user, password = acl_user
    got = _with_runner(_tcp_url(redis_url, user=user, password=password), lambda r: asyncio.gather(
        r.run(Op(_ident, command=("SET", "ty:resp:authed", "yes"))),
        r.run(Op(_ident, command=("ACL", "WHOAMI")))))
    assert got == [True, user]
    assert redis_client.get("ty:resp:authed") == "yes"  # the URL's database, not database 0


def test_a_wrong_password_is_store_unavailable_without_the_password(redis_client, redis_url, acl_user) -> None:
    user, _ = acl_user
    error = _with_runner(_tcp_url(redis_url, user=user, password="wrong-pw-xyz"), lambda r: asyncio.gather(
        r.run(Op(_ident, command=("PING",))), return_exceptions=True))[0]
    assert isinstance(error, StoreUnavailable) and "wrong-pw-xyz" not in str(error)


def test_the_embedded_redis_is_reached_over_its_unix_socket(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    try:
        assert server.url.startswith("unix://")
        got = _with_runner(server.url, lambda r: asyncio.gather(
            r.run(Op(_ident, command=("SET", "k", "v"))), r.run(Op(_ident, command=("GET", "k")))))
        assert got == [True, "v"]
    finally:
        server.close()


# -- the blocking twin: SyncRunner(own_connection=True), as ThreadLocalRunner makes it for each thread -------
def _own(url: str, *, timeout_s: float = 5.0) -> SyncRunner:
    return SyncRunner(redis.Redis.from_url(url, decode_responses=True), own_connection=True, timeout_s=timeout_s)


def test_a_threads_own_connection_reconnects_after_redis_drops_it(redis_client, redis_url) -> None:
    runner = _own(redis_url)
    try:
        first_id = runner.run(Op(int, command=("CLIENT", "ID")))
        redis_client.client_kill_filter(_id=first_id)
        time.sleep(0.05)
        # The close Redis sent is seen before the next request goes out: the request is not lost with it
        second_id = runner.run(Op(int, command=("CLIENT", "ID")))
        assert second_id != first_id
        assert runner.run(Op(_ident, command=("ECHO", "again"))) == "again"
    finally:
        runner.close()


def test_a_threads_own_connection_fails_within_the_timeout_when_redis_hangs(silent_server: int) -> None:
    runner = _own(f"redis://127.0.0.1:{silent_server}/0", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        runner.run(Op(_ident, command=("PING",)))
    assert 0.5 <= time.monotonic() - started < 2.0
    runner.close()


def test_a_threads_own_connection_reloads_a_forgotten_script_and_refuses_bad_text(redis_client, redis_url) -> None:
    runner = _own(redis_url)
    try:
        op = Op(_ident, script="usage_sum", args=("default", "model", "+", "-", 100))
        first = runner.run(op)
        redis_client.script_flush()
        assert runner.run(op) == first
        with pytest.raises(ValidationFailed):
            runner.run(Op(_ident, command=("SET", "ty:resp:bad", "x\udcff")))
        with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
            redis_client.set("ty:resp:str", "v")
            runner.run(Op(_ident, command=("HGET", "ty:resp:str", "f")))
        assert runner.run(Op(_ident, command=("ECHO", "still fine"))) == "still fine"
    finally:
        runner.close()


def test_each_thread_of_a_thread_runner_has_its_own_connection(redis_url) -> None:
    runner = ThreadLocalRunner(lambda: redis.Redis.from_url(redis_url, decode_responses=True))
    ids: list[int] = []
    threads = [threading.Thread(target=lambda: ids.append(runner.run(Op(int, command=("CLIENT", "ID")))))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runner.close()
    assert len(set(ids)) == 4
