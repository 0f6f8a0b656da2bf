"""The live activity feed over real processes: a task's state changes arrive in order as SSE, a client resumes
with Last-Event-ID on another replica and loses nothing; the per-minute counters count the task."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cluster, wait_final

pytestmark = pytest.mark.e2e

KEY = {"X-API-Key": "k-act"}


def messages(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """SSE messages as {id, event, data} (ticks included)."""
    message: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if message:
                yield message
            message = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            message[name] = json.loads(value.strip()) if name == "data" else value.strip()


def collect(client: httpx.Client, headers: dict[str, str], until: Any, found: list[dict[str, Any]],
            ready: threading.Event) -> None:
    with client.stream("GET", "/api/activity", headers={**KEY, **headers}, timeout=30) as response:
        assert response.status_code == 200
        ready.set()
        for message in messages(response):
            found.append(message)
            if until(found):
                return


def test_a_tasks_life_arrives_live_and_resumes_on_another_replica(cluster: Cluster, redis_url: str) -> None:
    cluster.config(f"redis_url: {redis_url}\napi_key: k-act\nheartbeat_interval: 0.5s\n")
    api = cluster.serve(headers=KEY)
    other = cluster.serve("--no-workers", headers=KEY)
    found: list[dict[str, Any]] = []
    ready = threading.Event()
    task_id: list[str] = []

    def done(seen: list[dict[str, Any]]) -> bool:
        return any(m.get("event") == "task" and m["data"]["subject"] in task_id and m["data"]["state"] == "completed"
                   for m in seen)

    reader = threading.Thread(target=collect, args=(api, {}, done, found, ready))
    reader.start()
    assert ready.wait(10)
    task_id.append(api.post("/task", json={"prompt": "hello"}).json()["id"])
    assert wait_final(api, task_id[0])["state"] == "completed"
    reader.join(20)
    mine = [m for m in found if m.get("event") == "task" and m["data"]["subject"] == task_id[0]]
    assert [m["data"]["state"] for m in mine] == ["pending", "dispatched", "completed"]
    assert mine[0]["data"]["worker"] == "echo" and mine[0]["data"]["at"].endswith("Z")
    assert [m["id"] for m in mine] == [m["data"]["id"] for m in mine]

    # Given the id of the first entry, another replica replays what came after it
    replay: list[dict[str, Any]] = []
    collect(other, {"Last-Event-ID": mine[0]["id"]}, lambda seen: len(seen) >= 2, replay, threading.Event())
    assert [(m["data"]["subject"], m["data"]["state"]) for m in replay] == [(task_id[0], "dispatched"),
                                                                             (task_id[0], "completed")]

    stats = api.get("/api/stats/tasks?minutes=3").json()
    assert len(stats) == 3 and stats[-1]["minute"] <= mine[-1]["data"]["at"]
    assert sum(m["created"] for m in stats) >= 1 and sum(m["completed"] for m in stats) >= 1
    assert sum(m["failed"] for m in stats) == 0


def test_bad_resume_points_and_windows_are_400(cluster: Cluster, redis_url: str) -> None:
    cluster.config(f"redis_url: {redis_url}\napi_key: k-act\n")
    api = cluster.serve(headers=KEY)
    assert api.get("/api/activity?after=yesterday").json() == {
        "error": "invalid after: an activity entry id such as 1732360000000-0"}
    assert api.get("/api/activity", headers={"Last-Event-ID": "1-x"}).status_code == 400
    for minutes in ("0", "121", "x"):
        assert api.get(f"/api/stats/tasks?minutes={minutes}").status_code == 400
    assert api.get("/api/stats/tasks", headers={"X-API-Key": "wrong"}).status_code == 401
