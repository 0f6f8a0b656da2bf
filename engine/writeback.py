"""GitHub write-back: a task result asks for a comment, a commit status or labels; policy decides; steps run.

Three stages, so each can be tested alone and a half-done write-back resumes where it stopped:

1. :func:`parse_result` reads the result text. Only a JSON object (optionally inside one fenced code block) with
   ``comment``, ``status`` or ``labels`` asks for write-back; anything else is an ordinary result (None).
   A malformed field becomes a ``problems`` entry, never an exception: the task already succeeded.
2. :func:`plan` turns the request into :class:`Step` s, each with a stable ``key`` and a policy ``decision``
   (``allowed``, ``truncated``, ``denied: <why>``, ``skipped: <why>``). Steps carry all their arguments, so a
   stored plan can be executed later without the event.
3. :func:`execute` runs the runnable steps not yet ``done``, in order. A comment carries a hidden marker and is
   looked up before posting, so a retry after a lost response never posts it twice. The first retryable failure
   stops the run; the caller stores :func:`finished_keys` and tries again later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from config.settings import PolicySpec
from engine.errors import GitHubError
from engine.github_api import STATUS_STATES, GitHubClient

__all__ = [
    "Step",
    "StepResult",
    "Target",
    "TargetLike",
    "WriteBackRequest",
    "comment_marker",
    "execute",
    "finished_keys",
    "parse_result",
    "plan",
]

Action = Literal["comment", "status", "add_label", "remove_label"]

GITHUB_COMMENT_LIMIT = 65_536  # characters; GitHub refuses a longer comment body
_MARKER_ROOM = 128  # characters kept free under GitHub's limit for the hidden marker
_LABEL_CHARS = 50  # characters; GitHub's longest label name
_KEYS = ("comment", "status", "labels")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```\s*$", re.DOTALL)
_MARKER_SHAPE = re.compile(r"(?!.*--)[A-Za-z0-9_.:/-]{1,200}")  # no "--": it would end the HTML comment
_RUNNABLE = ("allowed", "truncated")


@dataclass(frozen=True)
class WriteBackRequest:
    """What a task result asks GitHub to show. ``problems`` lists the fields that were malformed and ignored."""

    comment: str | None = None
    status: str | None = None  # success | failure | error | pending
    status_description: str = ""
    add_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


class TargetLike(Protocol):
    """Anything with the four attributes :func:`plan` reads (a missing owner or repo skips every step)."""

    @property
    def owner(self) -> str | None: ...

    @property
    def repo(self) -> str | None: ...

    @property
    def number(self) -> int | None: ...

    @property
    def head_sha(self) -> str | None: ...


@dataclass(frozen=True)
class Target:
    """Where write-back goes. A push has no ``number`` (no comment or labels); an issue has no ``head_sha``."""

    owner: str
    repo: str
    number: int | None = None
    head_sha: str | None = None

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Target | None:
        """The target of a GitHub event's attributes (see ``engine.sources.github``); None without a repository."""
        owner, repo = attrs.get("repo_owner"), attrs.get("repo_name")
        if not isinstance(owner, str) or not isinstance(repo, str):
            return None
        number = attrs.get("number")
        sha = attrs.get("head_sha")
        return cls(owner, repo, number if isinstance(number, int) and not isinstance(number, bool) else None,
                   sha if isinstance(sha, str) else None)


@dataclass(frozen=True)
class Step:
    """One write-back action with its policy decision. ``args`` is JSON-able and complete (owner, repo, ...)."""

    key: str  # stable across retries: "comment", "status", "label+bug", "label-wip"
    action: Action
    args: dict[str, Any]
    decision: str  # allowed | truncated | denied: <why> | skipped: <why>

    @property
    def runnable(self) -> bool:
        return self.decision in _RUNNABLE


@dataclass(frozen=True)
class StepResult:
    """What running a step did. ``detail`` is the comment id, or the error text; ``retryable`` only when not ok."""

    key: str
    ok: bool
    detail: str = ""
    retryable: bool = False


# -- 1. parse ------------------------------------------------------------------------------------------------------


def parse_result(text: str) -> WriteBackRequest | None:
    """The write-back a result asks for, or None for an ordinary result."""
    data = _json_object(text)
    if data is None or not any(key in data and data[key] is not None for key in _KEYS):
        return None
    problems: list[str] = []
    comment = _comment(data.get("comment"), problems)
    state, description = _status(data.get("status"), problems)
    add, remove = _labels(data.get("labels"), problems)
    return WriteBackRequest(comment=comment, status=state, status_description=description, add_labels=add,
                            remove_labels=remove, problems=tuple(problems))


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _comment(value: Any, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append("comment must be a non-empty string")
        return None
    return value


def _status(value: Any, problems: list[str]) -> tuple[str | None, str]:
    if value is None:
        return None, ""
    state, description = (value.get("state"), value.get("description", "")) if isinstance(value, dict) \
        else (value, "")
    unknown = sorted(map(str, set(value) - {"state", "description"})) if isinstance(value, dict) else []
    if unknown:
        problems.append(f"status has unknown keys: {', '.join(unknown)}")
        return None, ""
    if state not in STATUS_STATES or not isinstance(description, str | None):
        problems.append(f"status must be one of {', '.join(STATUS_STATES)} or {{state, description}}")
        return None, ""
    return state, description or ""


def _labels(value: Any, problems: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if value is None:
        return (), ()
    if isinstance(value, list):
        return _names(value, "labels", problems), ()
    if isinstance(value, dict) and not set(value) - {"add", "remove"}:
        return _names(value.get("add") or [], "labels.add", problems), \
            _names(value.get("remove") or [], "labels.remove", problems)
    problems.append("labels must be a list of names or {add: [...], remove: [...]}")
    return (), ()


def _names(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(f"{where} must be a list of non-empty label names")
        return ()
    if any(v.strip() in (".", "..") for v in value):
        problems.append(f"{where}: '.' and '..' are not label names")
        return ()
    too_long = [v for v in value if len(v.strip()) > _LABEL_CHARS]
    if too_long:
        problems.append(f"{where}: label names are at most {_LABEL_CHARS} characters")
        return ()
    seen: dict[str, str] = {}
    for name in value:
        seen.setdefault(name.strip().casefold(), name.strip())
    return tuple(seen.values())


# -- 2. plan -------------------------------------------------------------------------------------------------------


def plan(request: WriteBackRequest, policy: PolicySpec, target: TargetLike, *, context: str = "taskyard",
         target_url: str | None = None) -> list[Step]:
    """The steps for ``request`` on ``target`` under ``policy``, in the order they will run.

    Policy is checked first (``denied``), then whether the event has a place for the step (``skipped``: a push
    has no number for a comment or labels, an issue has no sha for a status).
    """
    clean = _clean(target)
    where = {"owner": clean.owner, "repo": clean.repo}
    no_repo = "skipped: the event names no repository"
    no_number = "skipped: the event has no issue or pull request number"
    steps: list[Step] = []
    if request.comment is not None:
        args = {**where, "number": clean.number, "body": request.comment}
        limit = min(policy.max_comment_chars, GITHUB_COMMENT_LIMIT - _MARKER_ROOM)
        decision = ("denied: policy.comment is off" if not policy.comment else no_repo if not clean.owner
                    else no_number if clean.number is None else "truncated" if len(request.comment) > limit
                    else "allowed")
        if decision == "truncated":
            args["body"] = _truncate(request.comment, limit)
        steps.append(Step("comment", "comment", args, decision))
    if request.status is not None:
        decision = ("denied: policy.status is off" if not policy.status else no_repo if not clean.owner
                    else "skipped: the event has no commit sha" if clean.head_sha is None else "allowed")
        args = {**where, "sha": clean.head_sha, "state": request.status,
                "description": request.status_description, "context": context, "target_url": target_url}
        steps.append(Step("status", "status", args, decision))
    label_groups: tuple[tuple[Action, str, tuple[str, ...]], ...] = (
        ("add_label", "+", request.add_labels), ("remove_label", "-", request.remove_labels))
    for action, sign, names in label_groups:
        for name in names:
            decision = (_label_denial(name, policy) or (no_repo if not clean.owner else None)
                        or (no_number if clean.number is None else "allowed"))
            steps.append(Step(f"label{sign}{name}", action, {**where, "number": clean.number, "label": name},
                              decision))
    return steps


def _clean(target: TargetLike) -> Target:
    """A :class:`Target` with every field checked: a missing owner or repo becomes "", a bad number or sha None."""
    number, sha = target.number, target.head_sha
    owner, repo = target.owner, target.repo
    if not (isinstance(owner, str) and owner and isinstance(repo, str) and repo):
        owner = repo = ""
    return Target(
        owner=owner,
        repo=repo,
        number=number if isinstance(number, int) and not isinstance(number, bool) else None,
        head_sha=sha if isinstance(sha, str) and sha else None,
    )


def _label_denial(name: str, policy: PolicySpec) -> str | None:
    """Why policy refuses to touch label ``name`` (add or remove), or None. Names compare case-insensitively."""
    folded = name.casefold()
    if not policy.labels:
        return "denied: policy.labels is off"
    if folded in {b.casefold() for b in policy.blocked_labels}:
        return f"denied: label {name!r} is in blocked_labels"
    if policy.allowed_labels is not None and folded not in {a.casefold() for a in policy.allowed_labels}:
        return f"denied: label {name!r} is not in allowed_labels"
    return None


def _truncate(body: str, limit: int) -> str:
    note = f"\n\n---\n*Truncated by Taskyard: the result had {len(body):,} characters; the limit is {limit:,}.*"
    if limit <= len(note):
        return body[:limit]
    return body[: limit - len(note)] + note


# -- 3. execute ----------------------------------------------------------------------------------------------------


def comment_marker(marker: str) -> str:
    """The hidden HTML comment that identifies a write-back's comment on GitHub (invisible when rendered)."""
    if not _MARKER_SHAPE.fullmatch(marker):
        raise ValueError("marker must be 1-200 characters of letters, digits, '_', '.', ':', '/' or single '-'")
    return f"<!-- taskyard:{marker} -->"


def execute(client: GitHubClient, steps: Iterable[Step], *, done: set[str], marker: str) -> list[StepResult]:
    """Run the runnable steps whose key is not in ``done``, in order; return what happened to each one tried.

    ``marker`` identifies this write-back (a task id, say). Every step is tried; a failed one is recorded and the
    next runs. The caller stores :func:`finished_keys` and retries the retryable failures later.
    """
    hidden = comment_marker(marker)
    results: list[StepResult] = []
    for step in steps:
        if not step.runnable or step.key in done:
            continue
        try:
            detail = _run(client, step, hidden)
        except GitHubError as exc:
            # Steps are independent (a comment, a status, each label): one failing does not hold back the rest.
            results.append(StepResult(step.key, False, exc.message, exc.retryable))
            continue
        results.append(StepResult(step.key, True, detail))
    return results


def finished_keys(results: Iterable[StepResult]) -> set[str]:
    """Keys never to run again: the steps that succeeded or failed for good."""
    return {r.key for r in results if r.ok or not r.retryable}


def _run(client: GitHubClient, step: Step, hidden: str) -> str:
    a = step.args
    if step.action == "comment":
        # Always look first: the comment may have been posted by a try whose answer was lost.
        existing = client.find_comment(a["owner"], a["repo"], a["number"], hidden)
        if existing is not None:
            return str(existing)
        return str(client.post_comment(a["owner"], a["repo"], a["number"], f"{a['body']}\n\n{hidden}"))
    if step.action == "status":
        client.set_status(a["owner"], a["repo"], a["sha"], a["state"], a["description"], a["context"],
                          a.get("target_url"))
        return a["state"]
    if step.action == "add_label":
        client.add_labels(a["owner"], a["repo"], a["number"], [a["label"]])
        return "added"
    client.remove_label(a["owner"], a["repo"], a["number"], a["label"])
    return "removed"

