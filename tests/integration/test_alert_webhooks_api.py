"""The alert webhook endpoints of the real app on a real Redis: subscriptions (the secret shown once), validation
(400), the SSRF guard at subscription time, scopes and projects, the test delivery, and incident.resolved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from engine import incidents
from engine.detectors.model import Detection
from engine.store import SyncRunner
from engine.webhook_delivery import WebhookDelivery
from tests.answers import reason
from tests.integration.conftest import app_client
from tests.webhook_receiver import Receiver, receiver

pytestmark = pytest.mark.integration

KEYS = """
api_keys:
  - {key: k-admin}
  - {key: k-other, project: other}
  - {key: k-reader, scopes: [read]}
"""
ADMIN = {"X-API-Key": "k-admin"}
OTHER = {"X-API-Key": "k-other"}
READER = {"X-API-Key": "k-reader"}


@pytest.fixture()
def client(tmp_path: Path, redis_client: redis.Redis, redis_url: str) -> Iterator[TestClient]:
    with app_client(tmp_path, KEYS + "outbound: {allow_hosts: [127.0.0.1]}\n", redis_url) as c:
        yield c


@pytest.fixture()
def strict_client(tmp_path: Path, redis_client: redis.Redis, redis_url: str) -> Iterator[TestClient]:
    with app_client(tmp_path, KEYS, redis_url) as c:  # no allowlist
        yield c


@pytest.fixture()
def hook_receiver() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def deliveries_queued(redis_client: redis.Redis) -> list[str]:
    raw = redis_client.hvals("ty:dq:ty.engine.msgs")
    return sorted(m["args"][0] for m in map(json.loads, raw) if m["actor_name"] == "deliver_webhook")


def test_a_subscription_shows_its_secret_once_and_is_listed_per_project(client: TestClient) -> None:
    made = client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["incident.created"]},
                       headers=ADMIN)
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"].startswith("whsec_") and hook["has_secret"] is True
    assert hook["events"] == ["incident.created"] and hook["classes"] == []
    listed = client.get("/api/webhooks", headers=READER).json()
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0] and listed[0]["has_secret"] is True
    assert hook["secret"] not in client.get("/api/webhooks", headers=ADMIN).text
    assert client.get("/api/webhooks", headers=OTHER).json() == []  # another project sees nothing
    assert client.delete(f"/api/webhooks/{hook['id']}", headers=OTHER).status_code == 404
    assert client.delete(f"/api/webhooks/{hook['id']}", headers=ADMIN).json() == {"removed": hook["id"]}
    assert client.get("/api/webhooks", headers=ADMIN).json() == []
    assert client.delete(f"/api/webhooks/{hook['id']}", headers=ADMIN).json() == {"error": "webhook not found"}


def test_a_given_secret_is_kept_and_classes_filter(client: TestClient) -> None:
    made = client.post("/api/webhooks", json={"url": "https://127.0.0.1/x", "events": ["incident.created"],
                                              "secret": "my-own-secret-1234", "classes": ["loop"]}, headers=ADMIN)
    assert made.status_code == 201 and made.json()["secret"] == "my-own-secret-1234"
    assert made.json()["classes"] == ["loop"]


@pytest.mark.parametrize(("body", "error"), [
    ({"events": ["incident.created"]}, "url is required"),
    ({"url": "http://127.0.0.1/x"}, "invalid events: a non-empty list of names"),
    ({"url": "http://127.0.0.1/x", "events": []}, "invalid events: a non-empty list of names"),
    ({"url": "http://127.0.0.1/x", "events": ["incident.exploded"]}, "invalid events: unknown 'incident.exploded'"),
    ({"url": "http://127.0.0.1/x", "events": ["task.failed"], "classes": ["nope"]}, "invalid classes: unknown"),
    ({"url": "http://127.0.0.1/x", "events": ["task.failed"], "secret": "short"}, "invalid secret"),
    ({"url": "ftp://127.0.0.1/x", "events": ["task.failed"]}, "invalid url: must be http or https"),
    ({"url": "http://u:p@127.0.0.1/x", "events": ["task.failed"]}, "invalid url: credentials"),
    ({"url": "http://127.0.0.1/x", "events": ["task.failed"], "extra": 1}, "invalid request body: unknown field"),
    ([], "invalid request body"),
])
def test_bad_subscriptions_are_400_with_the_reason(client: TestClient, body: Any, error: str) -> None:
    answer = client.post("/api/webhooks", json=body, headers=ADMIN)
    assert answer.status_code == 400 and reason(answer).startswith(error), answer.text


def test_scopes_admin_to_change_read_to_look(client: TestClient) -> None:
    body = {"url": "http://127.0.0.1/x", "events": ["task.failed"]}
    assert client.post("/api/webhooks", json=body, headers=READER).status_code == 403
    hook = client.post("/api/webhooks", json=body, headers=ADMIN).json()
    assert client.post(f"/api/webhooks/{hook['id']}/test", headers=READER).status_code == 403
    assert client.delete(f"/api/webhooks/{hook['id']}", headers=READER).status_code == 403
    assert client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=READER).json() == []


@pytest.mark.parametrize("url", ["http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data",
                                 "http://localhost:8080/hook", "http://127.0.0.1/hook", "http://[::1]/hook",
                                 "http://0.0.0.0/hook", "http://224.0.0.1/hook"])
def test_private_targets_are_refused_without_the_allowlist(strict_client: TestClient, url: str) -> None:
    answer = strict_client.post("/api/webhooks", json={"url": url, "events": ["task.failed"]}, headers=ADMIN)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("webhook url refused"), answer.text
    assert strict_client.get("/api/webhooks", headers=ADMIN).json() == []


def test_the_test_endpoint_queues_a_signed_test_delivery(client: TestClient, redis_client: redis.Redis,
                                                         hook_receiver: Receiver) -> None:
    hook = client.post("/api/webhooks", json={"url": hook_receiver.url + "/in", "events": ["task.failed"]},
                       headers=ADMIN).json()
    hook_receiver.secret = hook["secret"]
    answer = client.post(f"/api/webhooks/{hook['id']}/test", headers=ADMIN)
    assert answer.status_code == 202 and answer.json()["status"] == "pending"
    assert deliveries_queued(redis_client) == [answer.json()["delivery_id"]]
    assert client.post("/api/webhooks/" + "0" * 32 + "/test", headers=ADMIN).status_code == 404
    # When the engine job runs
    WebhookDelivery(SyncRunner(redis_client), ["127.0.0.1"]).deliver(answer.json()["delivery_id"])
    # Then the receiver verified both signatures, and the log shows the attempt
    [got] = hook_receiver.received
    assert got.standard_ok and got.simple_ok and got.path == "/in"
    assert got.json["type"] == "webhook.test" and got.json["id"] == answer.json()["delivery_id"]
    assert got.json["project"] == "default" and got.json["data"]["webhook_id"] == hook["id"]
    [entry] = client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=READER).json()
    assert entry["status"] == "succeeded" and entry["code"] == 200 and entry["attempt"] == 1
    assert entry["response"] == '{"ok": true}' and entry["error"] is None and entry["duration_ms"] >= 0
    assert client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=OTHER).status_code == 404


def test_resolving_an_incident_emits_incident_resolved_once(client: TestClient, redis_client: redis.Redis) -> None:
    hook = client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["incident.resolved"]},
                       headers=ADMIN).json()
    det = Detection(failure_class="loop", signature="s", confidence=0.9, evidence=(1,), critical_step_seq=1,
                    summary="loop: s", detector_version="1")
    [outcome] = SyncRunner(redis_client).run(incidents.record(
        project="default", trace_id="t1", task_id=None, worker="w", cost_usd=0.0, detections=[det], now_ms=1))
    assert deliveries_queued(redis_client) == []  # not subscribed to incident.created
    path = f"/api/incidents/{outcome.incident_id}"
    assert client.patch(path, json={"status": "acknowledged"}, headers=ADMIN).status_code == 200
    assert deliveries_queued(redis_client) == []
    assert client.patch(path, json={"status": "resolved"}, headers=ADMIN).status_code == 200
    [delivery_id] = deliveries_queued(redis_client)
    record = redis_client.hgetall(f"ty:hookd:{delivery_id}")
    assert record["type"] == "incident.resolved" and record["webhook"] == hook["id"]
    assert json.loads(record["data"])["id"] == outcome.incident_id
    assert json.loads(record["data"])["status"] == "resolved"
    assert client.patch(path, json={"status": "resolved", "owner": "me"}, headers=ADMIN).status_code == 200
    assert len(deliveries_queued(redis_client)) == 1  # already resolved: no second alert
