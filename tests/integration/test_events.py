"""The event store on a real Redis: delivery dedupe under races, state moves, listing, and the job hook."""

from __future__ import annotations

import json
import threading

import redis

from engine import events, keys, tasks
from engine.clock import now_ms
from engine.ids import new_id
from engine.store import SyncRunner


def _receive(runner: SyncRunner, *, delivery: str | None = "d-1", source: str = "github",
             project: str = "default", type: str = "pull_request.opened") -> events.Received:
    return runner.run(events.receive(
        event_id=new_id(), project=project, source=source, delivery_id=delivery, now_ms=now_ms(), type=type,
        actor="octocat", subject="octo/repo#1", attrs={"number": 1, "labels": ["bug"]},
        raw_payload=json.dumps({"action": "opened", "number": 1})))


def _engine_jobs(client: redis.Redis) -> list[dict]:
    ids = client.lrange(keys.key("dq_engine"), 0, -1)
    return [json.loads(client.hget(keys.key("dq_engine_msgs"), mid)) for mid in ids]


def test_a_delivery_is_stored_once_and_queues_one_processing_job(runner: SyncRunner,
                                                                 redis_client: redis.Redis) -> None:
    first = _receive(runner)
    again = _receive(runner)
    assert first.created and not again.created
    assert again.event_id == first.event_id
    jobs = _engine_jobs(redis_client)
    assert [(j["actor_name"], j["args"]) for j in jobs] == [("process_event", [first.event_id])]
    assert jobs[0]["queue_name"] == keys.ENGINE_QUEUE
    event = runner.run(events.get(first.event_id))
    assert event is not None
    assert (event.state, event.type, event.actor, event.attrs) == (
        "received", "pull_request.opened", "octocat", {"number": 1, "labels": ["bug"]})
    assert event.payload == {"action": "opened", "number": 1}
    assert [h["state"] for h in event.history] == ["received"]


def test_two_copies_racing_make_one_event(redis_url: str, redis_client: redis.Redis) -> None:
    results: list[events.Received] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        runner = SyncRunner(redis.Redis.from_url(redis_url, decode_responses=True))
        barrier.wait()
        results.append(_receive(runner, delivery="same"))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.created for r in results) == 1
    assert len({r.event_id for r in results}) == 1
    assert redis_client.zcard(keys.key("ev_all", project="default")) == 1


def test_deliveries_without_an_id_are_never_deduplicated(runner: SyncRunner) -> None:
    assert _receive(runner, delivery=None).created
    assert _receive(runner, delivery=None).created


def test_update_moves_state_once_and_keeps_indexes_exact(runner: SyncRunner, redis_client: redis.Redis) -> None:
    event_id = _receive(runner).event_id
    assert runner.run(events.update(event_id=event_id, now_ms=now_ms(), state="dispatched", expect=("received",),
                                    detail="2 tasks", fields={"matches": "[]"})) == (True, "dispatched")
    # A second job racing to make the same move finds the event moved on.
    assert runner.run(events.update(event_id=event_id, now_ms=now_ms(), state="dispatched",
                                    expect=("received",))) == (False, "dispatched")
    assert runner.run(events.update(event_id=event_id, now_ms=now_ms(), state="completed",
                                    expect=("dispatched", "matched"))) == (True, "completed")
    assert redis_client.zrange(keys.key("ev_state", project="default", state="completed"), 0, -1) == [event_id]
    assert redis_client.zcard(keys.key("ev_state", project="default", state="received")) == 0
    assert redis_client.zcard(keys.key("ev_source_state", project="default", source="github",
                                       state="dispatched")) == 0
    event = runner.run(events.get(event_id))
    assert event is not None
    assert [(h["state"], h.get("detail")) for h in event.history] == [
        ("received", None), ("dispatched", "2 tasks"), ("completed", "")]
    assert runner.run(events.update(event_id=new_id(), now_ms=now_ms(), state="failed")) == (False, None)


def test_listing_is_newest_first_with_cursor_and_filters(runner: SyncRunner) -> None:
    made = [_receive(runner, delivery=f"d{i}", source="github" if i % 2 else "alerts").event_id for i in range(7)]
    runner.run(events.update(event_id=made[6], now_ms=now_ms(), state="skipped"))
    page, cursor = runner.run(events.list_page(project="default", state=None, source=None, below_seq=None,
                                               limit=4))
    assert [e.id for e in page] == made[::-1][:4]
    assert cursor is not None
    rest, end = runner.run(events.list_page(project="default", state=None, source=None, below_seq=cursor,
                                            limit=4))
    assert [e.id for e in rest] == made[::-1][4:]
    assert end is None
    assert all(e.payload is None for e in page)  # listings leave the raw payload out
    github, _ = runner.run(events.list_page(project="default", state=None, source="github", below_seq=None,
                                            limit=50))
    assert [e.id for e in github] == [made[5], made[3], made[1]]
    skipped, _ = runner.run(events.list_page(project="default", state="skipped", source="alerts",
                                             below_seq=None, limit=50))
    assert [e.id for e in skipped] == [made[6]]
    other, _ = runner.run(events.list_page(project="other", state=None, source=None, below_seq=None, limit=50))
    assert other == []


def test_a_task_made_by_an_event_queues_task_finished_when_it_ends(runner: SyncRunner,
                                                                   redis_client: redis.Redis) -> None:
    from config.settings import WorkerSpec
    from engine import registry

    runner.run(registry.register(WorkerSpec(name="w", handler="workers.builtin:echo"), source="test"))
    plain, linked = new_id(), new_id()
    for task_id, fields in ((plain, {}), (linked, {"event_id": "e" * 32})):
        result = runner.run(tasks.admit(
            task_id=task_id, project="default", now_ms=now_ms(), candidates=[("w", 10, 1, 60.0)],
            policy="named", rr_group="", require_online=False, online_since_ms=0, skipped=[],
            fields={"prompt": "p", **fields}, idempotency_key=None))
        assert result.status == "ok"
    for task_id in (plain, linked):
        applied, state = runner.run(tasks.finish(task_id=task_id, proc_id="", now_ms=now_ms(),
                                                 outcome="failed", text="boom", expect_state="pending"))
        assert (applied, state) == (True, "failed")
    assert [(j["actor_name"], j["args"]) for j in _engine_jobs(redis_client)] == [("task_finished", [linked])]
