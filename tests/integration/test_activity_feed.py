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
