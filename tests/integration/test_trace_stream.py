"""The live trace feed on a real Redis: backlog then live with nothing lost or repeated at the seam, keep-alives
when quiet, and a subscriber that falls behind catching up from the stream instead of growing memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from config.settings import TraceSettings
from engine import trace_stream
from engine.pricing import PriceBook
from engine.store import AsyncRunner
from engine.trace_service import TraceService
from engine.trace_stream import StreamHub

pytestmark = pytest.mark.integration


async def _service(url: str) -> tuple[TraceService, aioredis.Redis]:
    client = aioredis.from_url(url, decode_responses=True)
    service = TraceService(AsyncRunner(client), TraceSettings(), PriceBook.build(),
                           StreamHub(aioredis.from_url(url, decode_responses=True)))
    await service.create("default", {"id": "t1", "name": "stream"})
    return service, client


async def _write(service: TraceService, first: int, count: int, *, pause: float = 0.0) -> None:
    for seq in range(first, first + count):
        result = await service.ingest("default", "t1", {"seq": seq, "type": "step", "payload": {"n": seq}})
        assert result.accepted == 1
        if pause:
            await asyncio.sleep(pause)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_backlog_then_live_exactly_once(redis_client: Any, redis_url: str) -> None:
    async def go() -> list[int]:
        service, client = await _service(redis_url)
        await _write(service, 1, 50)
        seen: list[int] = []
        feed = service.follow("default", "t1", after_seq=10, heartbeat_s=5)
        writer = asyncio.create_task(_write(service, 51, 150, pause=0.001))
        async for event in feed:
            assert event is not None
            seen.append(event.seq)
            if event.seq == 200:
                break
        await writer
        await feed.aclose()
        assert service.hub is not None
        assert service.hub.subscribers == 0
        await service.hub.close()
        await client.aclose()
        return seen

    assert run(go()) == list(range(11, 201))


def test_keep_alive_when_quiet(redis_client: Any, redis_url: str) -> None:
    async def go() -> list[Any]:
        service, client = await _service(redis_url)
        feed = service.follow("default", "t1", after_seq=0, heartbeat_s=0.2)
        items = [await feed.__anext__()]
        await _write(service, 1, 1)
        items.append(await feed.__anext__())
        await feed.aclose()
        assert service.hub is not None
        await service.hub.close()
        await client.aclose()
        return items

    first, second = run(go())
    assert first is None and second.seq == 1


def test_a_stalled_subscriber_catches_up_from_the_stream(redis_client: Any, redis_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_stream, "QUEUE_MAX", 5)

    async def go() -> list[int]:
        service, client = await _service(redis_url)
        feed = service.follow("default", "t1", after_seq=0, heartbeat_s=5)
        await _write(service, 1, 1)
        seen = [(await feed.__anext__()).seq]  # now live: the next events queue up unread
        await _write(service, 2, 40)
        await asyncio.sleep(0.5)  # the hub hands them over; the queue overflows and is dropped
        async for event in feed:
            seen.append(event.seq)
            if event.seq == 41:
                break
        await feed.aclose()
        assert service.hub is not None
        await service.hub.close()
        await client.aclose()
        return seen

    assert run(go()) == list(range(1, 42))


def test_an_unreadable_stream_cuts_off_only_its_own_subscribers(redis_client: Any, redis_url: str) -> None:
    async def go() -> tuple[list[int], bool]:
        service, client = await _service(redis_url)
        await service.create("default", {"id": "t2", "name": "broken"})
        await service.ingest("default", "t2", {"type": "x"})
        good = service.follow("default", "t1", after_seq=0, heartbeat_s=5)
        bad = service.follow("default", "t2", after_seq=1, heartbeat_s=5)
        bad_next = asyncio.create_task(bad.__anext__())
        await asyncio.sleep(0.3)  # both watched by the hub
        await client.delete("ty:trace:t2:events")
        await client.set("ty:trace:t2:events", "not a stream")  # corrupt the key under the hub
        ended = False
        try:
            await asyncio.wait_for(bad_next, 5)
        except StopAsyncIteration:
            ended = True
        await _write(service, 1, 3)
        seen = [(await good.__anext__()).seq for _ in range(3)]
        await good.aclose()
        assert service.hub is not None
        await service.hub.close()
        await client.aclose()
        return seen, ended

    seen, ended = run(go())
    assert seen == [1, 2, 3] and ended
