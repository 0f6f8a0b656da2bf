"""Webhook verification and parsing: every GitHub fixture, tampering, and the generic hmac/plain sources."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from config.settings import Settings, SourceSpec
from engine.errors import ValidationFailed, WebhookInvalid
from engine.sources import InboundEvent, parse_delivery
from tests.fixture_paths import GITHUB_WEBHOOKS

FIXTURES = GITHUB_WEBHOOKS
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
SECRET = "whsec_unit_test"


def github_spec(**extra: object) -> SourceSpec:
    settings = Settings.model_validate({"sources": {"github": {"secret": SECRET, **extra}}})
    return settings.sources["github"]


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(fixture: Path, *, secret: str = SECRET, spec: SourceSpec | None = None,
            drop: tuple[str, ...] = ()) -> InboundEvent:
    body = fixture.read_bytes()
    headers = {
        "x-github-event": fixture.name.split(".")[0],
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-hub-signature-256": sign(body, secret),
        "content-type": "application/json",
    }
    for name in drop:
        headers.pop(name)
    return parse_delivery("github", spec or github_spec(), headers, body)


def test_the_fixture_directory_is_there() -> None:
    assert len(FIXTURE_FILES) >= 17, f"expected the GitHub webhook fixtures under {FIXTURES}"


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=lambda p: p.stem)
def test_every_fixture_verifies_and_parses(fixture: Path) -> None:
    payload = json.loads(fixture.read_bytes())
    event = deliver(fixture)

    header_event = fixture.name.split(".")[0]
    action = payload.get("action")
    assert event.type == (f"{header_event}.{action}" if isinstance(action, str) else header_event)
    assert event.source == "github"
    assert event.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert event.payload == payload
    assert event.ping is (header_event == "ping")
    assert event.actor == payload["sender"]["login"] == event.attrs["sender"]
    assert event.attrs["event"] == header_event
    assert event.attrs["repo"] == payload["repository"]["full_name"]
    assert f"{event.attrs['repo_owner']}/{event.attrs['repo_name']}" == event.attrs["repo"]
    assert None not in event.attrs.values()  # absent, never None
    json.dumps(event.attrs)  # JSON-able
    assert event.subject is not None and event.subject.startswith(event.attrs["repo"])


@pytest.mark.parametrize("fixture", [p for p in FIXTURE_FILES if p.name.startswith("pull_request")],
                         ids=lambda p: p.stem)
def test_pull_request_events_carry_the_pull_requests_attributes(fixture: Path) -> None:
    pull = json.loads(fixture.read_bytes())["pull_request"]
    attrs = deliver(fixture).attrs
    assert attrs["number"] == pull["number"] == 2
    assert attrs["title"] == pull["title"]
    assert attrs["body"] == (pull["body"] or "")
    assert attrs["head_branch"] == pull["head"]["ref"] == "changes"
    assert attrs["base_branch"] == pull["base"]["ref"] == "master"
    assert attrs["head_sha"] == pull["head"]["sha"]
    assert attrs["labels"] == [label["name"] for label in pull["labels"]] == ["bug"]
    assert attrs["url"] == pull["html_url"]


def test_pull_request_opened_reads_as_the_design_example() -> None:
    event = deliver(FIXTURES / "pull_request.opened.json")
    assert event.type == "pull_request.opened"
    assert event.subject == "Codertocat/Hello-World#2"
    assert event.attrs["action"] == "opened"
    assert event.attrs["body"].startswith("This is a pretty simple change")
    assert "diff" not in event.attrs and "file_list" not in event.attrs  # lazy: fetched only when a prompt asks


def test_a_null_pull_request_body_becomes_empty_text() -> None:
    attrs = deliver(FIXTURES / "pull_request.opened-null-body.json").attrs
    assert attrs["body"] == ""
    assert attrs["title"] == "Update the README with new information."


def test_an_issue_with_an_empty_body_parses() -> None:
    event = deliver(FIXTURES / "issues.opened.with-empty-body.json")
    assert event.type == "issues.opened"
    assert event.attrs["body"] == "" and event.attrs["number"] == 1
    assert event.attrs["is_pull_request"] is False
    assert "head_sha" not in event.attrs  # an issue has no commit


def test_issue_comment_takes_number_and_title_from_the_issue() -> None:
    payload = json.loads((FIXTURES / "issue_comment.created.json").read_bytes())
    event = deliver(FIXTURES / "issue_comment.created.json")
    assert event.type == "issue_comment.created"
    assert event.attrs["number"] == payload["issue"]["number"]
    assert event.attrs["title"] == payload["issue"]["title"]
    assert event.attrs["body"] == payload["issue"]["body"]
    assert event.attrs["comment"] == payload["comment"]["body"]
    assert event.subject == "Codertocat/Hello-World#1"


def test_labeled_events_name_the_label() -> None:
    assert deliver(FIXTURES / "issues.labeled.json").attrs["label"] == "bug"
    assert deliver(FIXTURES / "pull_request.labeled.json").attrs["label"] == "bug"


def test_push_to_a_branch_has_branch_and_commits() -> None:
    payload = json.loads((FIXTURES / "push.with-new-branch.json").read_bytes())
    event = deliver(FIXTURES / "push.with-new-branch.json")
    assert event.type == "push"
    assert event.attrs["head_branch"] == "master"
    assert event.attrs["ref"] == "refs/heads/master"
    assert event.attrs["head_sha"] == payload["after"]
    assert "before" not in event.attrs  # all zeros: the branch is new, there is no earlier commit
    assert "number" not in event.attrs
    assert event.subject == "Codertocat/Hello-World@master"


def test_push_deleting_a_tag_has_no_head_commit() -> None:
    payload = json.loads((FIXTURES / "push.default.json").read_bytes())
    event = deliver(FIXTURES / "push.default.json")
    assert event.attrs["tag"] == "simple-tag" and "head_branch" not in event.attrs
    assert event.attrs["before"] == payload["before"]
    assert "head_sha" not in event.attrs and event.attrs["deleted"] is True
    assert event.subject == "Codertocat/Hello-World@simple-tag"


def test_check_run_and_workflow_run_carry_the_head_commit() -> None:
    check = deliver(FIXTURES / "check_run.completed.json").attrs
    assert check["head_sha"] == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert check["head_branch"] == "changes" and check["conclusion"] == "success"
    assert check["number"] == 2  # exactly one pull request is attached to the run
    run = deliver(FIXTURES / "workflow_run.completed.json")
    assert run.attrs["head_sha"] == "3484a3fb816e0859fd6e1cea078d76385ff50625"
    assert run.attrs["head_branch"] == "master" and "number" not in run.attrs
    assert run.subject == "octo-org/octo-repo@master"


def test_ping_is_flagged_so_it_creates_no_work() -> None:
    event = deliver(FIXTURES / "ping.default.json")
    assert event.ping is True and event.type == "ping"


def test_a_tampered_body_fails_the_signature() -> None:
    body = (FIXTURES / "pull_request.opened.json").read_bytes()
    headers = {"x-github-event": "pull_request", "x-hub-signature-256": sign(body)}
    tampered = body.replace(b'"opened"', b'"closed"', 1)
    assert tampered != body
    with pytest.raises(WebhookInvalid) as info:
        parse_delivery("github", github_spec(), headers, tampered)
    assert info.value.reason == "signature mismatch"
    assert info.value.message == "webhook validation failed"
    assert isinstance(info.value, ValidationFailed)


def test_a_wrong_secret_fails_the_signature() -> None:
    with pytest.raises(WebhookInvalid, match="webhook validation failed") as info:
        deliver(FIXTURES / "issues.opened.json", secret="not-the-secret")
    assert info.value.reason == "signature mismatch"


@pytest.mark.parametrize(("header", "reason"), [
    ("x-hub-signature-256", "missing X-Hub-Signature-256"),
    ("x-github-event", "missing X-GitHub-Event"),
])
def test_missing_github_headers_are_refused(header: str, reason: str) -> None:
    with pytest.raises(WebhookInvalid) as info:
        deliver(FIXTURES / "issues.opened.json", drop=(header,))
    assert info.value.reason == reason


def test_a_missing_delivery_id_is_not_an_error() -> None:
    assert deliver(FIXTURES / "issues.opened.json", drop=("x-github-delivery",)).delivery_id is None


@pytest.mark.parametrize("signature", ["", "deadbeef", "sha1=abc", "sha256=", "sha256=zz\u00e9"])
def test_malformed_signatures_are_refused(signature: str) -> None:
    body = b'{"action": "opened"}'
    with pytest.raises(WebhookInvalid):
        parse_delivery("github", github_spec(), {"x-github-event": "issues", "x-hub-signature-256": signature}, body)


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json", "body is not JSON"),
    (b"\xff\xfe{}", "body is not UTF-8"),
    (b"[1, 2]", "body is not a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "body is not JSON"),
])
def test_bodies_that_are_not_a_json_object_are_refused(body: bytes, reason: str) -> None:
    headers = {"x-github-event": "push", "x-hub-signature-256": sign(body)}
    with pytest.raises(WebhookInvalid) as info:
        parse_delivery("github", github_spec(), headers, body)
    assert info.value.reason == reason


def test_a_github_source_without_a_secret_skips_the_signature() -> None:
    spec = Settings.model_validate({"sources": {"github": {"token": "ghp_x"}}}).sources["github"]
    assert spec.kind == "github" and spec.verifies_signature is False
    body = (FIXTURES / "issues.opened.json").read_bytes()
    event = parse_delivery("github", spec, {"x-github-event": "issues"}, body)
    assert event.type == "issues.opened"


def test_mixed_case_header_names_are_accepted() -> None:
    body = (FIXTURES / "issues.opened.json").read_bytes()
    event = parse_delivery("github", github_spec(), {"X-GitHub-Event": "issues", "X-Hub-Signature-256": sign(body)},
                           body)
    assert event.type == "issues.opened"


def test_a_body_over_max_body_bytes_is_refused() -> None:
    body = (FIXTURES / "issues.opened.json").read_bytes()
    spec = github_spec(max_body_bytes=100)
    with pytest.raises(WebhookInvalid) as info:
        parse_delivery("github", spec, {"x-github-event": "issues", "x-hub-signature-256": sign(body)}, body)
    assert "max_body_bytes" in info.value.reason


# -- config ----------------------------------------------------------------------------------------------------------


def test_source_types_are_inferred_and_defaults_follow_the_type() -> None:
    sources = Settings.model_validate({"sources": {
        "github": {"secret": "a"}, "alerts": {"secret": "b"}, "open": {}, "ghe": {"type": "github"},
    }}).sources
    assert {name: spec.kind for name, spec in sources.items()} == {
        "github": "github", "alerts": "hmac", "open": "plain", "ghe": "github"}
    assert sources["github"].api_url == "https://api.github.com"
    assert sources["github"].event_header == "X-GitHub-Event"
    assert sources["github"].delivery_header == "X-GitHub-Delivery"
    assert sources["alerts"].signature_header == "X-Signature"
    assert sources["alerts"].delivery_header is None and sources["alerts"].api_url is None
    assert sources["open"].verifies_signature is False and sources["alerts"].verifies_signature is True
    assert sources["open"].max_body_bytes == 5_242_880


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"type": "hmac"}, "needs a secret"),
    ({"secret": ""}, "must not be empty"),
    ({"type": "svn"}, "type"),
    ({"api_url": "ftp://x"}, "http"),
    ({"max_body_bytes": 0}, "greater than or equal to 1"),
])
def test_bad_sources_are_config_errors(spec: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Settings.model_validate({"sources": {"alerts": spec}})


# -- generic sources -------------------------------------------------------------------------------------------------


def alerts_spec(**extra: object) -> SourceSpec:
    return Settings.model_validate({"sources": {"alerts": {"secret": "s2", **extra}}}).sources["alerts"]


@pytest.mark.parametrize("form", ["hex", "prefixed"])
def test_generic_hmac_accepts_both_signature_forms(form: str) -> None:
    body = b'{"type": "alert.fired", "subject": "db-1", "actor": "prometheus", "severity": "high"}'
    digest = hmac.new(b"s2", body, hashlib.sha256).hexdigest()
    signature = digest if form == "hex" else f"sha256={digest}"
    event = parse_delivery("alerts", alerts_spec(), {"x-signature": signature}, body)
    assert event.type == "alert.fired"
    assert (event.subject, event.actor) == ("db-1", "prometheus")
    assert event.attrs["severity"] == "high"
    assert event.ping is False and event.delivery_id is None


def test_generic_hmac_refuses_a_bad_or_missing_signature() -> None:
    body = b'{"type": "alert.fired"}'
    with pytest.raises(WebhookInvalid) as info:
        parse_delivery("alerts", alerts_spec(), {"x-signature": "00" * 32}, body)
    assert info.value.reason == "signature mismatch"
    with pytest.raises(WebhookInvalid) as info:
        parse_delivery("alerts", alerts_spec(), {}, body)
    assert info.value.reason == "missing X-Signature"


def test_generic_event_type_prefers_the_configured_header() -> None:
    spec = Settings.model_validate({"sources": {"ci": {"event_header": "X-Event", "delivery_header": "X-Id"}}}
                                   ).sources["ci"]
    body = b'{"type": "from-body"}'
    assert parse_delivery("ci", spec, {"x-event": "build.failed", "x-id": "d-1"}, body).type == "build.failed"
    event = parse_delivery("ci", spec, {}, body)
    assert event.type == "from-body" and event.delivery_id is None
    assert parse_delivery("ci", spec, {}, b'{"type": 5}').type == "webhook"
    assert parse_delivery("ci", spec, {}, b"[1, 2]").type == "webhook"


def test_plain_sources_need_no_signature_but_still_need_json() -> None:
    spec = SourceSpec()
    assert spec.kind == "plain"
    event = parse_delivery("open", spec, {}, b'{"hello": "world"}')
    assert event.type == "webhook" and event.attrs == {"hello": "world"}
    with pytest.raises(WebhookInvalid) as info:
        parse_delivery("open", spec, {}, b"hello")
    assert info.value.reason == "body is not JSON"
