"""The activity feed is written by the same Lua call as each change it reports."""

from __future__ import annotations

import pytest
import redis

from engine import activity, incidents, runs
from engine.detectors.model import Detection
from engine.ids import new_id
from engine.store import SyncRunner

pytestmark = pytest.mark.integration


def test_incidents_and_runs_leave_entries_in_their_projects_feed(redis_client: redis.Redis) -> None:
    runner = SyncRunner(redis_client)
    detection = Detection(failure_class="loop", signature="tool:x", confidence=1.0, evidence=(1,),
                          critical_step_seq=1, summary="s", detector_version="t/1")
    [created] = runner.run(incidents.record(project="p", trace_id="t1", task_id=None, worker="w", cost_usd=0.0,
                                            detections=[detection], now_ms=1))
    runner.run(incidents.record(project="p", trace_id="t1", task_id=None, worker="w", cost_usd=0.0,
                                detections=[detection], now_ms=2))  # the same trace again: a duplicate, no entry
    run = runner.run(runs.create("fix", incident_id=created.incident_id, project="p", run_id=new_id(), now_ms=3,
                                 fields={}))
    assert run is not None
    runner.run(runs.update("fix", run.run_id, now_ms=4, fields={"status": "running"}))
    runner.run(runs.update("fix", run.run_id, now_ms=5, fields={"plan": "x"}))  # no status change: no entry
    feed = runner.run(activity.read_after("p", "0-0", count=100))
    assert [(e.kind, e.state) for e in feed] == [("incident", "created"), ("fix_run", "queued"),
                                                 ("fix_run", "running")]
    assert feed[0].to_public()["failure_class"] == "loop" and feed[1].to_public()["incident_id"] == created.incident_id
    assert runner.run(activity.read_after("other", "0-0", count=100)) == []


def test_a_retried_task_counts_as_created_once_and_triage_says_the_class(redis_client: redis.Redis) -> None:
    from config.settings import WorkerSpec
    from engine import registry, tasks
    from engine.admission import admission
    from engine.clock import now_ms
    from engine.models import SubmitRequest

    runner = SyncRunner(redis_client)
    spec = WorkerSpec(name="w", command=["true"], max_retries=3)
    runner.run(registry.register(spec, source="config"))
    task_id = new_id()
    admitted = runner.run(admission(SubmitRequest(prompt="p", worker="w"), {"w": spec}, task_id=task_id,
                                    project="p", now_ms=now_ms(), default_bound=10, offline_after_ms=3000))
    assert admitted.status == "ok"
    assert runner.run(tasks.claim(task_id=task_id, proc_id="proc", now_ms=now_ms(), max_lost=5)).task is not None
    runner.run(tasks.finish(task_id=task_id, proc_id="proc", now_ms=now_ms(), outcome="retry", text="x",
                            retry_at_ms=now_ms()))  # back to pending: not a new task
    runner.run(tasks.finish(task_id=task_id, proc_id="", now_ms=now_ms(), outcome="failed", text="x",
                            expect_state="pending"))
    stats = runner.run(activity.task_stats("p", now_ms=now_ms(), minutes=2))
    assert sum(m["created"] for m in stats) == 1 and sum(m["failed"] for m in stats) == 1
    states = [e.state for e in runner.run(activity.read_after("p", "0-0", count=100)) if e.subject == task_id]
    assert states[0] == "pending" and states[-1] == "failed" and states.count("pending") >= 2

    detection = Detection(failure_class="crash", signature="boom", confidence=1.0, evidence=(1,),
                          critical_step_seq=1, summary="s", detector_version="t/1")
    [created] = runner.run(incidents.record(project="p", trace_id="t9", task_id=None, worker="w", cost_usd=0.0,
                                            detections=[detection], now_ms=1))
    runner.run(incidents.update(created.incident_id, project="p", status="acknowledged", owner=None,
                                set_owner=False, by="t", now_ms=2))
    runner.run(incidents.update(created.incident_id, project="p", status=None, owner="ana", set_owner=True,
                                by="t", now_ms=3))
    triage = [e.to_public() for e in runner.run(activity.read_after("p", "0-0", count=100))
              if e.kind == "incident"]
    assert [(e["state"], e["failure_class"]) for e in triage] == [
        ("created", "crash"), ("acknowledged", "crash"), ("acknowledged", "crash")]
