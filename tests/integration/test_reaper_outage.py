"""The reaper after a Redis outage: heartbeats that went stale while the store was away say nothing about the
processes, so no live process is declared gone (and none of its running tasks runs twice) because of them.
Found by scripts/drill_redis_restart.py: after a 5 s restart, live workers lost their running tasks."""

from __future__ import annotations

from typing import Any

import pytest

from engine import keys, tasks
from engine.clock import now_ms
from engine.errors import StoreUnavailable
from engine.reaper import Reaper, ReaperOptions
from engine.store import Op, SyncRunner
from tests.integration.conftest import OFFLINE_AFTER_MS, ServiceHarness, define

A = "a" * 32


class Store:
    """The test Redis behind a switch: every op fails while ``away``; ``uptime_s`` (when set) is what INFO says."""

    def __init__(self, runner: SyncRunner, *, uptime_s: int | None = None) -> None:
        self.runner = runner
        self.away = False
        self.uptime_s = uptime_s

    def run(self, op: Op[Any]) -> Any:
        if self.away:
            raise StoreUnavailable("store unavailable: ConnectionError")
        if self.uptime_s is not None and op.command == ("INFO", "server"):
            return op.parse({"uptime_in_seconds": self.uptime_s})
        return self.runner.run(op)


def reaper(store: Store) -> Reaper:
    return Reaper(store, ReaperOptions(offline_after_ms=OFFLINE_AFTER_MS, task_expiry_ms=3_600_000, max_lost=3),
                  owner="test")


def running_task_of_a_stale_process(runner: SyncRunner, service: ServiceHarness, spec_factory) -> str:
    """A task process A runs, with A's heartbeat expired and its last score old (as after an outage)."""
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    assert runner.run(tasks.claim(task_id=task.id, proc_id=A, now_ms=now_ms(), max_lost=3)).task is not None
    runner.client.delete(keys.key("proc", proc=A))
    runner.client.zadd(keys.key("worker_procs", worker="w"), {A: now_ms() - 10 * OFFLINE_AFTER_MS})
    return task.id


def state_and_owner(runner: SyncRunner, task_id: str) -> list[Any]:
    return runner.client.hmget(keys.key("task", id=task_id), ["state", "owner"])


def test_no_process_is_reaped_within_an_offline_window_of_redis_coming_back(
        runner: SyncRunner, service: ServiceHarness, spec_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a reaper that found Redis unreachable, and a process whose heartbeats went stale meanwhile
    store = Store(runner)
    r = reaper(store)
    store.away = True
    with pytest.raises(StoreUnavailable):
        r.tick()
    store.away = False
    task_id = running_task_of_a_stale_process(runner, service, spec_factory)

    # When it passes again as soon as Redis answers
    done = r.tick()

    # Then the process keeps its task: it has not had a chance to heartbeat yet
    assert done["dead_processes"] == 0 and done["requeued"] == 0
    assert state_and_owner(runner, task_id) == ["dispatched", A]

    # And once a whole offline window has passed with Redis there and still no heartbeat, it is gone
    later = now_ms() + OFFLINE_AFTER_MS
    monkeypatch.setattr("engine.reaper.now_ms", lambda: later)
    runner.client.delete(keys.key("lock", name="reaper"))
    assert r.tick()["dead_processes"] == 1
    assert state_and_owner(runner, task_id) == ["pending", None]


def test_no_process_is_reaped_while_redis_has_been_up_for_less_than_an_offline_window(
        runner: SyncRunner, service: ServiceHarness, spec_factory) -> None:
    # Given Redis restarted a second ago and reloaded a heartbeat that went stale while it was down
    task_id = running_task_of_a_stale_process(runner, service, spec_factory)
    store = Store(runner, uptime_s=1)

    # When a reaper that never saw the outage (a serve started since) passes
    done = reaper(store).tick()

    # Then the process keeps its task
    assert done["dead_processes"] == 0
    assert state_and_owner(runner, task_id) == ["dispatched", A]

    # And once Redis has been up for an offline window, the stale process is gone
    store.uptime_s = OFFLINE_AFTER_MS // 1000
    runner.client.delete(keys.key("lock", name="reaper"))
    assert reaper(store).tick()["dead_processes"] == 1
    assert state_and_owner(runner, task_id) == ["pending", None]


def test_round_robin_tasks_stay_on_their_worker_while_redis_has_just_restarted(
        runner: SyncRunner, service: ServiceHarness, spec_factory) -> None:
    # Given a worker whose last heartbeat Redis reloaded two minutes stale after a restart, and another online
    define(runner, spec_factory("a"), proc=A)
    rr, _ = service(lambda s: s.submit("default", {"prompt": "anyone"}))
    runner.client.delete(keys.key("proc", proc=A))
    runner.client.zadd(keys.key("worker_procs", worker="a"), {A: now_ms() - 120_000})
    runner.client.set(keys.key("worker_seen", worker="a"), now_ms() - 120_000)
    define(runner, spec_factory("b"), proc="b" * 32)

    # When a reaper passes while Redis has been up for a second
    done = reaper(Store(runner, uptime_s=1)).tick()

    # Then its pending round-robin task is not moved away: a's process may be about to heartbeat again
    assert done["redispatched"] == 0
    assert service(lambda s: s.get("default", rr.id)).worker_name == "a"
