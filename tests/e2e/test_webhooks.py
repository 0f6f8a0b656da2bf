"""GitHub in, tasks out, results written back: real `serve` + `worker` processes, a stub GitHub over HTTP."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cluster, wait_for
from tests.fixture_paths import GITHUB_WEBHOOKS
from tests.stub_github import StubGitHub

FIXTURES = GITHUB_WEBHOOKS
SECRET = "whsec_e2e_secret"
TOKEN = "ghp_e2e_token"
API_KEY = "k-e2e"

AGENT = '''
import json

def review(ctx):
    return json.dumps({"comment": "Reviewed: " + ctx.prompt, "status": {"state": "success", "description": "ok"},
                       "labels": ["reviewed", "security"]})

def label(ctx):
    return json.dumps({"labels": {"add": ["triaged"]}})
'''


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def signed(payload: dict[str, Any], event: str, *, delivery: str | None = None,
           secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                  "X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


@pytest.fixture()
def github() -> Iterator[StubGitHub]:
    with StubGitHub(token=TOKEN) as stub:
        yield stub


@pytest.fixture()
def api(cluster: Cluster, redis_url: str, github: StubGitHub) -> httpx.Client:
    (cluster.tmp / "review_agent.py").write_text(AGENT)
    cluster.config(f"""
redis_url: {redis_url}
heartbeat_interval: 1s
engine_processes: 2
api_key: {API_KEY}
sources:
  github: {{secret: {SECRET}, token: {TOKEN}, api_url: "{github.url}"}}
workers:
  - name: reviewer
    handler: "review_agent:review"
    policy: {{blocked_labels: [security]}}
    events:
      - source: github
        on: [pull_request.opened, pull_request.synchronize]
        filter: {{base_branch: master, pull_request.draft: false}}
        prompt: "Review PR #{{{{.number}}}}: {{{{.title}}}}"
  - name: labeller
    handler: "review_agent:label"
rules:
  - source: github
    on: ["pull_request.*"]
    filter: {{not: {{action: closed}}}}
    worker: labeller
    prompt: "Label {{{{ repo }}}}#{{{{ number }}}}"
  - source: github
    on: [issues.opened]
    worker: reviewer
    prompt: "Triage {{{{.no_such_attribute}}}}"
""")
    client = cluster.serve("--no-workers", headers={"X-API-Key": API_KEY})
    cluster.worker("reviewer", "labeller")
    return client


def post(api: httpx.Client, body: bytes, headers: dict[str, str], source: str = "github") -> httpx.Response:
    # No API key: a GitHub source with a secret verifies its own signature.
    return httpx.post(f"{api.base_url}/webhook/{source}", content=body, headers=headers, timeout=10)


def settled(api: httpx.Client, event_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    return wait_for(lambda: api.get(f"/event/{event_id}").json(), lambda e: e["state"] in states, timeout=30)


def test_a_pull_request_ends_with_comment_status_and_labels_on_github(api: httpx.Client, github: StubGitHub) -> None:
    payload = fixture("pull_request.opened")
    body, headers = signed(payload, "pull_request")
    answer = post(api, body, headers)
    assert answer.status_code == 202, answer.text
    received = answer.json()
    assert received["state"] == "received" and received["type"] == "pull_request.opened"
    assert received["actor"] == "Codertocat" and received["subject"] == "Codertocat/Hello-World#2"

    event = settled(api, received["id"], ("completed", "failed", "write_back_failed"))
    assert event["state"] == "completed", event
    assert sorted(t["worker_name"] for t in event["tasks"]) == ["labeller", "reviewer"]
    assert all(t["state"] == "completed" for t in event["tasks"])
    assert event["payload"]["pull_request"]["head"]["sha"] == payload["pull_request"]["head"]["sha"]

    # Write-back runs after the task completes: wait until the stub holds all of it.
    sha = payload["pull_request"]["head"]["sha"]
    wait_for(lambda: github.labels("Codertocat", "Hello-World", 2), lambda ls: {"reviewed", "triaged"} <= set(ls),
             timeout=20)
    comments = github.comments("Codertocat", "Hello-World", 2)
    assert len(comments) == 1
    assert comments[0]["body"].startswith("Reviewed: Review PR #2: Update the README with new information.")
    statuses = [s for s in github.statuses if s["sha"] == sha]
    assert [(s["state"], s["context"]) for s in statuses] == [("success", "taskyard")]
    labels = github.labels("Codertocat", "Hello-World", 2)
    assert "security" not in labels  # blocked by the reviewer's policy
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in github.requests)

    # The same delivery again: 200 duplicate, nothing new happens.
    again = post(api, body, headers)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": received["id"]}
    assert len(api.get("/events").json()) == 1
    assert len(api.get("/tasks").json()) == 2

    metrics = api.get("/metrics").text
    assert 'taskyard_events_total{state="received"} 1.0' in metrics
    assert 'taskyard_events_total{state="completed"} 1.0' in metrics
    assert "taskyard_engine_queue_depth " in metrics

    trail = api.get("/logs", params={"event": received["id"]}).json()
    actions = {entry["action"] for entry in trail}
    assert {"event_received", "rule_matched", "task_sent", "policy_decision", "write_back",
            "event_duplicate"} <= actions
    assert TOKEN not in json.dumps(trail)


def test_a_filtered_out_pull_request_is_skipped(api: httpx.Client) -> None:
    payload = copy.deepcopy(fixture("pull_request.closed"))
    answer = post(api, *signed(payload, "pull_request"))
    assert answer.status_code == 202
    event = settled(api, answer.json()["id"], ("skipped", "dispatched", "completed", "failed"))
    assert event["state"] == "skipped"
    assert "not one of" in event["history"][-1]["detail"]
    assert api.get("/tasks").json() == []


def test_a_template_error_fails_the_event_with_a_clear_reason(api: httpx.Client) -> None:
    answer = post(api, *signed(fixture("issues.opened"), "issues"))
    event = settled(api, answer.json()["id"], ("failed", "completed", "dispatched"))
    assert event["state"] == "failed"
    assert "no_such_attribute" in event["error"]
    assert api.get("/tasks").json() == []


def test_refusals_ping_and_unknown_sources(api: httpx.Client) -> None:
    body, headers = signed(fixture("pull_request.opened"), "pull_request")
    forged = post(api, body, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert (forged.status_code, forged.json()) == (401, {"error": "webhook validation failed"})
    wrong_secret = post(api, *signed(fixture("pull_request.opened"), "pull_request", secret="nope"))
    assert wrong_secret.status_code == 401
    not_json = post(api, b"{not json", {**headers, "X-Hub-Signature-256": "sha256=" + hmac.new(
        SECRET.encode(), b"{not json", hashlib.sha256).hexdigest()})
    assert not_json.status_code == 401
    ping = post(api, *signed(fixture("ping.default"), "ping"))
    assert ping.status_code == 200
    unknown = post(api, body, headers, source="gitlab")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "unknown source: gitlab"})
    wrong_method = httpx.get(f"{api.base_url}/webhook/github", headers={"X-API-Key": API_KEY})
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert api.get("/events").json() == []  # nothing refused was stored
    assert api.get("/event/" + "0" * 32).json() == {"error": "event not found"}
