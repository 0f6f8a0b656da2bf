"""The settings of webhooks and what they start: sources, rules, schedules, and the write-back policy."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from config import defaults
from config.base import WORKER_NAME_RE, RateLimitSpec, Strict

__all__ = ["PolicySpec", "RuleSpec", "ScheduleSpec", "SourceSpec", "TopScheduleSpec", "WorkerRuleSpec", "cron_trigger"]

SourceType = Literal["github", "hmac", "plain"]

# Per-type defaults, filled in before validation so a config names only what differs from the sender's norm.
_SOURCE_DEFAULTS: dict[str, dict[str, str]] = {
    "github": {"api_url": defaults.GITHUB_API_URL, "signature_header": "X-Hub-Signature-256",
               "delivery_header": "X-GitHub-Delivery", "event_header": "X-GitHub-Event"},
    "hmac": {"signature_header": "X-Signature"},
    "plain": {},
}


class SourceSpec(Strict):
    """An inbound webhook source, ``POST /webhook/<name>``.

    ``type`` says how a delivery is verified and read: ``github`` (``X-Hub-Signature-256`` and GitHub's event
    headers), ``hmac`` (any sender that signs the raw body with HMAC-SHA256 in ``signature_header``) or ``plain``
    (no signature: the API key protects it). Left out, it is inferred: the source named ``github`` is github, one
    with a ``secret`` is hmac, anything else plain. A github source without a secret is allowed; the API then asks
    for the API key instead. ``token`` and ``api_url`` are what write-back and lazy attributes call GitHub with.
    """

    # github (the source named github), hmac (generic signed) or plain (API key)
    type: SourceType | None = None
    # HMAC secret; without one the source needs the API key
    secret: str | None = None
    # GitHub token for diffs and write-back
    token: str | None = None
    # GitHub API base URL (GitHub Enterprise)
    api_url: str | None = None
    # header carrying the HMAC signature (hmac sources)
    signature_header: str | None = None
    # header whose value deduplicates deliveries
    delivery_header: str | None = None
    # header naming the event type
    event_header: str | None = None
    max_body_bytes: int = Field(default=defaults.WEBHOOK_MAX_BODY_BYTES, ge=1)  # bytes
    rate_limit: RateLimitSpec | None = None  # one bucket for every delivery to this source; off unless set
    # the project its events (and their tasks) belong to; unset: the posting key's project, else default
    project: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

    @model_validator(mode="before")
    @classmethod
    def _type_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("type") or ("hmac" if data.get("secret") else "plain")
        filled = _SOURCE_DEFAULTS.get(kind) if isinstance(kind, str) else None
        if filled is None:
            return data  # an unknown type is reported by the `type` field itself
        given = {key: value for key, value in data.items() if value is not None}
        return {**filled, **given, "type": kind}

    @field_validator("secret", "token")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (an empty ${VAR} would turn verification off; remove the key "
                             "instead)")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _hmac_needs_secret(self) -> SourceSpec:
        if self.type == "hmac" and not self.secret:
            raise ValueError("an hmac source needs a secret (use type: plain for an unsigned source)")
        return self

    @property
    def kind(self) -> SourceType:
        """The resolved type (always set once validated; inferred from ``secret`` when built without a name)."""
        return self.type or ("hmac" if self.secret else "plain")

    @property
    def verifies_signature(self) -> bool:
        """True when deliveries carry a signature this source checks, so the API key is not needed."""
        return self.kind in ("github", "hmac") and bool(self.secret)


class PolicySpec(Strict):
    """Taskyard's write-back policy: what a worker's results may do on GitHub.

    A task result that is a JSON object with ``comment``, ``status`` or ``labels`` asks for write-back; each
    request is checked here first. Defaults allow everything. Label names compare case-insensitively, as GitHub's
    do; ``blocked_labels`` may never be added or removed, and ``allowed_labels`` (when set) lists the only labels
    that may be. Comments longer than ``max_comment_chars`` are cut with a visible note.
    """

    # may post the result as a pull request comment
    comment: bool = True
    # may set a commit status (context taskyard)
    status: bool = True
    # may add labels
    labels: bool = True
    max_comment_chars: int = Field(default=defaults.GITHUB_MAX_COMMENT_CHARS, ge=1, le=65_536)  # characters
    # labels never added
    blocked_labels: list[str] = Field(default_factory=list)
    # if set, the only labels that may be added
    allowed_labels: list[str] | None = None


def cron_trigger(cron: str, timezone: str) -> Any:
    """APScheduler's trigger for a five-field crontab line in an IANA timezone; ValueError when either is bad."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(cron, timezone=timezone)
    except Exception as exc:  # noqa: BLE001 - APScheduler raises ValueError, zoneinfo its own errors
        raise ValueError(f"invalid cron {cron!r} or timezone {timezone!r}: {exc}") from None


class ScheduleSpec(Strict):
    """A cron entry under a worker's ``schedule:``: its task goes to that worker."""

    cron: str  # five fields: minute hour day-of-month month day-of-week
    # the task's prompt
    prompt: str = Field(min_length=1)
    timezone: str = "UTC"  # IANA name, e.g. Europe/Berlin
    # a stable name for the schedule (default: from cron and prompt)
    name: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

    @model_validator(mode="after")
    def _valid_cron(self) -> ScheduleSpec:
        cron_trigger(self.cron, self.timezone)
        return self


class TopScheduleSpec(ScheduleSpec):
    """A top-level ``schedules:`` entry: names exactly one of ``worker`` or ``pool``."""

    # the target worker (or give pool)
    worker: str | None = None
    # the target pool (or give worker)
    pool: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> TopScheduleSpec:
        if (self.worker is None) == (self.pool is None):
            raise ValueError("a schedule under schedules: names exactly one of worker or pool")
        return self


ConflictPolicy = Literal["queue", "cancel_running", "skip"]
_EVENT_TYPE_RE = re.compile(r"[A-Za-z0-9_.*?\[\]!:/-]+")  # pull_request.opened, push, pull_request.*, *


class RuleSpec(Strict):
    """An event rule: an event from ``source`` whose type is in ``on`` and that passes ``filter`` becomes a task
    with ``prompt`` rendered from the event, for ``worker`` or ``pool``.

    This model checks the shape only. Filter and template syntax is checked by ``engine.rules.RuleBook.build``
    (config may not import the engine), which ``taskyard config check`` and ``serve`` call after loading.
    A top-level rule (``rules:``) names exactly one of ``worker`` or ``pool``; a rule in a worker's ``events:``
    (mecha's format) names neither, its target being that worker.
    """

    under_worker: ClassVar[bool] = False

    # the source name (a key of sources)
    source: str
    on: list[str] = Field(min_length=1)  # event types; globs such as pull_request.* and * allowed
    # attribute and payload-path conditions, lists any-of, globs, not
    filter: dict[str, Any] = Field(default_factory=dict)
    # the task's prompt template ({{.var}} or Jinja)
    prompt: str = Field(min_length=1)
    auto: bool = True  # false: the event matches and is recorded, but no task is dispatched
    concurrency_key: str | None = Field(default=None, min_length=1)  # template, e.g. "{{.repo_name}}#{{.number}}"
    on_conflict: ConflictPolicy = "queue"  # what a match does while a task with the same key runs
    # the target worker (top-level rules)
    worker: str | None = None
    # the target pool (top-level rules)
    pool: str | None = Field(default=None, min_length=1)

    @field_validator("source", "worker")
    @classmethod
    def _name_shape(cls, value: str | None) -> str | None:
        if value is not None and not WORKER_NAME_RE.fullmatch(value):
            raise ValueError("must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        return value

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("on")
    @classmethod
    def _event_types(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _EVENT_TYPE_RE.fullmatch(item):
                raise ValueError(f"{item!r} is not an event type (such as pull_request.opened, push or "
                                 "pull_request.*)")
        return value

    @model_validator(mode="after")
    def _target(self) -> RuleSpec:
        named = [k for k in ("worker", "pool") if getattr(self, k) is not None]
        if self.under_worker and named:
            raise ValueError(f"a rule under a worker must not name {' or '.join(named)}: its target is that worker")
        if not self.under_worker and len(named) != 1:
            raise ValueError("a top-level rule names exactly one of worker or pool"
                             + (" (got both)" if named else ""))
        if self.on_conflict != "queue" and self.concurrency_key is None:
            raise ValueError(f"on_conflict: {self.on_conflict} needs a concurrency_key")
        return self


class WorkerRuleSpec(RuleSpec):
    """A rule in a worker's ``events:`` list (mecha's worker YAML): same fields, target implied."""

    under_worker: ClassVar[bool] = True
