"""The typed settings model: the shape of ``taskyard.yaml`` (DESIGN section 4).

Unknown keys are errors. Durations accept a number of seconds or ``500ms``, ``30s``, ``10m``, ``1h``, ``1d``.
Every duration field is stored in seconds (float). Defaults with units live in ``config/defaults.py``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from config import defaults

__all__ = [
    "ApiKeySpec",
    "Duration",
    "OutboundSpec",
    "PolicySpec",
    "RateLimitSpec",
    "RepoSpec",
    "RuleSpec",
    "ScheduleSpec",
    "Settings",
    "SourceSpec",
    "TopScheduleSpec",
    "WorkerSpec",
    "parse_duration",
]

WORKER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

Scope = Literal["admin", "submit", "ingest", "read"]


def parse_duration(value: Any) -> float:
    """Seconds from ``30``, ``"30s"``, ``"10m"``, ``"1h"``, ``"500ms"``; raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m or 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration (use 30s, 10m, 1h)")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _at_least(minimum: float) -> Any:
    def check(value: float) -> float:
        if value < minimum:
            shown = f"{minimum * 1000:g}ms" if minimum < 1 else f"{minimum:g}s"
            raise ValueError(f"must be at least {shown}")
        return value

    return AfterValidator(check)


PositiveDuration = Annotated[float, BeforeValidator(parse_duration), _at_least(0.001)]  # seconds, >= 1 ms


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimitSpec(_Strict):
    burst: int = Field(ge=1)
    per_second: float = Field(gt=0)


def _check_key(value: str | None) -> str | None:
    if value is not None and (not value.strip() or value != value.strip()):
        raise ValueError("must be a non-empty key without surrounding spaces (an empty ${VAR} would turn "
                         "authentication off; remove the key to run without one)")
    return value


class ApiKeySpec(_Strict):
    key: str = Field(min_length=1)
    project: str = Field(default=defaults.DEFAULT_PROJECT, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    scopes: list[Scope] = Field(default_factory=lambda: ["admin"], min_length=1)  # type: ignore[arg-type]
    rate_limit: RateLimitSpec | None = None

    _key_shape = field_validator("key")(classmethod(lambda cls, v: _check_key(v)))


class OutboundSpec(_Strict):
    allow_hosts: list[str] = Field(default_factory=list)


SourceType = Literal["github", "hmac", "plain"]

# Per-type defaults, filled in before validation so a config names only what differs from the sender's norm.
_SOURCE_DEFAULTS: dict[str, dict[str, str]] = {
    "github": {"api_url": defaults.GITHUB_API_URL, "signature_header": "X-Hub-Signature-256",
               "delivery_header": "X-GitHub-Delivery", "event_header": "X-GitHub-Event"},
    "hmac": {"signature_header": "X-Signature"},
    "plain": {},
}


class SourceSpec(_Strict):
    """An inbound webhook source, ``POST /webhook/<name>``.

    ``type`` says how a delivery is verified and read: ``github`` (``X-Hub-Signature-256`` and GitHub's event
    headers), ``hmac`` (any sender that signs the raw body with HMAC-SHA256 in ``signature_header``) or ``plain``
    (no signature: the API key protects it). Left out, it is inferred: the source named ``github`` is github, one
    with a ``secret`` is hmac, anything else plain. A github source without a secret is allowed; the API then asks
    for the API key instead. ``token`` and ``api_url`` are what write-back and lazy attributes call GitHub with.
    """

    type: SourceType | None = None
    secret: str | None = None
    token: str | None = None
    api_url: str | None = None
    signature_header: str | None = None
    delivery_header: str | None = None
    event_header: str | None = None
    max_body_bytes: int = Field(default=defaults.WEBHOOK_MAX_BODY_BYTES, ge=1)  # bytes

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


class PolicySpec(_Strict):
    """Taskyard's write-back policy: what a worker's results may do on GitHub.

    A task result that is a JSON object with ``comment``, ``status`` or ``labels`` asks for write-back; each
    request is checked here first. Defaults allow everything. Label names compare case-insensitively, as GitHub's
    do; ``blocked_labels`` may never be added or removed, and ``allowed_labels`` (when set) lists the only labels
    that may be. Comments longer than ``max_comment_chars`` are cut with a visible note.
    """

    comment: bool = True
    status: bool = True
    labels: bool = True
    max_comment_chars: int = Field(default=defaults.GITHUB_MAX_COMMENT_CHARS, ge=1, le=65_536)  # characters
    blocked_labels: list[str] = Field(default_factory=list)
    allowed_labels: list[str] | None = None


class RepoSpec(_Strict):
    path: str
    base_ref: str = "main"
    allowed_paths: list[str] = Field(default_factory=list)


def cron_trigger(cron: str, timezone: str) -> Any:
    """APScheduler's trigger for a five-field crontab line in an IANA timezone; ValueError when either is bad."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(cron, timezone=timezone)
    except Exception as exc:  # noqa: BLE001 - APScheduler raises ValueError, zoneinfo its own errors
        raise ValueError(f"invalid cron {cron!r} or timezone {timezone!r}: {exc}") from None


class ScheduleSpec(_Strict):
    """A cron entry under a worker's ``schedule:``: its task goes to that worker."""

    cron: str  # five fields: minute hour day-of-month month day-of-week
    prompt: str = Field(min_length=1)
    timezone: str = "UTC"  # IANA name, e.g. Europe/Berlin
    name: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

    @model_validator(mode="after")
    def _valid_cron(self) -> ScheduleSpec:
        cron_trigger(self.cron, self.timezone)
        return self


class TopScheduleSpec(ScheduleSpec):
    """A top-level ``schedules:`` entry: names exactly one of ``worker`` or ``pool``."""

    worker: str | None = None
    pool: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> TopScheduleSpec:
        if (self.worker is None) == (self.pool is None):
            raise ValueError("a schedule under schedules: names exactly one of worker or pool")
        return self


ConflictPolicy = Literal["queue", "cancel_running", "skip"]
_EVENT_TYPE_RE = re.compile(r"[A-Za-z0-9_.*?\[\]!:/-]+")  # pull_request.opened, push, pull_request.*, *


class RuleSpec(_Strict):
    """An event rule: an event from ``source`` whose type is in ``on`` and that passes ``filter`` becomes a task
    with ``prompt`` rendered from the event, for ``worker`` or ``pool``.

    This model checks the shape only. Filter and template syntax is checked by ``engine.rules.RuleBook.build``
    (config may not import the engine), which ``taskyard config check`` and ``serve`` call after loading.
    A top-level rule (``rules:``) names exactly one of ``worker`` or ``pool``; a rule in a worker's ``events:``
    (mecha's format) names neither, its target being that worker.
    """

    under_worker: ClassVar[bool] = False

    source: str
    on: list[str] = Field(min_length=1)  # event types; globs such as pull_request.* and * allowed
    filter: dict[str, Any] = Field(default_factory=dict)
    prompt: str = Field(min_length=1)
    auto: bool = True  # false: the event matches and is recorded, but no task is dispatched
    concurrency_key: str | None = Field(default=None, min_length=1)  # template, e.g. "{{.repo_name}}#{{.number}}"
    on_conflict: ConflictPolicy = "queue"  # what a match does while a task with the same key runs
    worker: str | None = None
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


class WorkerSpec(_Strict):
    """One worker definition: exactly one of ``command``, ``endpoint`` or ``handler``."""

    name: str
    command: list[str] | None = None
    endpoint: str | None = None
    handler: str | None = None
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout: PositiveDuration = defaults.TASK_TIMEOUT_S
    concurrency: int = Field(default=1, ge=1, le=1024)
    max_queue_depth: int | None = Field(default=None, ge=1)
    max_retries: int = Field(default=defaults.MAX_RETRIES, ge=1, le=10)
    pools: list[str] = Field(default_factory=list)
    auto: bool = True  # takes round-robin traffic when a task names no worker and no pool
    headers: dict[str, str] = Field(default_factory=dict)  # endpoint only: sent with every request
    repo: RepoSpec | None = None
    events: list[WorkerRuleSpec] = Field(default_factory=list)  # rules whose target is this worker
    schedule: list[ScheduleSpec] = Field(default_factory=list)
    policy: PolicySpec = Field(default_factory=PolicySpec)  # what GitHub write-back may do with its results

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not WORKER_NAME_RE.fullmatch(value) or len(value) > 100:
            raise ValueError("must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 100 characters)")
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        if isinstance(value, str):
            return shlex.split(value)
        return value

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name a program")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("handler")
    @classmethod
    def _handler_path(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError("must be 'package.module:function'")
        return value

    @model_validator(mode="after")
    def _exactly_one_backend(self) -> WorkerSpec:
        given = [k for k in ("command", "endpoint", "handler") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "exactly one of command, endpoint or handler is required"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return "command" if self.command else "endpoint" if self.endpoint else "handler"


class Settings(_Strict):
    """Everything a Taskyard process needs, validated. Built by :func:`config.loader.load_settings`."""

    api_key: str | None = None
    api_keys: list[ApiKeySpec] = Field(default_factory=list)
    redis_url: str | None = None
    data_dir: Path = Path(defaults.DATA_DIR)
    host: str = defaults.HOST
    port: int = Field(default=defaults.PORT, ge=0, le=65535)
    max_queue_depth: int = Field(default=defaults.MAX_QUEUE_DEPTH, ge=1)
    rate_limit: RateLimitSpec | None = None
    outbound: OutboundSpec = Field(default_factory=OutboundSpec)
    sources: dict[str, SourceSpec] = Field(default_factory=dict)
    workers: list[WorkerSpec] = Field(default_factory=list)
    workers_dir: Path | None = None
    rules: list[RuleSpec] = Field(default_factory=list)  # top-level rules; each names a worker or a pool
    heartbeat_interval: Annotated[float, BeforeValidator(parse_duration), _at_least(0.1)] = \
        defaults.HEARTBEAT_INTERVAL_S
    offline_after_heartbeats: int = Field(default=defaults.OFFLINE_AFTER_HEARTBEATS, ge=2)
    drain_timeout: Duration = defaults.DRAIN_TIMEOUT_S
    task_expiry: Annotated[float, BeforeValidator(parse_duration), _at_least(1.0)] = defaults.TASK_EXPIRY_S
    max_lost_deliveries: int = Field(default=defaults.MAX_LOST_DELIVERIES, ge=1)
    poll_timeout: Annotated[float, BeforeValidator(parse_duration), _at_least(0.01)] = defaults.POLL_TIMEOUT_S
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    builtin_echo: bool = True  # define the `echo` worker when the config names no worker
    # engine processes per serve (webhook matching, dispatch, write-back); each has its own interpreter lock
    engine_processes: int = Field(default=defaults.ENGINE_PROCESSES, ge=1, le=64)
    schedules: list[TopScheduleSpec] = Field(default_factory=list)
    _worker_files: dict[str, str] = PrivateAttr(default_factory=dict)  # worker -> workers_dir file it came from

    @property
    def worker_files(self) -> dict[str, str]:
        """Where each worker read from ``workers_dir`` came from, so errors about it name its own file."""
        return self._worker_files

    @field_validator("api_key")
    @classmethod
    def _api_key_shape(cls, value: str | None) -> str | None:
        return _check_key(value)

    @field_validator("sources", mode="before")
    @classmethod
    def _github_source_type(cls, value: Any) -> Any:
        """The source named ``github`` is a GitHub source unless it names another type."""
        if isinstance(value, dict) and "github" in value:
            given = value["github"] if value["github"] is not None else {}
            if isinstance(given, dict) and not given.get("type"):
                value = {**value, "github": {**given, "type": "github"}}
        return value

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        for name in value:
            if not WORKER_NAME_RE.fullmatch(name) or len(name) > 100:
                raise ValueError(f"source name {name!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 100 characters)")
            if name == "schedule":
                raise ValueError("the source name 'schedule' is reserved for cron schedules")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError("must be a redis://, rediss:// or unix:// URL (leave it out for the embedded Redis)")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for worker in self.workers:
            if worker.name in seen:
                raise ValueError(f"worker {worker.name!r} is defined twice")
            seen.add(worker.name)
        keys = [k.key for k in self.api_keys]
        if len(set(keys)) != len(keys):
            raise ValueError("api_keys: the same key is listed twice")
        return self

    @property
    def offline_after_s(self) -> float:
        """Seconds without a heartbeat after which a worker process counts as gone."""
        return self.heartbeat_interval * self.offline_after_heartbeats

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_key or self.api_keys)

    def worker(self, name: str) -> WorkerSpec | None:
        return next((w for w in self.workers if w.name == name), None)
