"""The incident store on a real Redis: first occurrence decided once under concurrency, duplicates not counted
twice, resolved incidents regressing, project isolation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from engine import incidents
from engine.detectors.model import Detection
from engine.incident_service import IncidentService
from engine.store import AsyncRunner, SyncRunner

pytestmark = pytest.mark.integration

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch milliseconds


def detection(cls: str = "loop", signature: str = "grep{'q': 'x'}", **kw: Any) -> Detection:
    fields: dict[str, Any] = {"confidence": 0.9, "evidence": (3, 4, 5), "critical_step_seq": 5,
                              "summary": f"{cls} in the run", "detector_version": "1"}
    fields.update(kw)
    return Detection(failure_class=cls, signature=signature, **fields)


def record(runner: SyncRunner, trace: str, *dets: Detection, project: str = "default", task: str | None = None,
           worker: str = "w1", cost: float = 0.0, now: int = NOW) -> list[incidents.Outcome]:
    return runner.run(incidents.record(project=project, trace_id=trace, task_id=task, worker=worker, cost_usd=cost,
                                       detections=list(dets), now_ms=now))


def read(runner: SyncRunner, incident_id: str, project: str = "default") -> incidents.Incident:
    found = runner.run(incidents.get(incident_id, project=project))
    assert found is not None
    return found


def test_twenty_racing_recorders_make_one_incident_and_one_created(redis_client: redis.Redis,
                                                                   redis_url: str) -> None:
    # Given 20 threads, each with its own connection, recording the same class and signature for its own trace
    barrier = threading.Barrier(20)
    outcomes: list[incidents.Outcome] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            runner = SyncRunner(client)
            barrier.wait(timeout=10)
            got = record(runner, f"trace-{n}", detection(), task=f"task-{n}", cost=0.5, now=NOW + n)
            with lock:
                outcomes.extend(got)
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Then exactly one of them created the incident, every other one counted into it
    assert sorted(o.kind for o in outcomes) == ["created"] + ["updated"] * 19
    assert len({o.incident_id for o in outcomes}) == 1
    assert [o.alert for o in outcomes].count(True) == 1
    incident = read(SyncRunner(redis_client), outcomes[0].incident_id)
    assert incident.count == 20 and incident.trace_count == 20 and incident.task_count == 20
    assert incident.cost_wasted_usd == pytest.approx(10.0)
    assert incident.status == "open" and len(incident.history or ()) == 1


def test_the_same_trace_twice_is_a_duplicate_and_its_cost_counts_once_at_its_largest(redis_client: redis.Redis) -> None:
    runner = SyncRunner(redis_client)
    [first] = record(runner, "t1", detection(), task="task-1", cost=0.25)
    [again] = record(runner, "t1", detection(), task="task-1", cost=0.75, now=NOW + 10)  # the run went on
    [stale] = record(runner, "t1", detection(), task="task-1", cost=0.5, now=NOW + 20)
    assert (first.kind, again.kind, stale.kind) == ("created", "duplicate", "duplicate")
    assert again.incident_id == first.incident_id and not again.alert
    incident = read(runner, first.incident_id)
    assert incident.count == 1 and incident.trace_count == 1 and incident.task_count == 1
    assert incident.cost_wasted_usd == pytest.approx(0.75)
    assert incident.last_seen_ms == NOW  # a duplicate is no activity
    [other] = record(runner, "t2", detection(), cost=0.25, now=NOW + 30)
    assert other.kind == "updated"
    incident = read(runner, first.incident_id)
    assert incident.count == 2 and incident.cost_wasted_usd == pytest.approx(1.0)
    assert incident.traces == ("t2", "t1") and incident.tasks == ("task-1",)
    assert incident.last_seen_ms == NOW + 30 and incident.first_seen_ms == NOW


def test_a_resolved_incident_regresses_when_its_signature_comes_back(redis_client: redis.Redis) -> None:
    runner = SyncRunner(redis_client)
    [created] = record(runner, "t1", detection("crash", "KeyError: <str>"))
    resolved = runner.run(incidents.update(created.incident_id, project="default", status="resolved", owner=None,
                                           set_owner=False, by="key:abc", now_ms=NOW + 1))
    assert resolved is not None and resolved.previous_status == "open"
    # An old trace analysed again does not reopen it
    [old] = record(runner, "t1", detection("crash", "KeyError: <str>"), now=NOW + 2)
    assert old.kind == "duplicate" and read(runner, created.incident_id).status == "resolved"
    [back] = record(runner, "t2", detection("crash", "KeyError: <str>"), now=NOW + 3)
    assert back.kind == "regressed" and back.alert and back.incident_id == created.incident_id
    [more] = record(runner, "t3", detection("crash", "KeyError: <str>"), now=NOW + 4)
    assert more.kind == "updated" and not more.alert
    incident = read(runner, created.incident_id)
    assert incident.status == "regressed" and incident.regressions == 1 and incident.count == 3
    assert [(h["field"], h["from"], h["to"], h["by"]) for h in incident.history or ()] == [
        ("status", None, "open", "taskyard"), ("status", "open", "resolved", "key:abc"),
        ("status", "resolved", "regressed", "taskyard")]
    assert (incident.history or ())[2]["trace_id"] == "t2"
    regressed, _ = runner.run(incidents.list_page(project="default", status="regressed", failure_class=None,
                                                  worker=None, below_seq=None, limit=10))
    gone, _ = runner.run(incidents.list_page(project="default", status="resolved", failure_class=None, worker=None,
                                             below_seq=None, limit=10))
    assert [i.id for i in regressed] == [created.incident_id] and gone == []


def test_one_trace_with_several_detections_and_the_representative_evidence(redis_client: redis.Redis) -> None:
    runner = SyncRunner(redis_client)
    got = record(runner, "t1", detection("loop", "a"), detection("tool_error", "grep:timeout", evidence=(7,),
                                                                   critical_step_seq=None), detection("loop", "b"))
    assert [o.kind for o in got] == ["created"] * 3 and len({o.incident_id for o in got}) == 3
    tool = read(runner, got[1].incident_id)
    assert tool.evidence == (7,) and tool.critical_step_seq is None and tool.trace_id == "t1"
    assert tool.summary == "tool_error in the run" and tool.detector_version == "1" and tool.workers == ("w1",)
    record(runner, "t2", detection("tool_error", "grep:timeout", evidence=(99,)), worker="w2", now=NOW + 5)
    tool = read(runner, got[1].incident_id)
    assert tool.evidence == (7,) and tool.trace_id == "t1"  # the first occurrence stays representative
    assert tool.workers == ("w2", "w1")


def test_the_same_signature_in_two_projects_makes_two_incidents(redis_client: redis.Redis) -> None:
    runner = SyncRunner(redis_client)
    [a] = record(runner, "t1", detection(), project="a")
    [b] = record(runner, "t1", detection(), project="b")
    assert a.kind == b.kind == "created" and a.incident_id != b.incident_id
    assert runner.run(incidents.get(a.incident_id, project="b")) is None
    assert runner.run(incidents.update(a.incident_id, project="b", status="resolved", owner=None, set_owner=False,
                                       by="x", now_ms=NOW)) is None
    assert read(runner, a.incident_id, project="a").status == "open"


def test_bad_detections_are_refused_before_redis(redis_client: redis.Redis) -> None:
    runner = SyncRunner(redis_client)
    with pytest.raises(ValueError, match="unknown failure class"):
        record(runner, "t1", detection("bogus"))
    with pytest.raises(ValueError, match="cost_usd"):
        record(runner, "t1", detection(), cost=float("nan"))
    assert record(runner, "t1") == []
    assert redis_client.keys("ty:*incident*") == []


def test_the_service_records_racing_coroutines_into_one_incident(redis_client: redis.Redis, redis_url: str) -> None:
    # Given 20 coroutines on one AsyncRunner (their scripts share a pipeline, each still atomic)
    async def go() -> list[incidents.Outcome]:
        client = aioredis.from_url(redis_url, decode_responses=True)
        try:
            service = IncidentService(AsyncRunner(client), playbooks={})
            batches = await asyncio.gather(*(
                service.record("default", f"trace-{n}", None, "agent-7", 0.1, [detection("token_budget", "")], NOW)
                for n in range(20)))
            assert await service.record("default", "trace-0", None, "agent-7", 0.1, [], NOW) == []
            return [o for batch in batches for o in batch]
        finally:
            await client.aclose()

    outcomes = asyncio.run(go())
    assert sorted(o.kind for o in outcomes) == ["created"] + ["updated"] * 19
    incident = read(SyncRunner(redis_client), outcomes[0].incident_id)
    assert incident.count == 20 and incident.workers == ("agent-7",) and incident.task_count == 0


def test_an_incident_that_recurs_forever_names_its_newest_members_and_counts_them_all(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cap of 3 named traces and tasks (the soak drill found an incident's sets growing by 200 a second)
    monkeypatch.setattr(incidents, "MAX_MEMBERS", 3)
    runner = SyncRunner(redis_client)
    # When 5 traces recur, each with its task and a cost, and the newest is analysed again
    for n in range(5):
        (outcome,) = record(runner, f"trace-{n}", detection(), task=f"task-{n}", cost=1.0, now=NOW + n)
    again = record(runner, "trace-4", detection(), task="task-4", cost=1.0, now=NOW + 9)
    # Then the counts are exact, the sets hold the 3 newest, and the dropped traces' costs went with them
    found = read(runner, outcome.incident_id)
    assert again[0].kind == "duplicate"
    assert (found.count, found.trace_count, found.task_count) == (5, 5, 5)
    assert set(found.traces) == {"trace-2", "trace-3", "trace-4"}
    assert set(found.tasks) == {"task-2", "task-3", "task-4"}
    costs = redis_client.hgetall(f"ty:incident:{outcome.incident_id}:costs")
    assert set(costs) == {"trace-2", "trace-3", "trace-4"}
    assert found.cost_wasted_usd == pytest.approx(5.0)


def test_an_incident_recorded_before_the_counters_existed_starts_them_at_its_sets_size(
        redis_client: redis.Redis) -> None:
    # Given an incident of 2 traces and tasks whose hash lacks the counters (as one stored by an older release)
    runner = SyncRunner(redis_client)
    for n in range(2):
        (outcome,) = record(runner, f"trace-{n}", detection(), task=f"task-{n}", now=NOW + n)
    redis_client.hdel(f"ty:incident:{outcome.incident_id}", "trace_count", "task_count")
    assert read(runner, outcome.incident_id).trace_count == 2  # answered from the sets' sizes
    # When a third occurrence is counted
    record(runner, "trace-2", detection(), task="task-2", now=NOW + 2)
    # Then the counters start from the sets and count it
    found = read(runner, outcome.incident_id)
    assert (found.trace_count, found.task_count) == (3, 3)
