"""Admission, round-robin and bounds against a real Redis (no worker consumes: tasks stay pending)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from engine import keys
from engine.errors import NoOnlineWorkers, QueueFull, TaskNotFound, ValidationFailed, WorkerNotFound
from engine.service import TaskService
from engine.store import AsyncRunner, SyncRunner
from tests.integration.conftest import ServiceHarness, define


def test_exactly_the_bound_is_accepted_under_500_concurrent_submits(runner: SyncRunner, service: ServiceHarness,
                                                                   spec_factory) -> None:
    define(runner, spec_factory("w", max_queue_depth=50))

    async def burst(svc: TaskService) -> list[str]:
        # Given five independent clients (like five API replicas) submitting at once
        clients = [aioredis.from_url(service.url, decode_responses=True) for _ in range(5)]
        services = [TaskService(AsyncRunner(c), service.options) for c in clients]

        async def one(i: int) -> str:
            try:
                await services[i % 5].submit("default", {"prompt": f"t{i}", "worker": "w"})
                return "ok"
            except QueueFull:
                return "full"

        results = await asyncio.gather(*(one(i) for i in range(500)))
        for c in clients:
            await c.aclose()
        return results

    results = service(burst)
    assert results.count("ok") == 50 and results.count("full") == 450
    assert runner.client.zcard(keys.key("worker_active", worker="w")) == 50
    assert runner.client.llen(keys.key("dq_queue", worker="w")) == 50
    assert runner.client.zcard(keys.key("idx_all", project="default")) == 50


def test_full_queue_refusal_stores_nothing_and_says_why(runner: SyncRunner, service: ServiceHarness,
                                                        spec_factory) -> None:
    define(runner, spec_factory("w", max_queue_depth=1))
    service(lambda s: s.submit("default", {"prompt": "a"}))
    with pytest.raises(QueueFull) as info:
        service(lambda s: s.submit("default", {"prompt": "b"}))
    assert info.value.decision["skipped"] == [{"worker": "w", "reason": "full", "depth": 1, "bound": 1}]
    assert runner.client.zcard(keys.key("idx_all", project="default")) == 1


def test_no_online_workers_is_503_and_stores_nothing(runner: SyncRunner, service: ServiceHarness,
                                                     spec_factory) -> None:
    define(runner, spec_factory("w"), online=False)
    with pytest.raises(NoOnlineWorkers) as info:
        service(lambda s: s.submit("default", {"prompt": "a"}))
    assert info.value.decision["skipped"] == [{"worker": "w", "reason": "offline"}]
    assert runner.client.zcard(keys.key("idx_all", project="default")) == 0


def test_named_offline_worker_still_queues_and_unknown_is_404(runner: SyncRunner, service: ServiceHarness,
                                                              spec_factory) -> None:
    define(runner, spec_factory("w"), online=False)
    task, created = service(lambda s: s.submit("default", {"prompt": "a", "worker": "w"}))
    assert created and task.state == "pending" and task.worker_name == "w"
    with pytest.raises(WorkerNotFound):
        service(lambda s: s.submit("default", {"prompt": "a", "worker": "ghost"}))


def test_round_robin_alternates_in_name_order_and_skips_full(runner: SyncRunner, service: ServiceHarness,
                                                             spec_factory) -> None:
    define(runner, spec_factory("b"), spec_factory("a", max_queue_depth=2), spec_factory("c", auto=False))

    async def six(svc: TaskService) -> list[str]:
        return [(await svc.submit("default", {"prompt": str(i)}))[0].worker_name for i in range(6)]

    chosen = service(six)
    assert chosen[:4] == ["a", "b", "a", "b"]
    assert chosen[4:] == ["b", "b"]  # a is full at 2
    # The fifth submit's turn was a's: the decision records why it went to b instead.
    fifth = runner.client.zrevrange(keys.key("idx_all", project="default"), 1, 1)[0]
    task = service(lambda s: s.get("default", fifth))
    assert task.dispatch["policy"] == "round-robin" and task.dispatch["chosen"] == "b"
    assert task.dispatch["candidates"] == ["a", "b"]  # c takes no round-robin traffic (auto: false)
    assert task.dispatch["skipped"] == [{"worker": "a", "reason": "full", "depth": 2, "bound": 2}]


def test_round_robin_spreads_an_offline_workers_turns_evenly_over_the_others(
        runner: SyncRunner, service: ServiceHarness, spec_factory) -> None:
    # Given four auto workers of which w4 has no live process (scale-out drill, scripts/drill_scale_out.py)
    define(runner, *(spec_factory(w) for w in ("w1", "w2", "w3")))
    define(runner, spec_factory("w4"), online=False)

    async def submit(svc: TaskService) -> list[str]:
        return [(await svc.submit("default", {"prompt": str(i)}))[0].worker_name for i in range(90)]

    # When 90 tasks name no worker
    chosen = service(submit)
    # Then each online worker gets a third, not w1 its own turns plus every turn of w4
    assert {w: chosen.count(w) for w in ("w1", "w2", "w3", "w4")} == {"w1": 30, "w2": 30, "w3": 30, "w4": 0}
    assert chosen[:6] == ["w1", "w2", "w3", "w1", "w2", "w3"]


def test_idempotency_key_returns_the_first_task(runner: SyncRunner, service: ServiceHarness, spec_factory) -> None:
    define(runner, spec_factory("w"))
    first, created1 = service(lambda s: s.submit("default", {"prompt": "a", "idempotency_key": "k1"}))
    again, created2 = service(lambda s: s.submit("default", {"prompt": "other", "idempotency_key": "k1"}))
    assert created1 and not created2 and again.id == first.id and again.prompt == "a"
    assert runner.client.zcard(keys.key("idx_all", project="default")) == 1


def test_listing_is_newest_first_with_cursor_and_filters(runner: SyncRunner, service: ServiceHarness,
                                                         spec_factory) -> None:
    define(runner, spec_factory("a"), spec_factory("b"))

    async def fill(svc: TaskService) -> list[str]:
        return [(await svc.submit("default", {"prompt": str(i), "worker": "ab"[i % 2]}))[0].id for i in range(7)]

    ids = service(fill)
    page1, cursor = service(lambda s: s.list("default", state=None, worker=None, limit=3, cursor=None))
    page2, cursor2 = service(lambda s: s.list("default", state=None, worker=None, limit=3, cursor=cursor))
    page3, cursor3 = service(lambda s: s.list("default", state=None, worker=None, limit=3, cursor=cursor2))
    assert [t.id for t in page1 + page2 + page3] == ids[::-1]
    assert cursor3 is None
    only_b, _ = service(lambda s: s.list("default", state="pending", worker="b", limit=50, cursor=None))
    assert [t.id for t in only_b] == ids[1::2][::-1]
    none, _ = service(lambda s: s.list("default", state="completed", worker=None, limit=50, cursor=None))
    assert none == []
    with pytest.raises(ValidationFailed):
        service(lambda s: s.list("default", state="weird", worker=None, limit=5, cursor=None))


def test_projects_do_not_see_each_others_tasks(runner: SyncRunner, service: ServiceHarness, spec_factory) -> None:
    define(runner, spec_factory("w"))
    task, _ = service(lambda s: s.submit("alpha", {"prompt": "a"}))
    with pytest.raises(TaskNotFound):
        service(lambda s: s.get("beta", task.id))
    assert service(lambda s: s.list("beta", state=None, worker=None, limit=5, cursor=None))[0] == []


def test_cancel_pending_releases_depth(runner: SyncRunner, service: ServiceHarness, spec_factory) -> None:
    define(runner, spec_factory("w", max_queue_depth=1))
    task, _ = service(lambda s: s.submit("default", {"prompt": "a"}))
    cancelled = service(lambda s: s.cancel("default", task.id))
    assert cancelled.state == "cancelled"
    assert runner.client.zcard(keys.key("worker_active", worker="w")) == 0
    service(lambda s: s.submit("default", {"prompt": "b"}))  # room again


def test_removing_a_worker_fails_its_queued_tasks(runner: SyncRunner, service: ServiceHarness,
                                                  spec_factory) -> None:
    define(runner, spec_factory("w"))
    task, _ = service(lambda s: s.submit("default", {"prompt": "a", "worker": "w"}))
    assert service(lambda s: s.remove_worker("w")) == 1
    after = service(lambda s: s.get("default", task.id))
    assert after.state == "failed" and after.error == "worker removed"
    with pytest.raises(WorkerNotFound):
        service(lambda s: s.submit("default", {"prompt": "a", "worker": "w"}))


def test_a_worker_failing_health_checks_gets_no_round_robin_traffic(runner: SyncRunner, service: ServiceHarness,
                                                                    spec_factory) -> None:
    from engine import registry
    from engine.clock import now_ms

    a, b = spec_factory("a"), spec_factory("b")
    define(runner, a, b)
    runner.run(registry.heartbeat(proc_id="q" * 32, specs=[a], now_ms=now_ms(), ttl_ms=3000, host="h", pid=1,
                                  errors={"a": "health check failed: HTTP 500"}))

    async def four(svc: TaskService) -> list[str]:
        return [(await svc.submit("default", {"prompt": str(i)}))[0].worker_name for i in range(4)]

    assert service(four) == ["b"] * 4
    named, _ = service(lambda s: s.submit("default", {"prompt": "x", "worker": "a"}))
    assert named.worker_name == "a"  # a named task still waits for it
    (status,) = [w for w in service(lambda s: s.workers()) if w["name"] == "a"]
    assert status["state"] == "error" and status["errors"] == ["health check failed: HTTP 500"]
    runner.run(registry.heartbeat(proc_id="q" * 32, specs=[a], now_ms=now_ms(), ttl_ms=3000, host="h", pid=1))
    assert "a" in service(four)
