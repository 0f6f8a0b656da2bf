"""The Redis seam: operations described once, run by a sync or an async runner.

Each store operation is an :class:`Op`: one Lua script call (or one plain command) plus a function that turns
Redis's answer into a domain value. The worker runtime runs ops with :class:`SyncRunner` (threads), the API with
:class:`AsyncRunner` (asyncio); the logic exists once. Every op is a single round trip. Redis errors become
:class:`~engine.errors.StoreUnavailable` here, at the boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio as aioredis

from engine.errors import StoreUnavailable
from engine.keys import lua_preamble

__all__ = ["AsyncRunner", "Op", "SyncRunner", "script_source"]

T = TypeVar("T")

SCRIPTS = ("admit", "claim", "fetch_claim", "finish", "reap", "cancel", "list_tasks", "worker_status")


@dataclass(frozen=True)
class Op(Generic[T]):
    """One Redis round trip: a script (by name) with its arguments, or a raw command, and a parser."""

    parse: Callable[[Any], T]
    script: str | None = None
    args: tuple = ()
    command: tuple | None = None
    commands: tuple[tuple, ...] | None = None  # run together in one MULTI/EXEC transaction


@cache
def script_source(name: str) -> str:
    """The full Lua source of a script: generated key functions, shared helpers, then the script."""
    lua = resources.files("engine") / "lua"
    common = (lua / "_common.lua").read_text(encoding="utf-8")
    body = (lua / f"{name}.lua").read_text(encoding="utf-8")
    return lua_preamble() + common + "\n" + body


class SyncRunner:
    """Runs ops on a blocking client (``decode_responses=True``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPTS}

    def run(self, op: Op[T]) -> T:
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


class AsyncRunner:
    """Runs ops on an asyncio client (``decode_responses=True``)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPTS}

    async def run(self, op: Op[T]) -> T:
        try:
            if op.script is not None:
                raw = await self._scripts[op.script](args=list(op.args))
            elif op.commands is not None:
                pipe = self.client.pipeline(transaction=True)
                for command in op.commands:
                    pipe.execute_command(*command)
                raw = await pipe.execute()
            else:
                assert op.command is not None
                raw = await self.client.execute_command(*op.command)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"store unavailable: {type(exc).__name__}") from exc
        return op.parse(raw)
