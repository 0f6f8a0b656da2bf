"""The Redis seam: operations described once, run by a sync or an async runner.

Each store operation is an :class:`Op`: one Lua script call (or one plain command) plus a function that turns
Redis's answer into a domain value. The worker runtime runs ops with :class:`ThreadLocalRunner` (a
:class:`SyncRunner` and a connection per thread), the API with :class:`AsyncRunner` (asyncio, auto-pipelined);
the logic exists once. Every op is a single round trip. Redis errors become
:class:`~engine.errors.StoreUnavailable` here, at the boundary. Lua sources are assembled by
:func:`script_source` from ``engine/lua/``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Generic, Protocol, TypeVar

import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from engine.errors import InvalidBody, StoreUnavailable, ValidationFailed
from engine.keys import lua_preamble
from engine.resp import Endpoint, NotUTF8, PackError, RespPipe, RespSocket, pack_command

__all__ = ["AsyncRunner", "Op", "Runner", "SyncRunner", "ThreadLocalRunner", "script_source"]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 5.0  # seconds a batch waits for Redis's replies before its connection is dropped

SCRIPTS = ("admit", "claim", "fetch_claim", "finish", "reap", "redispatch", "cancel", "list_tasks", "worker_status",
           "event_receive", "event_update", "event_list", "conc", "event_match",
           "trace_create", "trace_ingest", "trace_list", "analysis_store", "scan_next", "ratelimit", "usage_sum",
           "incident_record", "incident_update", "incident_get", "incident_list",
           "webhook_list", "webhook_delete", "webhook_emit", "run_create", "run_update", "retention_sweep",
           "event_replay_number")


class Runner(Protocol):
    """Anything that runs an op synchronously (``SyncRunner``, ``ThreadLocalRunner``)."""

    def run(self, op: Op[T]) -> T: ...


@dataclass(frozen=True)
class Op(Generic[T]):
    """One Redis round trip: a script (by name) with its arguments, or a raw command, and a parser."""

    parse: Callable[[Any], T]
    script: str | None = None
    args: tuple = ()
    command: tuple | None = None
    commands: tuple[tuple, ...] | None = None  # run together in one MULTI/EXEC transaction


_DEFINES = re.compile(r"^local (?:function )?(\w+)", re.M)


def _definitions(common: str) -> list[tuple[str, str]]:
    """``_common.lua`` cut into (name, source) per top-level ``local`` definition, each with the comment lines
    just above it. A definition runs until the comment or definition that starts the next one."""
    lines = common.splitlines(keepends=True)
    starts: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = _DEFINES.match(line)
        if m:
            first = i
            while first > 0 and lines[first - 1].startswith("--"):
                first -= 1
            starts.append((first, m.group(1)))
    return [(name, "".join(lines[first:(starts[k + 1][0] if k + 1 < len(starts) else len(lines))]))
            for k, (first, name) in enumerate(starts)]


@cache
def script_source(name: str) -> str:
    """The full Lua source of a script: the generated key functions and the shared helpers it uses (directly
    or through other helpers), then the script. Redis re-runs a script's whole chunk on every call, so
    leaving out what a script does not use saves server time on every call."""
    lua = resources.files("engine") / "lua"
    body = (lua / f"{name}.lua").read_text(encoding="utf-8")
    common = (lua / "_common.lua").read_text(encoding="utf-8")
    blocks = _definitions(common)
    needed: set[str] = set()
    text = body
    while True:
        more = {n for n, _ in blocks if n not in needed and re.search(rf"\b{n}\b", text)}
        if not more:
            break
        needed |= more
        text = body + "".join(b for n, b in blocks if n in needed)
    helpers = "".join(b for n, b in blocks if n in needed)
    return lua_preamble(used=text) + helpers + "\n" + body


class SyncRunner:
    """Runs ops on a blocking client (``decode_responses=True``). With ``own_connection`` (one thread's use
    only) scripts and plain commands go over a connection of the runner's own (``engine/resp.py``), the client
    keeping transactions and script reloads; without it the client is safe to share between threads."""

    def __init__(self, client: redis.Redis, *, own_connection: bool = False,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.client = client
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPTS}
        endpoint = Endpoint.of_pool(client.connection_pool) if own_connection else None
        self._conn = RespSocket(endpoint, timeout_s=timeout_s) if endpoint is not None else None

    def run(self, op: Op[T]) -> T:
        if self._conn is not None and op.commands is None:
            return op.parse(self._run_own(op))
        if not _encodable(op):
            raise ValidationFailed("text is not valid UTF-8")
        try:
            if op.script is not None:
                raw = self._scripts[op.script](args=list(op.args))
            elif op.commands is not None:
                pipe = self.client.pipeline(transaction=True)
                for command in op.commands:
                    pipe.execute_command(*command)
                raw = pipe.execute()
            else:
                assert op.command is not None
                raw = self.client.execute_command(*op.command)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"store unavailable: {type(exc).__name__}") from exc
        return op.parse(raw)

    def _run_own(self, op: Op[Any]) -> Any:
        assert self._conn is not None
        try:
            packed = _packed(op, self._scripts)
        except NotUTF8:
            raise ValidationFailed("text is not valid UTF-8") from None
        try:
            [reply] = self._conn.request([packed])
            if isinstance(reply, NoScriptError) and op.script is not None:
                # Redis restarted or flushed its script cache: redis-py's script object loads it again.
                reply = self._scripts[op.script](args=list(op.args))
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(f"store unavailable: {type(exc).__name__}") from exc
        if isinstance(reply, redis.RedisError):
            raise StoreUnavailable(f"store unavailable: {type(reply).__name__}: {reply}")
        return _shaped(self.client, op.command[0], reply) if op.command is not None else reply

    def close(self) -> None:
        """Close the runner's own connection (the client is its owner's to close)."""
        if self._conn is not None:
            self._conn.close()


class ThreadLocalRunner:
    """A SyncRunner per thread, each with a Redis connection of its own (``own_connection``).

    For the hot paths of the worker runtime and the engine's jobs: a pooled redis-py client checks every
    borrowed connection for stray data with a non-blocking read (about a tenth of a worker's time per task),
    and even a single-connection one spends ~50 us of CPU a call; a thread that owns its connection and packs
    and parses itself (``engine/resp.py``) spends ~30.
    ``make_client`` builds one blocking client (kept for transactions and script reloads); ``close()`` closes
    every connection made.
    """

    def __init__(self, make_client: Callable[[], redis.Redis]) -> None:
        self._make_client = make_client
        self._local = threading.local()
        self._runners: list[SyncRunner] = []
        self._lock = threading.Lock()

    def run(self, op: Op[T]) -> T:
        runner = getattr(self._local, "runner", None)
        if runner is None:
            try:
                client = self._make_client()  # a single-connection client connects here, not at its first call
            except redis.RedisError as exc:
                raise StoreUnavailable(f"store unavailable: {type(exc).__name__}") from exc
            runner = self._local.runner = SyncRunner(client, own_connection=True)
            with self._lock:
                self._runners.append(runner)
        return runner.run(op)

    def close(self) -> None:
        with self._lock:
            runners, self._runners = self._runners, []
        for runner in runners:
            runner.close()
            runner.client.close()


class AsyncRunner:
    """Runs ops on an asyncio client (``decode_responses=True``), auto-pipelining concurrent calls.

    Ops awaited in the same event-loop turn go to Redis in one non-transactional pipeline: one write, one read
    and one wake-up for the batch instead of one each (a submit costs about a third less CPU at 32
    connections). Every script still runs atomically; a batch only shares the network round trip.
    Transactions (``Op.commands``) are sent on their own.
    """

    def __init__(self, client: aioredis.Redis, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.client = client
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPTS}
        endpoint = Endpoint.of_pool(client.connection_pool)
        # Batches go over one pipelined connection of our own (engine/resp.py); TLS stays on redis-py's.
        self._pipe = RespPipe(endpoint, timeout_s=timeout_s) if endpoint is not None else None
        self._pending: list[tuple[Op[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, op: Op[T]) -> T:
        if op.commands is not None:
            return op.parse(await self._transaction(op.commands))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((op, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return op.parse(await future)

    async def _transaction(self, commands: tuple[tuple, ...]) -> Any:
        try:
            pipe = self.client.pipeline(transaction=True)
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailable(f"store unavailable: {type(exc).__name__}") from exc

    def _flush(self) -> None:
        batch, self._pending, self._scheduled = self._pending, [], False
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Op[Any], asyncio.Future[Any]]]) -> None:
        # An op Redis cannot encode fails alone, before it can break the pipeline it would share.
        sendable, packed = [], []
        for op, future in batch:
            if self._pipe is not None:
                try:
                    packed.append(_packed(op, self._scripts))
                except PackError as exc:
                    _settle(future, error=_unencodable() if isinstance(exc, NotUTF8) else exc)
                    continue
            elif not _encodable(op):
                _settle(future, error=_unencodable())
                continue
            sendable.append((op, future))
        batch = sendable
        if not batch:
            return
        try:
            results = await (self._send_own(packed) if self._pipe is not None else self._send_pooled(batch))
        except BaseException as exc:  # every waiting caller must hear back, whatever went wrong
            error = (StoreUnavailable(f"store unavailable: {type(exc).__name__}")
                     if isinstance(exc, (redis.RedisError, OSError)) else exc)
            for _, future in batch:
                _settle(future, error=error)
            if not isinstance(exc, Exception):
                raise
            return
        for (op, future), result in zip(batch, results, strict=True):
            if self._pipe is not None and op.command is not None and not isinstance(result, redis.RedisError):
                result = _shaped(self.client, op.command[0], result)
            if isinstance(result, NoScriptError) and op.script is not None:
                # Redis restarted or flushed its script cache: this call loads the script again.
                try:
                    result = await self._scripts[op.script](args=list(op.args))
                except redis.RedisError as exc:
                    result = exc
            if isinstance(result, redis.RedisError):
                _settle(future, error=StoreUnavailable(f"store unavailable: {type(result).__name__}: {result}"))
            else:
                _settle(future, result=result)

    async def _send_own(self, packed: list[bytes]) -> list[Any]:
        assert self._pipe is not None
        results: list[Any] = []
        failure: OSError | None = None
        for reply in await self._pipe.call(packed):
            try:
                results.append(await reply)
            except OSError as exc:  # the connection failed under the batch: every later reply fails too
                failure = failure or exc
        if failure is not None:
            raise failure
        return results

    async def _send_pooled(self, batch: list[tuple[Op[Any], asyncio.Future[Any]]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for op, _ in batch:
            if op.script is not None:
                pipe.evalsha(self._scripts[op.script].sha, 0, *op.args)
            else:
                assert op.command is not None
                pipe.execute_command(*op.command)
        return await pipe.execute(raise_on_error=False)

    async def aclose(self) -> None:
        """Close the runner's own connection (the redis-py client is its owner's to close)."""
        if self._pipe is not None:
            self._pipe.close()


def _packed(op: Op[Any], scripts: dict[str, Any]) -> bytes:
    """The op as one RESP command for a runner's own connection: EVALSHA of its script, or its command."""
    if op.script is not None:
        return pack_command(("EVALSHA", scripts[op.script].sha, 0, *op.args))
    assert op.command is not None
    return pack_command(op.command)


def _shaped(client: Any, command: str, reply: Any) -> Any:
    """A plain command's reply in the shape redis-py gives it (``SET`` -> True, ``XRANGE`` -> pairs, ...),
    so an op parses the same answer on any runner."""
    callback = client.response_callbacks.get(command)
    if callback is None:
        return reply
    try:
        return callback(reply)
    except Exception as exc:  # a reply the callback cannot read: report it like an error reply
        return redis.ResponseError(f"unreadable reply to {command}: {exc}")


def _unencodable() -> ValidationFailed:
    return InvalidBody("text is not valid UTF-8")


def _encodable(op: Op[Any]) -> bool:
    try:
        for arg in op.command if op.command is not None else op.args:
            if isinstance(arg, str):
                arg.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _settle(future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the caller went away (client disconnected)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
