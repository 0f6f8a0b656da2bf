"""The incident endpoints of the real app on a real Redis: listing order, filters and cursor, the detail with
evidence and playbook, PATCH validation (422) and history, scopes and project isolation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from api.auth import key_id
from engine import incidents
from engine.detectors.model import FAILURE_CLASSES, Detection
from engine.store import SyncRunner
from tests.answers import reason
from tests.integration.conftest import app_client

pytestmark = pytest.mark.integration

CONFIG = """
api_keys:
  - {key: k-admin}
  - {key: k-other, project: other}
  - {key: k-reader, scopes: [read]}
  - {key: k-submit, scopes: [submit]}
"""
ADMIN = {"X-API-Key": "k-admin"}
OTHER = {"X-API-Key": "k-other"}
READER = {"X-API-Key": "k-reader"}
SUBMIT = {"X-API-Key": "k-submit"}
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch milliseconds


@pytest.fixture()
def client(tmp_path: Path, redis_client: redis.Redis, redis_url: str) -> Iterator[TestClient]:
    with app_client(tmp_path, CONFIG, redis_url) as c:
        yield c


@pytest.fixture()
def runner(redis_client: redis.Redis) -> SyncRunner:
    return SyncRunner(redis_client)


def occur(runner: SyncRunner, trace: str, cls: str = "loop", signature: str = "sig", *, worker: str = "w1",
          project: str = "default", task: str | None = None, cost: float = 0.0, now: int = NOW) -> str:
    """Record one detection for ``trace``; the incident's id."""
    det = Detection(failure_class=cls, signature=signature, confidence=0.8, evidence=(2, 3), critical_step_seq=3,
                    summary=f"{cls}: {signature}", detector_version="2")
    [outcome] = runner.run(incidents.record(project=project, trace_id=trace, task_id=task, worker=worker,
                                            cost_usd=cost, detections=[det], now_ms=now))
    return outcome.incident_id


def ids(answer: Any) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [i["id"] for i in answer.json()]


def test_listing_is_newest_activity_first_with_a_cursor(client: TestClient, runner: SyncRunner) -> None:
    a = occur(runner, "t1", signature="a")
    b = occur(runner, "t2", signature="b")
    c = occur(runner, "t3", signature="c")
    assert ids(client.get("/api/incidents", headers=ADMIN)) == [c, b, a]
    occur(runner, "t4", signature="a", now=NOW + 60_000)  # new activity moves `a` to the top
    assert ids(client.get("/api/incidents", headers=ADMIN)) == [a, c, b]
    page = client.get("/api/incidents", params={"limit": 2}, headers=ADMIN)
    assert ids(page) == [a, c]
    rest = client.get("/api/incidents", params={"limit": 2, "cursor": page.headers["x-next-cursor"]}, headers=ADMIN)
    assert ids(rest) == [b] and "x-next-cursor" not in rest.headers
    listed = client.get("/api/incidents", headers=ADMIN).json()[0]
    assert listed["count"] == 2 and listed["trace_count"] == 2 and listed["traces"] == ["t4", "t1"]
    assert listed["first_seen"] == "2026-01-01T00:00:00.000Z" and listed["last_seen"] == "2026-01-01T00:01:00.000Z"
    assert listed["representative"] == {"trace_id": "t1", "task_id": None, "worker": "w1"}
    assert "playbook" not in listed and "history" not in listed


def test_filters_by_status_class_and_worker_combine(client: TestClient, runner: SyncRunner) -> None:
    loop_w1 = occur(runner, "t1", "loop", "x", worker="w1")
    crash_w1 = occur(runner, "t2", "crash", "y", worker="w1")
    loop_w2 = occur(runner, "t3", "loop", "z", worker="w2")
    occur(runner, "t4", "crash", "y", worker="w2")  # crash_w1 now affects w1 and w2
    client.patch(f"/api/incidents/{loop_w2}", json={"status": "acknowledged"}, headers=ADMIN)

    def listed(**params: str) -> list[str]:
        return ids(client.get("/api/incidents", params=params, headers=ADMIN))

    assert listed(**{"class": "loop"}) == [loop_w2, loop_w1]
    assert listed(worker="w2") == [crash_w1, loop_w2]
    assert listed(worker="w1") == [crash_w1, loop_w1]
    assert listed(status="open") == [crash_w1, loop_w1]
    assert listed(status="acknowledged", **{"class": "loop"}) == [loop_w2]
    assert listed(status="open", worker="w2") == [crash_w1]
    assert listed(status="open", worker="w2", **{"class": "loop"}) == []
    assert listed(status="resolved") == []
    # a filtered page can be paged too
    page = client.get("/api/incidents", params={"worker": "w1", "status": "open", "limit": 1}, headers=ADMIN)
    assert ids(page) == [crash_w1]
    rest = client.get("/api/incidents", params={"worker": "w1", "status": "open",
                                                "cursor": page.headers["x-next-cursor"]}, headers=ADMIN)
    assert ids(rest) == [loop_w1]
    for params, message in [({"status": "closed"}, "invalid status"), ({"class": "nope"}, "invalid class"),
                            ({"limit": "0"}, "invalid limit"), ({"cursor": "x"}, "invalid cursor"),
                            ({"worker": "a b"}, "invalid worker")]:
        answer = client.get("/api/incidents", params=params, headers=ADMIN)
        assert answer.status_code == 400 and answer.json()["error"].startswith(message)


def test_a_filtered_page_stops_at_its_scan_budget_with_a_cursor(runner: SyncRunner) -> None:
    # Given worker w1's index (the smallest) holding one crash under five newer loops
    wanted = occur(runner, "t0", "crash", "wanted", worker="w1")
    for n in range(5):
        occur(runner, f"l{n}", "loop", f"loop-{n}", worker="w1")
    for n in range(6):
        occur(runner, f"c{n}", "crash", f"other-{n}", worker="w2")

    def page(below: int | None) -> tuple[list[str], int | None]:
        found, cursor = runner.run(incidents.list_page(
            project="default", status=None, failure_class="crash", worker="w1", below_seq=below, limit=10,
            scan_budget=3))
        return [i.id for i in found], cursor

    # When pages examine at most 3 incidents each, then they are short but lead on to the match
    first, cursor = page(None)
    assert first == [] and cursor is not None
    second, cursor = page(cursor)
    assert second == [wanted] and cursor is not None
    assert page(cursor) == ([], None)


def test_detail_has_evidence_history_and_the_playbook_of_every_class(client: TestClient,
                                                                        runner: SyncRunner) -> None:
    for n, cls in enumerate(FAILURE_CLASSES):
        incident_id = occur(runner, f"t{n}", cls, "s", task=f"task-{n}", cost=0.125)
        answer = client.get(f"/api/incidents/{incident_id}", headers=READER)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["failure_class"] == cls and body["summary"] == f"{cls}: s"
        assert body["playbook"].startswith(f"# {cls}\n") and "**Fix.**" in body["playbook"]
        assert body["evidence"] == {"seqs": [2, 3], "critical_step_seq": 3, "confidence": 0.8}
        assert body["tasks"] == [f"task-{n}"] and body["cost_wasted_usd"] == 0.125
        assert body["history"] == [{"at": "2026-01-01T00:00:00.000Z", "by": "taskyard", "field": "status",
                                    "from": None, "to": "open", "trace_id": f"t{n}"}]


def test_patch_changes_status_and_owner_with_history(client: TestClient, runner: SyncRunner) -> None:
    incident_id = occur(runner, "t1")
    url = f"/api/incidents/{incident_id}"
    answer = client.patch(url, json={"status": "acknowledged", "owner": "ana"}, headers=SUBMIT)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "acknowledged" and body["owner"] == "ana" and body["playbook"]
    by = f"key:{key_id('k-submit')}"
    assert [(h["field"], h["from"], h["to"], h["by"]) for h in body["history"]] == [
        ("status", None, "open", "taskyard"), ("status", "open", "acknowledged", by), ("owner", None, "ana", by)]
    # the same values again change nothing
    again = client.patch(url, json={"status": "acknowledged", "owner": "ana"}, headers=ADMIN).json()
    assert len(again["history"]) == 3
    cleared = client.patch(url, json={"owner": None, "status": "resolved"}, headers=ADMIN).json()
    assert cleared["owner"] is None and cleared["status"] == "resolved" and cleared["resolved_at"]
    assert [(h["field"], h["from"], h["to"]) for h in cleared["history"][3:]] == [
        ("status", "acknowledged", "resolved"), ("owner", "ana", None)]
    assert ids(client.get("/api/incidents", params={"status": "resolved"}, headers=ADMIN)) == [incident_id]
    assert ids(client.get("/api/incidents", params={"status": "acknowledged"}, headers=ADMIN)) == []
    reopened = client.patch(url, json={"status": "open"}, headers=ADMIN).json()
    assert reopened["status"] == "open" and reopened["resolved_at"] is None
    client.patch(url, json={"status": "resolved"}, headers=ADMIN)
    occur(runner, "t-new")  # the failure comes back in a new trace
    regressed = client.get(url, headers=ADMIN).json()
    assert regressed["status"] == "regressed" and regressed["resolved_at"] is None


@pytest.mark.parametrize("body,message", [
    ({"status": "closed"}, "invalid status: must be one of open, acknowledged, resolved, regressed"),
    ({"status": None}, "invalid status"),
    ({"owner": 7}, "invalid owner"),
    ({"owner": "a\nb"}, "invalid owner"),
    ({"owner": "   "}, "invalid owner: blank"),
    ({}, "invalid request body: status or owner is required"),
    ({"status": "open", "project": "other"}, "invalid request body: unknown field 'project'"),
    ([], "invalid request body"),
    (b"{nope", "invalid request body"),
])
def test_patch_refuses_bad_bodies_with_422(client: TestClient, runner: SyncRunner, body: Any, message: str) -> None:
    incident_id = occur(runner, "t1")
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    answer = client.patch(f"/api/incidents/{incident_id}", headers=ADMIN, **kwargs)
    assert answer.status_code == 422 and reason(answer).startswith(message)
    detail = client.get(f"/api/incidents/{incident_id}", headers=ADMIN).json()
    assert detail["status"] == "open" and len(detail["history"]) == 1


def test_another_projects_incident_is_not_found_and_scopes_hold(client: TestClient, runner: SyncRunner) -> None:
    mine = occur(runner, "t1")
    theirs = occur(runner, "t1", project="other")
    assert mine != theirs
    assert ids(client.get("/api/incidents", headers=OTHER)) == [theirs]
    for incident_id in (mine, "0" * 32, "not-an-id"):
        assert client.get(f"/api/incidents/{incident_id}", headers=OTHER).json() == {"error": "incident not found"}
    refused = client.patch(f"/api/incidents/{mine}", json={"status": "resolved"}, headers=OTHER)
    assert refused.status_code == 404 and refused.json() == {"error": "incident not found"}
    assert client.get(f"/api/incidents/{mine}", headers=ADMIN).json()["status"] == "open"
    assert client.patch(f"/api/incidents/{mine}", json={"status": "resolved"}, headers=READER).status_code == 403
    assert client.get("/api/incidents", headers=SUBMIT).status_code == 403
    assert client.get("/api/incidents").status_code == 401
