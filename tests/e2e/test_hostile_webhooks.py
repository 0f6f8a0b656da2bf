"""Hostile deliveries to a signed GitHub source on a real serve: each is refused with a JSON error and stores
nothing, or is accepted and handled (the event settles, its payload is stored byte for byte, payload text
never runs as template code). Never a 500, never a crash of the serve or its engine."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cluster, wait_for
from tests.fixture_paths import GITHUB_WEBHOOKS

SECRET = "whsec_hostile"
API_KEY = "k-hostile"
MAX_BODY = 64 * 1024  # bytes: the source's limit, more than a GitHub fixture (about 28 KB)
FINAL = ("completed", "failed", "skipped")
HOSTILE_TITLE = "{{ 7*7 }} {% for %} {{.title}} {{ ''.__class__ }}"
HOSTILE_BODY = "{% raw %}x{% endraw %} {{ cycler.__init__.__globals__ }} {#"


def pull_request(**changes: Any) -> dict[str, Any]:
    payload = json.loads((GITHUB_WEBHOOKS / "pull_request.opened.json").read_text())
    payload["pull_request"].update(changes)
    return payload


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers_for(body: bytes, *, event: str = "pull_request", delivery: str | None = None) -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}


@pytest.fixture()
def api(cluster: Cluster, redis_url: str) -> httpx.Client:
    cluster.config(f"""
redis_url: {redis_url}
api_key: {API_KEY}
poll_timeout: 100ms  # idle consumers wake often, so the serve stops quickly
sources:
  github: {{secret: {SECRET}, max_body_bytes: {MAX_BODY}}}
rules:
  - source: github
    on: [pull_request.opened]
    worker: echo
    prompt: "Review {{{{.title}}}}: {{{{.body}}}}"
""")
    return cluster.serve(headers={"X-API-Key": API_KEY})


def assert_unharmed(cluster: Cluster, api: httpx.Client) -> None:
    """Whatever was sent, the serve and its engine are alive, healthy and logged no unhandled error."""
    serve = cluster.procs[0]
    assert serve.popen.poll() is None, serve.output()
    assert api.get("/health").json()["status"] == "ok"
    log = serve.output()
    assert "Traceback" not in log and "unhandled error" not in log, log


def deliver(api: httpx.Client, body: Any, headers: dict[str, Any]) -> httpx.Response:
    # No API key: the source's signature is what admits a delivery.
    return httpx.post(f"{api.base_url}/webhook/github", content=body, headers=headers, timeout=10)


def settled(api: httpx.Client, event_id: str) -> dict[str, Any]:
    return wait_for(lambda: api.get(f"/event/{event_id}").json(), lambda e: e["state"] in FINAL, timeout=20)


def refused(response: httpx.Response, status: int = 401) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


def test_forged_oversized_and_malformed_deliveries_are_refused_and_store_nothing(
        cluster: Cluster, api: httpx.Client, redis_client: Any) -> None:
    body = json.dumps(pull_request()).encode()
    other = json.dumps(pull_request(title="another body")).encode()
    signature = headers_for(body)
    invalid = "webhook validation failed"

    # Signatures: wrong, missing, empty, of another body, with another secret, another scheme, not ASCII.
    assert refused(deliver(api, body, {**signature, "X-Hub-Signature-256": "sha256=" + "0" * 64})) == invalid
    no_signature = {k: v for k, v in signature.items() if k != "X-Hub-Signature-256"}
    assert refused(deliver(api, body, no_signature)) == invalid
    assert refused(deliver(api, body, {**signature, "X-Hub-Signature-256": ""})) == invalid
    assert refused(deliver(api, other, signature)) == invalid
    assert refused(deliver(api, body, {**signature, "X-Hub-Signature-256": sign(body, "not-the-secret")})) == invalid
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    assert refused(deliver(api, body, {**signature, "X-Hub-Signature-256": sha1})) == invalid
    assert refused(deliver(api, body, {**signature, "X-Hub-Signature-256": b"sha256=\xff\xfe"})) == invalid
    # An API key does not stand in for the signature, and a signed body still needs its event header.
    assert refused(deliver(api, body, {**no_signature, "X-API-Key": API_KEY})) == invalid
    assert refused(deliver(api, body, {k: v for k, v in signature.items() if k != "X-GitHub-Event"})) == invalid

    # Over the source's limit: refused 413 whether the length is declared or the body is chunked.
    huge = json.dumps(pull_request(body="x" * MAX_BODY)).encode()
    too_large = "request body too large"
    assert refused(deliver(api, huge, headers_for(huge)), 413) == too_large
    chunks = (huge[i:i + 8192] for i in range(0, len(huge), 8192))
    assert refused(deliver(api, chunks, headers_for(huge)), 413) == too_large

    # Correctly signed, but not a JSON object a store can keep: invalid UTF-8 (stray, overlong, an encoded
    # surrogate, cut short), a lone surrogate escape, nesting past the parser's depth, an empty body, an array.
    bad_bodies = [
        b'{"action": "opened", "pull_request": {"title": "\xff\xfe"}}',
        b'{"action": "opened", "pull_request": {"title": "\xc0\xaf"}}',
        b'{"action": "opened", "pull_request": {"title": "\xed\xa0\x80"}}',
        b'{"action": "opened", "pull_request": {"title": "\xe2\x82"}}',
        b'{"action": "opened", "pull_request": {"title": "\\ud800"}}',
        b'{"action": "opened", "deep": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        b'{"action": "opened", "deep": ' + b'{"a":' * 5_000 + b"1" + b"}" * 5_000 + b"}",
        b"",
        b'[{"action": "opened"}]',
    ]
    for bad in bad_bodies:
        assert refused(deliver(api, bad, headers_for(bad))) == invalid, bad[:60]

    # Nothing refused was stored: no event, no delivery key, no audit entry, no task.
    assert api.get("/events").json() == []
    assert api.get("/tasks").json() == []
    assert api.get("/logs").json() == []
    assert sorted(redis_client.scan_iter("ty:event*")) == []
    assert sorted(redis_client.scan_iter("ty:delivery:*")) == []
    assert_unharmed(cluster, api)


def test_accepted_hostile_deliveries_are_handled_and_stored_intact(cluster: Cluster, api: httpx.Client,
                                                                    redis_client: Any) -> None:
    # Given a pull request whose title and body are template syntax, and one nested 800 levels deep
    hostile = json.dumps(pull_request(title=HOSTILE_TITLE, body=HOSTILE_BODY)).encode()
    deep_payload = pull_request(title="deep")
    deep_payload["deep"] = json.loads("[" * 800 + "]" * 800)
    deep = json.dumps(deep_payload).encode()
    sent = {}
    for body in (hostile, deep):
        delivery = str(uuid.uuid4())
        answer = deliver(api, body, headers_for(body, delivery=delivery))
        assert answer.status_code == 202, answer.text
        sent[answer.json()["id"]] = (body, delivery)
    hostile_id, deep_id = sent

    # When the same delivery comes again, as it was or with another (signed) body under its id
    again = deliver(api, hostile, headers_for(hostile, delivery=sent[hostile_id][1]))
    assert (again.status_code, again.json()) == (200, {"status": "duplicate", "event_id": hostile_id})
    swapped = json.dumps(pull_request(title="swapped")).encode()
    replaced = deliver(api, swapped, headers_for(swapped, delivery=sent[hostile_id][1]))
    assert (replaced.status_code, replaced.json()) == (200, {"status": "duplicate", "event_id": hostile_id})

    # Then each event settles with one task whose prompt holds the payload's text as written
    for event_id in sent:
        event = settled(api, event_id)
        assert event["state"] == "completed", event
        assert [t["state"] for t in event["tasks"]] == ["completed"]
    task = api.get(f"/task/{settled(api, hostile_id)['tasks'][0]['id']}").json()
    assert task["prompt"] == f"Review {HOSTILE_TITLE}: {HOSTILE_BODY}"  # not "Review 49 ..." nor "<class 'str'>"
    assert task["result"] == task["prompt"]  # the echo worker: nothing evaluated on the way back either
    assert settled(api, hostile_id)["attrs"]["title"] == HOSTILE_TITLE
    deep_task = api.get(f"/task/{settled(api, deep_id)['tasks'][0]['id']}").json()
    assert deep_task["prompt"].startswith("Review deep: This is a pretty simple change")

    # And only the accepted events are listed, each stored byte for byte as delivered
    assert sorted(e["id"] for e in api.get("/events").json()) == sorted(sent)
    assert len(api.get("/tasks").json()) == 2
    for event_id, (body, delivery) in sent.items():
        event = api.get(f"/event/{event_id}").json()
        assert event["payload"] == json.loads(body)
        assert event["delivery_id"] == delivery
        assert redis_client.hget(f"ty:event:{event_id}", "payload") == body.decode()
    assert len(redis_client.keys("ty:delivery:*")) == 2
    duplicates = api.get("/logs", params={"event": hostile_id, "action": "event_duplicate"}).json()
    assert len(duplicates) == 2
    assert_unharmed(cluster, api)
