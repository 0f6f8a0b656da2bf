"""GitHub webhooks: verify ``X-Hub-Signature-256`` and read a payload into flat attributes.

The event type is ``X-GitHub-Event`` plus ``.<action>`` when the payload has one (``pull_request.opened``,
``issue_comment.created``, ``push``). Attributes are taken wherever the payload allows; one that cannot be
derived is absent, never None. The costly ones (``diff``, ``file_list``) are fetched on demand with
:class:`engine.github_api.GitHubClient` when a prompt uses them, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from config.settings import SourceSpec
from engine.errors import WebhookInvalid
from engine.sources.event import InboundEvent, header, json_body, verify_hmac

__all__ = ["extract_attributes", "parse", "subject_of"]

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
_BRANCH_PREFIX = "refs/heads/"
_TAG_PREFIX = "refs/tags/"
# Events whose payload carries a check or workflow run with a head commit rather than a pull request.
_RUN_OBJECTS = {"check_run": "check_run", "check_suite": "check_suite", "workflow_run": "workflow_run",
                "workflow_job": "workflow_job"}


def parse(name: str, spec: SourceSpec, headers: Mapping[str, str], body: bytes) -> InboundEvent:
    """Verify (when the source has a secret) and parse one GitHub delivery. ``headers`` has lowercase keys."""
    if spec.secret:
        sig_header = spec.signature_header or SIGNATURE_HEADER
        verify_hmac(spec.secret, body, header(headers, sig_header), sig_header, prefix_required=True)
    event_header = spec.event_header or EVENT_HEADER
    event = header(headers, event_header)
    if event is None:
        raise WebhookInvalid(f"missing {event_header}")
    payload = json_body(body)
    if not isinstance(payload, dict):
        raise WebhookInvalid("body is not a JSON object")
    action = payload.get("action")
    attrs = extract_attributes(event, payload)
    return InboundEvent(
        source=name,
        type=f"{event}.{action}" if isinstance(action, str) and action else event,
        delivery_id=header(headers, spec.delivery_header),
        actor=attrs.get("sender"),
        subject=subject_of(attrs),
        attrs=attrs,
        payload=payload,
        ping=event == "ping",
    )


def extract_attributes(event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Flat attributes of a GitHub payload: repo, number, title, body, branches, sha, labels, sender, url...

    A null body (GitHub sends null for an empty description) becomes ``""``: the object exists, its text is empty.
    """
    attrs: dict[str, Any] = {"event": event}
    _put(attrs, "action", _str(payload.get("action")))
    _repository(attrs, _obj(payload.get("repository")))
    _put(attrs, "sender", _str(_obj(payload.get("sender")).get("login")))
    _put(attrs, "label", _str(_obj(payload.get("label")).get("name")))
    ref = _str(payload.get("ref"))
    _put(attrs, "ref", ref)

    pull = _obj(payload.get("pull_request"))
    issue = _obj(payload.get("issue"))
    if pull:
        _pull_request(attrs, pull, payload)
        _put(attrs, "review_state", _str(_obj(payload.get("review")).get("state")))
    elif issue:
        _issue(attrs, issue)
    if "comment" in payload:
        attrs["comment"] = _text(_obj(payload.get("comment")).get("body"))
    if event == "push":
        _push(attrs, payload, ref)
    run_key = _RUN_OBJECTS.get(event)
    if run_key is not None:
        _run(attrs, _obj(payload.get(run_key)))
    return attrs


def subject_of(attrs: Mapping[str, Any]) -> str | None:
    """``owner/repo#12`` for a pull request or issue, ``owner/repo@branch`` for a push or run, else the repo."""
    repo = attrs.get("repo")
    if repo is None:
        return None
    if "number" in attrs:
        return f"{repo}#{attrs['number']}"
    where = attrs.get("head_branch") or attrs.get("tag")
    return f"{repo}@{where}" if where else repo


def _repository(attrs: dict[str, Any], repo: Mapping[str, Any]) -> None:
    full = _str(repo.get("full_name"))
    owner = _str(_obj(repo.get("owner")).get("login"))
    name = _str(repo.get("name"))
    if full and "/" in full and not (owner and name):
        owner, name = full.split("/", 1)
    if not full and owner and name:
        full = f"{owner}/{name}"
    _put(attrs, "repo_owner", owner)
    _put(attrs, "repo_name", name)
    _put(attrs, "repo", full)


def _pull_request(attrs: dict[str, Any], pull: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
    _put(attrs, "number", _int(pull.get("number")) or _int(payload.get("number")))
    _put(attrs, "title", _str(pull.get("title")))
    attrs["body"] = _text(pull.get("body"))
    head, base = _obj(pull.get("head")), _obj(pull.get("base"))
    _put(attrs, "head_branch", _str(head.get("ref")))
    _put(attrs, "head_sha", _str(head.get("sha")))
    _put(attrs, "base_branch", _str(base.get("ref")))
    _put(attrs, "base_sha", _str(base.get("sha")))
    attrs["labels"] = _label_names(pull.get("labels"))
    _put(attrs, "url", _str(pull.get("html_url")))


def _issue(attrs: dict[str, Any], issue: Mapping[str, Any]) -> None:
    _put(attrs, "number", _int(issue.get("number")))
    _put(attrs, "title", _str(issue.get("title")))
    attrs["body"] = _text(issue.get("body"))
    attrs["labels"] = _label_names(issue.get("labels"))
    _put(attrs, "url", _str(issue.get("html_url")))
    attrs["is_pull_request"] = "pull_request" in issue  # a comment on a PR arrives as an issue_comment


def _push(attrs: dict[str, Any], payload: Mapping[str, Any], ref: str | None) -> None:
    if ref and ref.startswith(_BRANCH_PREFIX):
        attrs["head_branch"] = ref[len(_BRANCH_PREFIX):]
    elif ref and ref.startswith(_TAG_PREFIX):
        attrs["tag"] = ref[len(_TAG_PREFIX):]
    # An all-zero sha means "no commit": the ref was created (before) or deleted (after).
    _put(attrs, "head_sha", _commit(payload.get("after")))
    _put(attrs, "before", _commit(payload.get("before")))
    if isinstance(payload.get("deleted"), bool):
        attrs["deleted"] = payload["deleted"]


def _run(attrs: dict[str, Any], run: Mapping[str, Any]) -> None:
    suite = _obj(run.get("check_suite"))
    _put(attrs, "head_sha", _str(run.get("head_sha")) or _str(suite.get("head_sha")))
    _put(attrs, "head_branch", _str(run.get("head_branch")) or _str(suite.get("head_branch")))
    _put(attrs, "conclusion", _str(run.get("conclusion")))
    pulls = run.get("pull_requests")
    if isinstance(pulls, list) and len(pulls) == 1:  # one pull request: write-back has a place to go
        _put(attrs, "number", _int(_obj(pulls[0]).get("number")))


def _label_names(labels: Any) -> list[str]:
    if not isinstance(labels, list):
        return []
    return [name for name in (_str(_obj(label).get("name")) for label in labels) if name]


def _put(attrs: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        attrs[key] = value


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _commit(value: Any) -> str | None:
    sha = _str(value)
    return sha if sha and sha.strip("0") else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
