"""Retention on a real Redis: the sweep deletes expired tasks, events, traces and usage records with everything
that belongs to them, and nothing else.

Records are made at the real time T0 through the same ops the service uses; the sweep's clock is set days
later (``days(n)``), so "7 days old" needs no waiting. Records are made in time order, as they are in life: the
sweep's walk ends at the first record created after its cutoff.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import Settings, WorkerSpec
from engine import events, keys, tasks, traces, usage
from engine.admission import admission
from engine.artifacts import LocalDiskStore
from engine.clock import now_ms
from engine.ids import new_id
from engine.pricing import PriceBook
from engine.retention import RetentionPolicy, RetentionSweep
from engine.store import SyncRunner
from engine.submit import parse_submit
from engine.trace_events import prepare_batch
from tests.integration.conftest import app_client, define
from workers.engine_queue import EngineQueue

DAY_MS = 86_400_000
WEEK = RetentionPolicy(tasks_ms=7 * DAY_MS, events_ms=7 * DAY_MS, traces_ms=7 * DAY_MS, usage_ms=30 * DAY_MS)
PROC = "c" * 32
BROKER = "retention-test"
T0 = now_ms()


def days(n: float) -> int:
    return T0 + int(n * DAY_MS)


class World:
    """Makes tasks, traces, events and usage at chosen times, through the engine's own ops."""

    def __init__(self, runner: SyncRunner) -> None:
        self.runner = runner
        self.spec = WorkerSpec(name="w", handler="workers.builtin:echo", max_queue_depth=10_000)
        define(runner, self.spec, proc=PROC)

    def submit(self, *, at: int = T0, project: str = "default", idem: str | None = None) -> str:
        task_id = new_id()
        request = parse_submit({"prompt": "p", "worker": "w", **({"idempotency_key": idem} if idem else {})})
        result = self.runner.run(admission(request, {"w": self.spec}, task_id=task_id, project=project, now_ms=at,
                                           default_bound=10_000, offline_after_ms=3_000))
        assert result.status == "ok", result
        return task_id

    def start(self, task_id: str, *, at: int = T0) -> None:
        """A worker process takes the task's message (the queue holds only this one) and claims it."""
        [(_, claim)] = self.runner.run(tasks.fetch_claim(worker="w", broker_id=BROKER, proc_id=PROC, now_ms=at,
                                                         max_lost=3, room=1))
        assert claim.task is not None and claim.task.id == task_id

    def finish(self, task_id: str, outcome: str = "completed", *, at: int = T0) -> None:
        mid = f"{task_id}-0"
        ack = tasks.Ack(keys.key("dq_acks", broker=BROKER, worker="w"), keys.key("dq_msgs", worker="w"), mid, mid)
        assert self.runner.run(tasks.finish(task_id=task_id, proc_id=PROC, now_ms=at, outcome=outcome, text="out",
                                            ack=ack)) == (True, outcome)

    def task(self, outcome: str = "completed", *, at: int = T0, done: int | None = None,
             traced: bool = True, **kw: Any) -> str:
        """A task run to ``outcome`` (its trace written as a worker does), submitted at ``at``, ended at ``done``."""
        task_id = self.submit(at=at, **kw)
        if outcome == "cancelled":
            assert self.runner.run(tasks.cancel(task_id=task_id, project=kw.get("project", "default"),
                                                now_ms=done or at))[0] == "cancelled"
            # a worker process then takes its message off the queue and drops it (the task is over)
            assert self.runner.run(tasks.fetch_claim(worker="w", broker_id=BROKER, proc_id=PROC, now_ms=at,
                                                     max_lost=3, room=1)) == []
            return task_id
        self.start(task_id, at=at)
        if traced:
            self.trace(task_id, at=at, task=True, project=kw.get("project", "default"))
        self.finish(task_id, outcome, at=done or at)
        return task_id

    def trace(self, trace_id: str | None = None, *, at: int = T0, task: bool = False, end: bool = True,
              project: str = "default") -> str:
        trace_id = trace_id or new_id()
        self.runner.run(traces.create(trace_id=trace_id, project=project, now_ms=at, name="run", agent="w",
                                      worker="w", task_id=trace_id if task else ""))
        batch: list[dict[str, Any]] = [
            {"type": "llm_call", "idempotency_key": f"{trace_id}:1",
             "payload": {"model": "gpt-4o", "tokens_in": 10, "tokens_out": 5}},
            {"type": "tool_call", "idempotency_key": f"{trace_id}:2", "payload": {"tool": "ls"}}]
        if end:
            batch.append({"type": "session_end", "payload": {"status": "completed"}})
        ready, rejected = prepare_batch(batch, prices=PriceBook.build(), max_event_bytes=100_000, now_ms=at)
        assert not rejected
        assert self.runner.run(traces.append(trace_id=trace_id, project=project, now_ms=at, events=ready)).found
        client = self.runner.client
        client.set(keys.key("trace_analysis", id=trace_id), json.dumps({"detections": []}))
        client.set(keys.key("trace_scan", id=trace_id), "1", px=DAY_MS)
        return trace_id

    def end(self, trace_id: str, *, at: int) -> None:
        ready, _ = prepare_batch([{"type": "session_end", "payload": {"status": "failed"}}],
                                 prices=PriceBook.build(), max_event_bytes=100_000, now_ms=at)
        assert self.runner.run(traces.append(trace_id=trace_id, project="default", now_ms=at, events=ready)).found

    def artifact(self, trace_id: str, store: LocalDiskStore) -> str:
        """An artifact of the trace as ArtifactService stores one: bytes on disk, then its metadata."""
        artifact_id = new_id()

        async def chunks() -> Any:
            yield b"screenshot bytes"

        asyncio.run(store.put(artifact_id, chunks()))
        client = self.runner.client
        client.hset(keys.key("artifact", id=artifact_id), mapping={"id": artifact_id, "trace_id": trace_id,
                                                                    "project": "default", "seq": 1})
        client.zadd(keys.key("trace_artifacts", id=trace_id), {artifact_id: 1})
        return artifact_id

    def event(self, state: str = "completed", *, at: int = T0, done: int | None = None,
              project: str = "default") -> str:
        event_id = new_id()
        assert self.runner.run(events.receive(
            event_id=event_id, project=project, source="github", delivery_id=new_id(), now_ms=at,
            type="pull_request.opened", actor="octocat", subject="o/r#1", attrs={"number": 1},
            raw_payload=json.dumps({"number": 1}))).created
        client = self.runner.client
        client.hset(keys.key("event_wb", id=event_id), "t:comment", "{}")
        client.hset(keys.key("event_deferred", id=event_id), "rule", "{}")
        if state != "received":
            assert self.runner.run(events.update(event_id=event_id, now_ms=done or at, state=state))[0]
        return event_id

    def sweep(self, at: int = days(8), policy: RetentionPolicy = WEEK, **kw: Any) -> dict[str, int]:
        report = RetentionSweep(self.runner, policy, clock=lambda: at, **kw).sweep()
        assert report.finished
        return report.deleted


@pytest.fixture()
def world(runner: SyncRunner) -> World:
    return World(runner)


def jobs_consumed(client: redis.Redis) -> None:
    """The engine queue's jobs (analyze_trace, task_finished) are consumed in production; here nobody runs them."""
    client.delete(keys.key("dq_engine"), keys.key("dq_engine_msgs"))


def mentions(client: redis.Redis, record_id: str) -> list[str]:
    """Every key whose name, member, field, value or element names ``record_id``, over the whole database.
    Streams are left out: the capped activity feed and audit trail mention ids until they are trimmed."""
    found = []
    for name in client.scan_iter(count=1000):
        kind = client.type(name)
        if record_id in name:
            found.append(name)
        elif kind == "string":
            found += [name] if record_id in (client.get(name) or "") else []
        elif kind == "hash":
            found += [name] if any(record_id in k or record_id in v for k, v in client.hgetall(name).items()) else []
        elif kind == "set":
            found += [name] if any(record_id in m for m in client.smembers(name)) else []
        elif kind == "zset":
            found += [name] if any(record_id in m for m in client.zrange(name, 0, -1)) else []
        elif kind == "list":
            found += [name] if any(record_id in m for m in client.lrange(name, 0, -1)) else []
    return found


def snapshot(client: redis.Redis) -> dict[str, Any]:
    return {name: client.dump(name) for name in client.scan_iter(count=1000)}


def test_expired_final_tasks_disappear_with_every_key_index_entry_and_their_trace(
        world: World, redis_client: redis.Redis, tmp_path: Path) -> None:
    # Given tasks that ended in each final state a week and a day ago, with traces, artifacts and idempotency keys
    store = LocalDiskStore(tmp_path / "artifacts")
    done = world.task("completed", idem="k1")
    failed = world.task("failed")
    cancelled = world.task("cancelled", idem="k2")
    artifact = world.artifact(done, store)
    assert store.path(artifact).exists() and redis_client.exists(keys.key("trace_events", id=done))
    jobs_consumed(redis_client)

    # When the sweep runs eight days later
    deleted = world.sweep(artifacts=store)

    # Then nothing anywhere names them any more, and the artifact's file is gone too
    assert deleted == {"tasks": 3, "events": 0, "traces": 0, "usage": 0}
    for task_id in (done, failed, cancelled, artifact):
        assert mentions(redis_client, task_id) == [], task_id
    assert not store.path(artifact).exists()
    assert redis_client.get(keys.key("idem", project="default", key="k1")) is None


def test_young_unfinished_and_late_finishing_tasks_stay(world: World, redis_client: redis.Redis) -> None:
    running = world.submit()
    world.start(running)
    expired = world.task("failed")
    late = world.task("completed", done=days(2))  # submitted at T0, ended six days before the sweep
    young = world.task("completed", at=days(3))
    pending = world.submit()  # (last: its message stays on the queue, where the next start would take it)

    assert world.sweep()["tasks"] == 1

    assert not redis_client.exists(keys.key("task", id=expired))
    for task_id, state in ((pending, "pending"), (running, "dispatched"), (late, "completed"), (young, "completed")):
        assert redis_client.hget(keys.key("task", id=task_id), "state") == state
        assert redis_client.zscore(keys.key("idx_all", project="default"), task_id) is not None
        assert redis_client.zscore(keys.key("idx_state", project="default", state=state), task_id) is not None
    assert redis_client.exists(keys.key("trace", id=late), keys.key("trace_events", id=young)) == 2


def test_an_idempotency_key_taken_over_by_a_newer_task_is_kept(world: World, redis_client: redis.Redis) -> None:
    world.task("completed", idem="same")
    newer = new_id()
    redis_client.set(keys.key("idem", project="default", key="same"), newer)
    assert world.sweep()["tasks"] == 1
    assert redis_client.get(keys.key("idem", project="default", key="same")) == newer


def test_expired_events_disappear_with_their_history_and_indexes(world: World, redis_client: redis.Redis) -> None:
    final = {state: world.event(state) for state in ("completed", "failed", "skipped", "write_back_failed",
                                                     "matched")}
    stuck = world.event("received")  # not final: the stuck-event sweep owns it
    open_ = world.event("dispatched")
    late = world.event("completed", done=days(2))
    jobs_consumed(redis_client)

    assert world.sweep()["events"] == 5

    for event_id in final.values():
        # the delivery dedupe key stays until it expires by itself, so a redelivery is still recognised
        [delivery] = mentions(redis_client, event_id)
        assert delivery.startswith("ty:delivery:") and 0 < redis_client.pttl(delivery) <= 7 * DAY_MS
    for event_id in (stuck, open_, late):
        assert redis_client.exists(keys.key("event", id=event_id), keys.key("event_history", id=event_id)) == 2
        assert redis_client.zscore(keys.key("ev_all", project="default"), event_id) is not None


def test_ended_traces_of_agents_expire_while_running_ones_and_those_of_stored_tasks_stay(
        world: World, redis_client: redis.Redis) -> None:
    ended = world.trace()
    task_id = world.task("completed", done=days(2))  # its trace is older than the period; the task is not
    orphan = world.trace(task=True)  # a task's trace whose task record is gone
    running = world.trace(end=False)
    young = world.trace(at=days(3))
    jobs_consumed(redis_client)

    assert world.sweep() == {"tasks": 0, "events": 0, "traces": 2, "usage": 0}

    assert mentions(redis_client, ended) == [] and mentions(redis_client, orphan) == []
    for trace_id in (running, young, task_id):
        assert redis_client.exists(keys.key("trace", id=trace_id), keys.key("trace_events", id=trace_id)) == 2
    # the walk remembers that the task's trace is its task's to delete, and does not read it again (up to the
    # running trace, which may end and expire later)
    mark = redis_client.hget(keys.key("retention_mark", project="default"), "traces")
    assert mark is not None and float(mark) >= redis_client.zscore(keys.key("tr_all", project="default"), task_id)
    # when the task goes, so does its trace
    assert world.sweep(at=days(10))["tasks"] == 1
    assert not redis_client.exists(keys.key("trace", id=task_id), keys.key("trace_events", id=task_id))


def test_a_trace_that_ends_after_newer_ones_were_swept_is_swept_in_its_turn(
        world: World, redis_client: redis.Redis) -> None:
    slow = world.trace(end=False)  # an agent run that goes on for a day
    world.task("completed", done=days(2))  # a stored task's trace, which the walk steps over
    world.trace()
    assert world.sweep()["traces"] == 1
    world.end(slow, at=days(1) - 1)  # it ends just inside the cutoff of a sweep at day 8
    jobs_consumed(redis_client)
    assert world.sweep()["traces"] == 1
    assert mentions(redis_client, slow) == []


def test_usage_records_older_than_the_period_are_trimmed(world: World, redis_client: redis.Redis) -> None:
    stream = keys.key("usage", project="default")
    for day in reversed(range(40)):  # one record a day for 40 days, the newest made at T0
        redis_client.xadd(stream, {"model": "m", "at": days(-day)}, id=f"{days(-day)}-0")
    # (written by hand to date them: the project is one the config names, so the sweep knows it)
    assert world.sweep(at=T0, known_projects={"default"})["usage"] == 10  # days -30 (at the cutoff) to -39
    kept = [int(entry_id.split("-")[0]) for entry_id, _ in redis_client.xrange(stream)]
    assert len(kept) == 30 and min(kept) > days(-30)


def test_a_period_of_zero_keeps_that_kind_forever(world: World, redis_client: redis.Redis) -> None:
    settings = Settings.model_validate({"retention": {"tasks": 0, "events": "0", "traces": None, "usage": "30d"}})
    policy = RetentionPolicy.from_settings(settings.retention)
    task_id, event_id, trace_id = world.task("completed"), world.event("completed"), world.trace()

    assert world.sweep(at=days(3650), policy=policy) == {"tasks": 0, "events": 0, "traces": 0, "usage": 2}
    assert redis_client.exists(keys.key("task", id=task_id), keys.key("event", id=event_id),
                               keys.key("trace", id=trace_id)) == 3
    assert not RetentionSweep(world.runner, RetentionPolicy()).enabled


def test_a_second_sweep_with_nothing_to_do_changes_nothing(world: World, redis_client: redis.Redis) -> None:
    for _ in range(3):
        world.task("completed"), world.task("failed", done=days(2)), world.event("failed"), world.trace()
    world.submit()
    world.event("received")
    first = world.sweep()
    assert first["tasks"] == 3 and first["events"] == 3 and first["traces"] == 3
    before = snapshot(redis_client)

    assert world.sweep() == {"tasks": 0, "events": 0, "traces": 0, "usage": 0}
    assert snapshot(redis_client) == before


def test_two_sweeps_at_once_delete_each_record_once_and_leave_consistent_indexes(
        world: World, redis_client: redis.Redis, redis_url: str) -> None:
    made = [world.task("completed", traced=i % 2 == 0) for i in range(60)]
    kept = [world.task("completed", done=days(2)) for _ in range(5)]
    gone = [world.event("completed") for _ in range(30)]
    start = threading.Barrier(2)
    reports = []

    def sweep() -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        sweeper = RetentionSweep(SyncRunner(client), WEEK, clock=lambda: days(8), batch=7)
        start.wait(timeout=10)
        reports.append(sweeper.sweep())
        client.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(r.deleted["tasks"] for r in reports) == len(made)
    assert sum(r.deleted["events"] for r in reports) == len(gone)
    listed = redis_client.zrange(keys.key("idx_all", project="default"), 0, -1)
    assert sorted(listed) == sorted(kept)
    assert redis_client.zrange(keys.key("idx_state", project="default", state="completed"), 0, -1) == listed
    assert redis_client.zcard(keys.key("ev_all", project="default")) == 0
    assert all(redis_client.hget(keys.key("task", id=t), "state") == "completed" for t in kept)
    assert not any(redis_client.exists(keys.key("task", id=t)) for t in made)


def test_a_sweep_out_of_time_leaves_the_rest_to_the_next_one(world: World) -> None:
    for _ in range(5):
        world.task("completed", traced=False)
    out_of_time = RetentionSweep(world.runner, WEEK, clock=lambda: days(8), budget_s=0.0).sweep()
    assert not out_of_time.finished and out_of_time.total == 0
    assert world.sweep(batch=2)["tasks"] == 5


def test_every_writer_registers_its_project(world: World, redis_client: redis.Redis) -> None:
    world.task("completed", project="alpha")
    world.event(project="beta")
    world.trace(project="gamma")
    world.runner.run(usage.append("delta", [usage.UsageRecord(agent="a", model="m", worker="", trace_id="",
                                                              tokens_in=1, tokens_out=1, cost_usd=0.0,
                                                              priced=False)], now_ms=T0))
    assert redis_client.smembers(keys.key("projects")) >= {"alpha", "beta", "gamma", "delta"}
    world.sweep()
    assert not redis_client.exists(keys.key("idx_all", project="alpha"), keys.key("ev_all", project="beta"),
                                   keys.key("tr_all", project="gamma"))


@pytest.fixture()
def app(tmp_path: Path, redis_client: redis.Redis, redis_url: str) -> Iterator[Any]:
    with app_client(tmp_path, "api_key: k\n", redis_url) as client:
        client.headers["X-API-Key"] = "k"
        yield client


def pages(client: Any, path: str, *, cursor: str | None = None, **params: str) -> list[str]:
    """Every id the listing answers, two at a time through X-Next-Cursor."""
    ids: list[str] = []
    while True:
        r = client.get(path, params={"limit": 2, **params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        ids += [item["id"] for item in r.json()]
        cursor = r.headers.get("X-Next-Cursor")
        if not cursor:
            return ids


def test_the_listings_no_longer_show_deleted_records_and_their_cursors_still_work(
        world: World, app: Any) -> None:
    # Given old tasks, events and sessions, then young ones
    old_tasks = [world.task("completed", traced=False) for _ in range(5)]
    old_events = [world.event("completed") for _ in range(5)]
    old_traces = [world.trace() for _ in range(5)]
    young_tasks = [world.task("completed", at=days(3), traced=False) for _ in range(3)]
    young_events = [world.event("completed", at=days(3)) for _ in range(3)]
    young_traces = [world.trace(at=days(3)) for _ in range(3)]
    # and cursors handed out before the sweep, pointing just before what it deletes
    cursors = {path: app.get(path, params={"limit": 3}).headers["X-Next-Cursor"]
               for path in ("/tasks", "/events", "/api/sessions")}
    assert pages(app, "/tasks") == list(reversed(old_tasks + young_tasks))

    world.sweep()

    assert pages(app, "/tasks") == list(reversed(young_tasks))
    assert pages(app, "/tasks", state="completed") == list(reversed(young_tasks))
    assert pages(app, "/events") == list(reversed(young_events))
    assert pages(app, "/api/sessions") == list(reversed(young_traces))
    for path in cursors:
        assert pages(app, path, cursor=cursors[path]) == []
    for task_id in old_tasks:
        assert app.get(f"/task/{task_id}").status_code == 404
    for event_id in old_events:
        assert app.get(f"/event/{event_id}").status_code == 404
    for trace_id in old_traces:
        assert app.get(f"/api/traces/{trace_id}").status_code == 404


@pytest.fixture()
def engine(redis_url: str, tmp_path: Path) -> Iterator[EngineQueue]:
    """The engine queue serve builds, with tasks kept for a day; its consumers are not started."""
    from api.engine_process import build_rules, engine_queue

    settings = Settings.model_validate({"data_dir": str(tmp_path), "retention": {"tasks": "1d"}})
    queue = engine_queue(settings, build_rules(settings, "taskyard.yaml")[0], redis_url)
    try:
        yield queue
    finally:
        queue.broker.close()
        queue.jobs.runner.close()  # type: ignore[attr-defined]


def test_the_engine_sweeps_with_the_configured_periods_one_process_at_a_time(
        world: World, redis_client: redis.Redis, engine: EngineQueue) -> None:
    assert engine.retainer is not None
    first = world.task("completed", at=days(-2))
    jobs_consumed(redis_client)
    engine._retain()  # the loop's step: takes the lock, sweeps
    assert not redis_client.exists(keys.key("task", id=first))
    second = world.task("completed", at=days(-2))
    engine._retain()  # another process's step within the minute: the lock is taken, it does nothing
    assert redis_client.exists(keys.key("task", id=second))
    redis_client.delete(keys.key("lock", name="retention"))  # the minute is over
    engine._retain()
    assert not redis_client.exists(keys.key("task", id=second))


def test_a_backlog_bigger_than_one_sweep_is_cleared_by_further_sweeps_seconds_apart_not_a_minute(
        world: World, redis_client: redis.Redis, engine: EngineQueue) -> None:
    assert engine.retention is not None
    # One record per script call and 10 ms a sweep: 400 expired tasks take several sweeps.
    engine.retention.batch, engine.retention.budget_s = 1, 0.01
    engine.retention_pause_s = 0.05
    made = [world.task("completed", at=days(-2), traced=False) for _ in range(400)]
    jobs_consumed(redis_client)
    reports = engine._retain()
    assert len(reports) > 1 and not reports[0].finished and reports[-1].finished
    assert sum(r.deleted["tasks"] for r in reports) == len(made)
    assert not any(redis_client.exists(keys.key("task", id=t)) for t in made)
    assert redis_client.pttl(keys.key("lock", name="retention")) > 0  # still held: no other process sweeps

    # Stopping the loop ends the catch-up at once, with the rest left for the next sweep.
    engine.retention_pause_s = 60.0
    rest = [world.task("completed", at=days(-2), traced=False) for _ in range(400)]
    redis_client.delete(keys.key("lock", name="retention"))
    assert engine.retainer is not None
    result: list[list[Any]] = []
    catching_up = threading.Thread(target=lambda: result.append(engine._retain()))
    catching_up.start()
    engine.retainer.stop()
    catching_up.join(timeout=5)
    assert not catching_up.is_alive() and len(result[0]) == 1 and not result[0][0].finished
    assert 0 < sum(not redis_client.exists(keys.key("task", id=t)) for t in rest) < len(rest)
