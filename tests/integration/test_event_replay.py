"""POST /api/events/{id}/replay on the real app and a real Redis: a stored GitHub delivery is received again as a
new event (same source, type and payload byte for byte, delivery id ``replay:<id>:<n>``, ``replay_of``), the
normal ``process_event`` job matches it, and it makes new tasks of its own."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from httpx import Response
from litestar.testing import TestClient

from config.loader import load_settings
from engine import events, tasks
from engine.event_jobs import EventJobs, JobOptions
from engine.github_api import GitHubClient
from engine.rules import RuleBook
from engine.store import SyncRunner
from tests.fixture_paths import GITHUB_WEBHOOKS
from tests.integration.conftest import OFFLINE_AFTER_MS, app_client, define

pytestmark = pytest.mark.integration

SECRET = "gh-replay-secret"
CONFIG = f"""
api_keys:
  - {{key: k-submit}}
  - {{key: k-read, scopes: [read]}}
  - {{key: k-other, project: other}}
sources:
  github: {{secret: {SECRET}}}
workers:
  - name: reviewer
    handler: "workers.builtin:echo"
    events:
      - source: github
        on: [pull_request.opened]
        prompt: "Review #{{{{.number}}}}: {{{{.title}}}}"
"""
KEY = {"X-API-Key": "k-submit"}


@pytest.fixture()
def setup(tmp_path: Path, redis_client: redis.Redis, redis_url: str) -> Iterator[tuple[TestClient, EventJobs]]:
    with app_client(tmp_path, CONFIG, redis_url) as client:
        settings = load_settings(tmp_path / "taskyard.yaml", env={})
        runner = SyncRunner(redis_client)
        define(runner, *settings.workers)

        def no_github(_spec: Any) -> GitHubClient:
            raise AssertionError("these rules never call GitHub")

        jobs = EventJobs(runner=runner, rules=RuleBook.build(settings), sources=dict(settings.sources),
                         github_client=no_github,
                         options=JobOptions(default_bound=50, offline_after_ms=OFFLINE_AFTER_MS))
        yield client, jobs


def post_delivery(client: TestClient) -> Response:
    """GitHub's pull_request.opened example, signed, as delivery ``d-replay-1``."""
    body = (GITHUB_WEBHOOKS / "pull_request.opened.json").read_bytes()
    return client.post("/webhook/github", content=body, headers={
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-replay-1"})


def deliver(client: TestClient) -> dict[str, Any]:
    answer = post_delivery(client)
    assert answer.status_code == 202, answer.text
    return answer.json()


def engine_jobs(redis_client: redis.Redis) -> list[tuple[str, list[str]]]:
    return sorted((m["actor_name"], m["args"]) for m in map(json.loads, redis_client.hvals("ty:dq:ty.engine.msgs")))


def test_a_replayed_github_event_is_matched_again_and_makes_new_tasks(
        setup: tuple[TestClient, EventJobs], redis_client: redis.Redis) -> None:
    client, jobs = setup
    # Given: a GitHub delivery that was matched and made a task
    original = deliver(client)
    jobs.process(original["id"])
    first = client.get(f"/event/{original['id']}", headers=KEY).json()
    assert first["state"] == "dispatched" and len(first["tasks"]) == 1

    # When: it is replayed
    answer = client.post(f"/api/events/{original['id']}/replay", headers=KEY)

    # Then: a new event, received, pointing at the original, with its payload and a replay delivery id
    assert answer.status_code == 202, answer.text
    replay = answer.json()
    assert replay["id"] != original["id"] and replay["state"] == "received"
    assert replay["replay_of"] == original["id"] and replay["delivery_id"] == f"replay:{original['id']}:1"
    assert (replay["source"], replay["type"], replay["subject"]) == ("github", "pull_request.opened",
                                                                     first["subject"])
    assert replay["payload"] == first["payload"] and replay["tasks"] == []
    assert ("process_event", [replay["id"]]) in engine_jobs(redis_client)
    raw_first = redis_client.hget(f"ty:event:{original['id']}", "payload")
    assert redis_client.hget(f"ty:event:{replay['id']}", "payload") == raw_first  # byte for byte
    assert client.get(f"/event/{replay['id']}", headers=KEY).json() == replay

    # And: the normal engine job matches it and admits a task of its own
    jobs.process(replay["id"])
    after = client.get(f"/event/{replay['id']}", headers=KEY).json()
    assert after["state"] == "dispatched", after
    assert len(after["tasks"]) == 1 and after["tasks"][0]["id"] != first["tasks"][0]["id"]
    task = jobs.runner.run(tasks.get(after["tasks"][0]["id"]))
    assert task is not None and task.worker_name == "reviewer"
    assert task.prompt == "Review #2: Update the README with new information."
    listed = client.get("/events", headers=KEY).json()
    assert [(e["id"], e["replay_of"]) for e in listed] == [(replay["id"], original["id"]), (original["id"], None)]


def test_each_replay_is_a_new_event_and_never_a_duplicate(setup: tuple[TestClient, EventJobs]) -> None:
    client, _ = setup
    original = deliver(client)
    ids = [client.post(f"/api/events/{original['id']}/replay", headers=KEY).json() for _ in range(2)]
    assert [r["delivery_id"] for r in ids] == [f"replay:{original['id']}:1", f"replay:{original['id']}:2"]
    assert len({r["id"] for r in ids}) == 2
    # The original delivery sent again is still a duplicate of the original, not of a replay.
    again = post_delivery(client)
    assert again.status_code == 200 and again.json() == {"status": "duplicate", "event_id": original["id"]}


def test_replay_refuses_unknown_and_foreign_events_and_read_only_keys(setup: tuple[TestClient, EventJobs]) -> None:
    client, _ = setup
    original = deliver(client)
    for event_id in ("0" * 32, "not-an-id"):
        missing = client.post(f"/api/events/{event_id}/replay", headers=KEY)
        assert (missing.status_code, missing.json()) == (404, {"error": "event not found"})
    foreign = client.post(f"/api/events/{original['id']}/replay", headers={"X-API-Key": "k-other"})
    assert (foreign.status_code, foreign.json()) == (404, {"error": "event not found"})
    read_only = client.post(f"/api/events/{original['id']}/replay", headers={"X-API-Key": "k-read"})
    assert read_only.status_code == 403
    assert client.post(f"/api/events/{original['id']}/replay").status_code == 401
    assert len(client.get("/events", headers=KEY).json()) == 1  # nothing refused was stored


def test_numbering_a_replay_of_an_event_that_is_gone_leaves_no_record(redis_client: redis.Redis) -> None:
    # Retention may delete an event between the replay's read and its numbering: nothing may be left behind.
    runner = SyncRunner(redis_client)
    assert runner.run(events.count_replay("0" * 32)) is None
    assert redis_client.exists("ty:event:" + "0" * 32) == 0


def test_a_delivery_that_took_a_replays_id_first_does_not_swallow_the_replay(
        setup: tuple[TestClient, EventJobs]) -> None:
    client, _ = setup
    original = deliver(client)
    body = (GITHUB_WEBHOOKS / "pull_request.opened.json").read_bytes()
    squatter = client.post("/webhook/github", content=body, headers={
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": f"replay:{original['id']}:1"})
    assert squatter.status_code == 202
    replay = client.post(f"/api/events/{original['id']}/replay", headers=KEY)
    assert replay.status_code == 202, replay.text
    assert replay.json()["delivery_id"] == f"replay:{original['id']}:2"
    assert replay.json()["replay_of"] == original["id"]
