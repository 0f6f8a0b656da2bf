"""Usage records and agent heartbeats on a real Redis, below the HTTP layer: the stored format, chunked and capped
summing, records written by the trace store's format, and agent health at its exact boundaries (injected clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis

from config.telemetry import AgentHealthSpec
from engine import keys, usage
from engine.pricing import PriceBook
from engine.store import AsyncRunner
from engine.telemetry import TelemetryService
from engine.usage import UsageRecord

T = TypeVar("T")
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms


def run(redis_url: str, fn: Callable[[AsyncRunner], Awaitable[T]]) -> T:
    async def go() -> T:
        client = aioredis.from_url(redis_url, decode_responses=True)
        try:
            return await fn(AsyncRunner(client))
        finally:
            await client.aclose()

    return asyncio.run(go())


def record(agent: str, tokens_in: int = 1, cost: float = 0.0, **kw: Any) -> UsageRecord:
    return UsageRecord(agent=agent, model=kw.pop("model", "m"), tokens_in=tokens_in, tokens_out=kw.pop("out", 0),
                       cost_usd=cost, priced=kw.pop("priced", True), **kw)


def seed(redis_client: redis.Redis, count: int, project: str = "p") -> None:
    for i in range(count):
        redis_client.execute_command("XADD", keys.key("usage", project=project), f"{T0 + i}-0",
                                     *record(f"a{i % 3}", tokens_in=i, cost=0.5).fields())


def test_append_stores_a_batch_in_one_call_with_server_ids(redis_client: redis.Redis, redis_url: str) -> None:
    records = [record("a", 10, 0.0000375, model="x", worker="w", trace_id="t"), record("b", 20, 1.0, priced=False)]
    stored = run(redis_url, lambda r: r.run(usage.append("p", records, now_ms=T0)))
    assert [s.agent for s in stored] == ["a", "b"] and all(s.at_ms == T0 and s.id for s in stored)
    entries: Any = redis_client.xrange(keys.key("usage", project="p"))
    assert [e[0] for e in entries] == [s.id for s in stored]
    assert entries[0][1] == {"agent": "a", "model": "x", "worker": "w", "trace_id": "t", "tokens_in": "10",
                             "tokens_out": "0", "cost_usd": "0.0000375", "priced": "1", "at": str(T0)}
    assert entries[1][1]["priced"] == "0" and entries[1][1]["cost_usd"] == "1"


def test_summing_in_chunks_matches_one_pass(redis_client: redis.Redis, redis_url: str) -> None:
    seed(redis_client, 10)
    whole = run(redis_url, lambda r: usage.summarize(r, "p", group_by="agent", from_ms=None, to_ms=None))
    chunked = run(redis_url, lambda r: usage.summarize(r, "p", group_by="agent", from_ms=None, to_ms=None, chunk=3))
    assert whole.to_public() == chunked.to_public()
    assert {n: (g.records, g.tokens_in) for n, g in chunked.groups.items()} == {
        "a0": (4, 0 + 3 + 6 + 9), "a1": (3, 1 + 4 + 7), "a2": (3, 2 + 5 + 8)}
    assert chunked.totals.cost_usd == pytest.approx(5.0) and chunked.scanned == 10


def test_a_summary_past_the_cap_keeps_the_newest_part_and_says_so(redis_client: redis.Redis,
                                                                    redis_url: str) -> None:
    seed(redis_client, 10)
    capped = run(redis_url, lambda r: usage.summarize(r, "p", group_by="agent", from_ms=None, to_ms=None,
                                                        max_scanned=4, chunk=3)).to_public()
    assert capped["truncated"] is True and capped["scanned"] == 4
    assert capped["totals"]["tokens_in"] == 9 + 8 + 7 + 6  # the four newest
    assert capped["covered_from"] == "2026-01-01T00:00:00.006Z"
    exact = run(redis_url, lambda r: usage.summarize(r, "p", group_by="agent", from_ms=None, to_ms=None,
                                                       max_scanned=10, chunk=5)).to_public()
    assert exact["truncated"] is False and "covered_from" not in exact


def test_records_in_the_trace_store_format_sum_too(redis_client: redis.Redis, redis_url: str) -> None:
    # trace_ingest.lua writes repr(float) costs (possibly in exponent form) and the trace's agent and worker
    stream = keys.key("usage", project="p")
    redis_client.execute_command("XADD", stream, "*", "agent", "", "model", "gpt-4o", "worker", "w", "trace_id",
                                 "t" * 32, "tokens_in", "3", "tokens_out", "4", "cost_usd", "3.75e-08",
                                 "priced", "1", "at", str(T0))
    redis_client.execute_command("XADD", stream, "*", "agent", "", "model", "", "worker", "w", "trace_id", "t",
                                 "tokens_in", "5", "tokens_out", "6", "cost_usd", "0.0", "priced", "0", "at", str(T0))
    result = run(redis_url, lambda r: usage.summarize(r, "p", group_by="model", from_ms=None, to_ms=None))
    public = result.to_public()
    assert {g["model"]: (g["count"], g["unpriced"]) for g in public["groups"]} == {"gpt-4o": (1, 0), None: (1, 1)}
    assert public["totals"]["cost_usd"] == pytest.approx(3.75e-08)
    assert public["totals"]["tokens_out"] == 10


SHORT = AgentHealthSpec.model_validate({"degraded_after": "1m", "down_after": "3m"})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.mark.parametrize(("health", "age_ms", "status"), [
    (None, 0, "healthy"),
    (None, 119_999, "healthy"),
    (None, 120_000, "degraded"),
    (None, 299_999, "degraded"),
    (None, 300_000, "down"),
    (SHORT, 59_999, "healthy"),
    (SHORT, 60_000, "degraded"),
    (SHORT, 180_000, "down"),
])
def test_agent_health_boundaries(redis_client: redis.Redis, redis_url: str, health: AgentHealthSpec | None,
                                 age_ms: int, status: str) -> None:
    clock = Clock()

    async def go(runner: AsyncRunner) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        service = TelemetryService(runner, PriceBook.build(), health=health, clock=clock)
        await service.heartbeat("p", {"agent_id": "a"})
        clock.now = T0 + age_ms
        return await service.agents("p"), await service.agent("p", "a")

    listed, one = run(redis_url, go)
    assert [a["status"] for a in listed] == [status] and one["status"] == status
    assert one["age_seconds"] == age_ms / 1000


def test_a_late_heartbeat_from_a_slow_clock_never_moves_the_last_one_back(redis_client: redis.Redis,
                                                                           redis_url: str) -> None:
    clock = Clock()

    async def go(runner: AsyncRunner) -> dict[str, Any]:
        service = TelemetryService(runner, PriceBook.build(), clock=clock)
        await service.heartbeat("p", {"agent_id": "a"})
        clock.now = T0 - 10_000  # another replica whose clock lags
        return await service.heartbeat("p", {"agent_id": "a"})

    view = run(redis_url, go)
    assert view["last_heartbeat"] == "2026-01-01T00:00:00.000Z" and view["status"] == "healthy"
