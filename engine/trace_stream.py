"""Live stream entries for subscribers in this process: one ``XREAD BLOCK`` over every watched stream (trace
events; a hub built with another parser follows other streams, such as a project's activity feed).

Every ``serve`` replica runs its own hub; the events themselves are in Redis streams, so a subscriber that
reconnects to another replica resumes from its last seq and loses nothing. A subscriber registers before it
reads the backlog (``XRANGE``) and drops anything at or below the last seq it passed on, so nothing falls
between the backlog and the live feed. A subscriber that stops reading (a stalled client) is not allowed to
grow memory: past ``QUEUE_MAX`` items its queue is emptied and marked ``lagged``, and it re-reads the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from engine import keys
from engine.traces import parse_stream_entries

__all__ = ["StreamHub", "Subscription", "live_items"]

logger = logging.getLogger(__name__)

BLOCK_MS = 250  # milliseconds one XREAD waits; a stream watched for the first time joins the next read
READ_COUNT = 1000  # entries per stream per read at most
QUEUE_MAX = 10_000  # items a subscriber may have waiting before it is marked lagged
RETRY_S = 1.0  # seconds between reads while Redis is unreachable


@dataclass(eq=False)
class Subscription:
    trace_id: str  # what is followed: a trace id, or the name of another stream
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    lagged: bool = False
    failed: bool = False  # the stream cannot be read (not a stream): the subscriber must stop

    def fail(self) -> None:
        self.failed = True
        self.queue.put_nowait(None)

    def offer(self, event: Any) -> None:
        if self.lagged or self.failed:
            return
        if self.queue.qsize() >= QUEUE_MAX:
            self.lagged = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(event)  # wake the reader so it notices
            return
        self.queue.put_nowait(event)


async def live_items(sub: Subscription, heartbeat_s: float) -> AsyncIterator[Any]:
    """What reaches a subscription, as it arrives; None after ``heartbeat_s`` seconds of silence. Ends when the
    subscription lagged (the follower re-reads its backlog, then comes back) or failed (``sub.failed``: stop)."""
    while not sub.lagged:
        try:
            item = await asyncio.wait_for(sub.queue.get(), timeout=heartbeat_s)
        except TimeoutError:
            yield None
            continue
        if sub.failed or item is None:
            sub.failed = True
            return
        if sub.lagged:
            return  # the queue was dropped
        yield item


class StreamHub:
    def __init__(self, client: aioredis.Redis,
                 parse: Callable[[list[Any]], list[Any]] = parse_stream_entries) -> None:
        self.client = client  # a client of its own: XREAD BLOCK holds a connection
        self._parse = parse  # stream entries -> the items subscribers get (trace events by default)
        self._subs: dict[str, set[Subscription]] = {}
        self._positions: dict[str, str] = {}  # stream key -> last entry id read
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, trace_id: str) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Watch a trace. Everything appended after this returns reaches the subscription's queue."""
        return self.watch(keys.key("trace_events", id=trace_id), trace_id)

    @contextlib.asynccontextmanager
    async def watch(self, stream: str, name: str) -> AsyncIterator[Subscription]:
        """Watch any stream key; ``name`` is what the subscription reports it follows."""
        sub = Subscription(name)
        if stream not in self._positions:
            latest = await self.client.xrevrange(stream, "+", "-", count=1)
            if stream not in self._positions:  # another subscriber may have joined while this one waited
                self._positions[stream] = str(latest[0][0]) if latest else "0-0"
        self._subs.setdefault(stream, set()).add(sub)
        self._ensure_running()
        try:
            yield sub
        finally:
            subs = self._subs.get(stream)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[stream]
                    self._positions.pop(stream, None)

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def _drop_unreadable(self, streams: list[str]) -> None:
        try:
            kinds = [await self.client.type(s) for s in streams]
        except (redis.RedisError, OSError):
            await asyncio.sleep(RETRY_S)
            return
        for stream, kind in zip(streams, kinds, strict=True):
            if kind not in ("stream", "none"):
                logger.error("not a stream; its subscribers are cut off", extra={"key": stream, "type": kind})
                for sub in self._subs.pop(stream, set()):
                    sub.fail()
                self._positions.pop(stream, None)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="trace-stream-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.aclose()

    async def _run(self) -> None:
        while self._subs:
            streams = {s: self._positions[s] for s in list(self._subs) if s in self._positions}
            if not streams:
                await asyncio.sleep(BLOCK_MS / 1000)
                continue
            try:
                answer: Any = await self.client.xread(streams, count=READ_COUNT, block=BLOCK_MS)  # type: ignore[arg-type]
            except redis.ResponseError:
                await self._drop_unreadable(list(streams))  # one bad key must not stall every other subscriber
                continue
            except (redis.RedisError, OSError) as exc:
                logger.warning("trace stream read failed; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(RETRY_S)
                continue
            for stream, entries in answer or []:
                if not entries or stream not in self._positions:
                    continue
                self._positions[stream] = entries[-1][0]
                events = self._parse(entries)
                for sub in list(self._subs.get(stream, ())):
                    for event in events:
                        sub.offer(event)
