"""The webhook and event endpoints of the real app on a real Redis: auth per source kind, size limits,
generic HMAC sources, listing and filters, the rules dry run and the audit log."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from api.app import create_app
from config.loader import load_settings
from config.settings import WorkerSpec
from engine import audit
from engine.errors import ConfigError
from engine.store import SyncRunner
from tests.answers import reason as error_reason
from tests.fixture_paths import GITHUB_WEBHOOKS
from tests.integration.conftest import define

FIXTURES = GITHUB_WEBHOOKS
ADMIN, OTHER = "k-admin", "k-other-project"

CONFIG = """
api_keys:
  - {key: k-admin}
  - {key: k-other-project, project: other}
sources:
  github: {secret: gh-secret}
  alerts: {secret: alert-secret, signature_header: X-Signature, delivery_header: X-Delivery, event_header: X-Kind,
           max_body_bytes: 1000}
  plain: {}
workers:
  - name: reviewer
    handler: "workers.builtin:echo"
    events:
      - source: github
        on: [pull_request.opened]
        filter: {base_branch: master, not: {labels: wontfix}}
        prompt: "Review #{{.number}}: {{.title}}"
      - source: github
        on: [pull_request.closed]
        prompt: "Closed {{.number}}"
rules:
  - {source: github, on: ["pull_request.*"], pool: triage, prompt: "{{.diff}}", auto: false}
  - {source: alerts, on: ["*"], worker: reviewer, prompt: "alert {{.payload.level}}"}
"""


@pytest.fixture()
def client(tmp_path: Path, redis_client, redis_url: str) -> Iterator[TestClient]:
    path = tmp_path / "taskyard.yaml"
    path.write_text(CONFIG)
    app = create_app(load_settings(path, env={}), redis_url=redis_url)
    with TestClient(app=app) as c:
        yield c


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def key(k: str = ADMIN) -> dict[str, str]:
    return {"X-API-Key": k}


def test_auth_follows_the_source_kind(client: TestClient) -> None:
    body = b'{"type": "ping-me"}'
    assert client.post("/webhook/plain", content=body).status_code == 401  # no secret: the key is required
    for sneaky in ("/webhook//plain", "//webhook/plain", "/webhook/plain/", "/webhook///plain//"):
        refused = client.post(sneaky, content=body)
        assert refused.status_code in (401, 404), sneaky  # never stored without a key
    assert client.post("/webhook/plain", content=body, headers=key("wrong")).status_code == 401
    accepted = client.post("/webhook/plain", content=body, headers=key())
    assert accepted.status_code == 202 and accepted.json()["type"] == "ping-me"
    # A signed source needs no key, and a key does not stand in for its signature.
    assert client.post("/webhook/alerts", content=body, headers=key()).json() == {"error": "webhook validation failed"}
    good = client.post("/webhook/alerts", content=body, headers={
        "X-Signature": sign("alert-secret", body), "X-Delivery": "a-1", "X-Kind": "disk.full"})
    assert good.status_code == 202 and good.json()["type"] == "disk.full"
    prefixed = client.post("/webhook/alerts", content=body, headers={
        "X-Signature": "sha256=" + sign("alert-secret", body), "X-Delivery": "a-1"})
    assert prefixed.status_code == 200 and prefixed.json()["status"] == "duplicate"
    # Events are scoped: the other project's key sees none of them.
    assert len(client.get("/events", headers=key()).json()) == 2  # none of the sneaky posts was stored
    assert client.get("/events", headers=key(OTHER)).json() == []
    event_id = good.json()["id"]
    assert client.get(f"/event/{event_id}", headers=key(OTHER)).status_code == 404


def test_bodies_over_the_source_limit_are_refused_unread(client: TestClient) -> None:
    big = json.dumps({"pad": "x" * 2000}).encode()
    refused = client.post("/webhook/alerts", content=big, headers={"X-Signature": sign("alert-secret", big)})
    assert (refused.status_code, refused.json()) == (413, {"error": "request body too large"})
    assert client.get("/events", headers=key()).json() == []


def test_listing_filters_cursor_and_bad_parameters(client: TestClient) -> None:
    for i in range(5):
        body = json.dumps({"n": i}).encode()
        assert client.post("/webhook/plain", content=body, headers=key()).status_code == 202
    first = client.get("/events", params={"limit": 3}, headers=key())
    assert [e["attrs"] for e in first.json()] == [{"n": 4}, {"n": 3}, {"n": 2}]  # newest first
    rest = client.get("/events", params={"limit": 3, "cursor": first.headers["X-Next-Cursor"]}, headers=key())
    assert len(rest.json()) == 2 and "X-Next-Cursor" not in rest.headers
    assert len(client.get("/events", params={"source": "plain", "state": "received"}, headers=key()).json()) == 5
    assert client.get("/events", params={"source": "github"}, headers=key()).json() == []
    bad = client.get("/events", params={"state": "nope"}, headers=key())
    assert bad.status_code == 400 and bad.json()["error"].startswith("invalid state")
    assert client.get("/events", params={"limit": "0"}, headers=key()).status_code == 400
    assert client.get("/event/not-an-id", headers=key()).json() == {"error": "event not found"}


def test_rules_dry_run_explains_every_rule(client: TestClient) -> None:
    payload = json.loads((FIXTURES / "pull_request.opened.json").read_text())
    answer = client.post("/api/rules/test", headers=key(), json={
        "source": "github", "headers": {"X-GitHub-Event": "pull_request"}, "payload": payload})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["type"] == "pull_request.opened"
    assert report["matched"] == ["reviewer.events[0]", "rules[0]"]
    by_rule = {r["rule"]: r for r in report["rules"]}
    assert by_rule["reviewer.events[0]"]["prompt"] == "Review #2: Update the README with new information."
    assert "not one of" in by_rule["reviewer.events[1]"]["reason"]
    assert by_rule["rules[0]"]["prompt"].startswith("<diff:")  # lazy attributes are not fetched in a dry run
    assert "rules[1]" not in by_rule  # another source's rule
    payload["pull_request"]["base"]["ref"] = "develop"
    filtered = client.post("/api/rules/test", headers=key(), json={
        "source": "github", "type": "pull_request.opened", "payload": payload}).json()
    reason = {r["rule"]: r for r in filtered["rules"]}["reviewer.events[0]"]["reason"]
    assert "base_branch" in reason and "develop" in reason
    assert client.get("/events", headers=key()).json() == []  # nothing stored
    bad = client.post("/api/rules/test", headers=key(), json={"source": "nope", "payload": {}})
    assert bad.status_code == 404 and bad.json()["error"] == "unknown source: nope"
    assert client.post("/api/rules/test", headers=key(), json={"payload": {}}).status_code == 400
    untyped = client.post("/api/rules/test", headers=key(), json={"source": "github", "payload": payload})
    assert untyped.status_code == 400 and "X-GitHub-Event" in error_reason(untyped)


def test_generic_attributes_are_short_scalars_and_the_payload_keeps_everything(client: TestClient) -> None:
    body = json.dumps({"level": "high", "count": 3, "blob": "x" * 5000, "nested": {"a": 1}}).encode()
    answer = client.post("/webhook/plain", content=body, headers=key())
    assert answer.json()["attrs"] == {"level": "high", "count": 3}
    event = client.get(f"/event/{answer.json()['id']}", headers=key()).json()
    assert event["payload"]["blob"] == "x" * 5000 and event["payload"]["nested"] == {"a": 1}


def test_audit_log_filters_and_is_per_project(client: TestClient) -> None:
    body = b"{}"
    first = client.post("/webhook/plain", content=body, headers=key()).json()["id"]
    client.post("/webhook/plain", content=body, headers=key())
    trail = client.get("/logs", params={"event": first}, headers=key()).json()
    assert [(e["action"], e["event"]) for e in trail] == [("event_received", first)]
    assert len(client.get("/logs", params={"action": "event_received"}, headers=key()).json()) == 2
    assert client.get("/logs", params={"since": "x"}, headers=key()).status_code == 400
    assert len(client.get("/logs", params={"since": "2020-01-01T00:00:00Z"}, headers=key()).json()) == 2
    assert client.get("/logs", params={"since": "2999-01-01T00:00:00Z"}, headers=key()).json() == []
    assert client.get("/logs", headers=key(OTHER)).json() == []  # another project's admin sees none of it


PROJECT_SOURCES = """
api_keys:
  - {key: k-alpha, project: alpha}
  - {key: k-beta, project: beta}
sources:
  github: {secret: gh-secret, project: alpha}
  intake: {type: plain, project: beta}
  loose: {}
"""


def test_a_source_project_owns_its_events_and_only_that_projects_key_may_post_unsigned(
        tmp_path: Path, redis_client, redis_url: str) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text(PROJECT_SOURCES)
    with TestClient(app=create_app(load_settings(path, env={}), redis_url=redis_url)) as client:
        # A signed delivery names no key: it belongs to the source's project, alpha
        body = (FIXTURES / "pull_request.opened.json").read_bytes()
        signed = client.post("/webhook/github", content=body, headers={
            "X-Hub-Signature-256": "sha256=" + sign("gh-secret", body), "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": "p-1"})
        assert signed.status_code == 202, signed.text
        event_id = signed.json()["id"]
        assert [e["id"] for e in client.get("/events", headers=key("k-alpha")).json()] == [event_id]
        assert client.get(f"/event/{event_id}", headers=key("k-beta")).status_code == 404
        # An unsigned source with a project: that project's key posts; another project's is refused, unstored
        assert client.post("/webhook/intake", content=b"{}", headers=key("k-alpha")).json() == {"error": "forbidden"}
        accepted = client.post("/webhook/intake", content=b"{}", headers=key("k-beta"))
        assert accepted.status_code == 202
        assert [e["id"] for e in client.get("/events", headers=key("k-beta")).json()] == [accepted.json()["id"]]
        assert [e["id"] for e in client.get("/events", headers=key("k-alpha")).json()] == [event_id]
        # A source without a project keeps its events in the posting key's project
        loose = client.post("/webhook/loose", content=b"{}", headers=key("k-alpha")).json()["id"]
        assert {e["id"] for e in client.get("/events", headers=key("k-alpha")).json()} == {event_id, loose}


def test_a_source_project_no_key_can_read_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text("api_key: k\nsources:\n  github: {secret: s, project: alpah}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert "sources: github.project: no api_keys entry has project 'alpah'" in str(caught.value)
    assert str(path) in str(caught.value)


def _flood(redis_client, entries: int) -> None:
    """``entries`` audit entries of another project after everything so far, as a busy install writes them."""
    with redis_client.pipeline(transaction=False) as pipe:
        for _ in range(entries):
            pipe.xadd("ty:audit", {"action": "event_received", "project": "elsewhere", "event": "", "task": "",
                                   "detail": "{}"})
        pipe.execute()


def test_an_event_or_task_trail_is_found_however_many_entries_came_after_it(client: TestClient,
                                                                             redis_client) -> None:
    # Given: a stored event (its event_received entry) and a task, with the entries the engine jobs would add
    # (written by the jobs' own writer), then more entries than one scan reads
    body = b'{"level": "high"}'
    sent = client.post("/webhook/alerts", content=body, headers={"X-Signature": sign("alert-secret", body),
                                                                 "X-Kind": "page", "X-Delivery": "a-1"})
    event_id = sent.json()["id"]
    runner = SyncRunner(redis_client)
    define(runner, WorkerSpec.model_validate({"name": "reviewer", "handler": "workers.builtin:echo"}), online=False)
    task_id = client.post("/task", json={"prompt": "p", "worker": "reviewer"}, headers=key()).json()["id"]
    runner.run(audit.record_many([
        ("rule_matched", {"event": event_id, "rule": "rules[1]"}),
        ("task_sent", {"event": event_id, "task": task_id, "worker": "reviewer"}),
        ("write_back", {"event": event_id, "task": task_id, "action": "comment"})], project="default"))
    whole = client.get("/logs", params={"event": event_id}, headers=key())
    before = whole.json()
    assert [e["action"] for e in before] == ["write_back", "task_sent", "rule_matched", "event_received"]
    assert "X-Audit-Truncated" not in whole.headers  # it read to the end of the trail
    _flood(redis_client, audit.MAX_SCANNED + 5_000)

    # Then: the event's and the task's entries are all still found, newest first, and limit keeps the newest;
    # the answer says the scan stopped at its cap (entries after the first 20,000 since the event were not read)
    after = client.get("/logs", params={"event": event_id}, headers=key())
    assert after.json() == before and after.headers["X-Audit-Truncated"] == "true"
    by_task = client.get("/logs", params={"task": task_id}, headers=key()).json()
    assert by_task == before[:2]
    assert client.get("/logs", params={"event": event_id, "limit": 1}, headers=key()).json() == before[:1]
    # Another project's key, and an id no record has, find nothing
    assert client.get("/logs", params={"event": event_id}, headers=key(OTHER)).json() == []
    assert client.get("/logs", params={"task": "0" * 32}, headers=key()).json() == []
    # A filter only a full scan can answer says when it stopped short (this project's 4 entries are older than
    # the 20,000 it reads back from the newest)
    cut = client.get("/logs", params={"action": "policy_decision"}, headers=key())
    assert cut.json() == [] and cut.headers["X-Audit-Truncated"] == "true"
