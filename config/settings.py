"""The typed settings model: the shape of ``taskyard.yaml`` (DESIGN section 4).

Unknown keys are errors. Durations accept a number of seconds or ``500ms``, ``30s``, ``10m``, ``1h``, ``1d``.
Every duration field is stored in seconds (float). Defaults with units live in ``config/defaults.py``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config import defaults
from config.base import (
    WORKER_NAME_RE,
    Duration,
    PositiveDuration,
    RateLimitSpec,
    Strict,
    at_least,
    parse_duration,
)
from config.detectors import DetectorSettings
from config.events import (
    PolicySpec,
    RuleSpec,
    ScheduleSpec,
    SourceSpec,
    TopScheduleSpec,
    WorkerRuleSpec,
)
from config.pricing import PriceList, PriceSpec
from config.retention import RetentionSettings
from config.telemetry import AgentHealthSpec

__all__ = [
    "AgentHealthSpec",
    "ApiKeySpec",
    "ArtifactSettings",
    "AutoHealSpec",
    "FixSettings",
    "Duration",
    "OutboundSpec",
    "PolicySpec",
    "PriceSpec",
    "RateLimitSpec",
    "RepoSpec",
    "RetentionSettings",
    "RuleSpec",
    "ScheduleSpec",
    "Settings",
    "SourceSpec",
    "TopScheduleSpec",
    "TraceSettings",
    "WorkerSpec",
    "parse_duration",
]

Scope = Literal["admin", "submit", "ingest", "read"]

def _check_key(value: str | None) -> str | None:
    if value is not None and (not value.strip() or value != value.strip()):
        raise ValueError("must be a non-empty key without surrounding spaces (an empty ${VAR} would turn "
                         "authentication off; remove the key to run without one)")
    return value


class TraceSettings(Strict):
    """Limits on trace ingest (``traces:``)."""

    max_batch: int = Field(default=defaults.TRACE_MAX_BATCH, ge=1, le=100_000)  # events per request
    max_event_bytes: int = Field(default=defaults.TRACE_MAX_EVENT_BYTES, ge=256)  # bytes of one event's JSON
    max_body_bytes: int = Field(default=defaults.TRACE_MAX_BODY_BYTES, ge=1024)  # bytes of one request body


class ApiKeySpec(Strict):
    # the secret, sent as Authorization: Bearer or X-API-Key
    key: str = Field(min_length=1)
    # the project whose data the key sees
    project: str = Field(default=defaults.DEFAULT_PROJECT, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    # admin, submit, ingest, read (at least one)
    scopes: list[Scope] = Field(default_factory=lambda: ["admin"], min_length=1)  # type: ignore[arg-type]
    # this key's own bucket (overrides rate_limit)
    rate_limit: RateLimitSpec | None = None

    _key_shape = field_validator("key")(classmethod(lambda cls, v: _check_key(v)))


class OutboundSpec(Strict):
    # hosts or IPs that alert webhooks may reach although private or loopback
    allow_hosts: list[str] = Field(default_factory=list)


_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/(?:[a-z0-9][a-z0-9!#$&^_.+-]*|\*)")


class ArtifactSettings(Strict):
    """Trace artifacts (``artifacts:``): the largest upload and the media types allowed (``image/*`` allows a
    whole family)."""

    max_bytes: int = Field(default=defaults.ARTIFACT_MAX_BYTES, ge=1)  # bytes
    # media types allowed (image/* allows a family)
    content_types: list[str] = Field(default_factory=lambda: list(defaults.ARTIFACT_CONTENT_TYPES))

    @field_validator("content_types")
    @classmethod
    def _media_types(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _MEDIA_TYPE.fullmatch(item):
                raise ValueError(f"{item!r} is not a lowercase media type such as text/plain or image/*")
        return value


def _repo_relative(value: str, what: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts or not value.strip():
        raise ValueError(f"{what} {value!r} must be a path inside the repository (relative, no '..')")
    return value


class RepoSpec(Strict):
    """A git repository the fix agent may commit to and regression replay checks out (``repo:``)."""

    path: str  # the repository (an absolute path is best: a relative one is taken from serve's directory)
    base_ref: str = "main"  # what fix branches start from
    # paths (files, or directories ending in "/"; "." for everything) a fix may change; required so that an
    # agent-written diff can never touch the rest of the repository by accident
    allowed_paths: list[str] = Field(min_length=1)
    agent_config: str = defaults.FIX_AGENT_CONFIG  # the agent's own YAML settings the builtin runner edits
    worker_file: str | None = None  # the worker's taskyard YAML inside the repo, if it lives there (timeout fixes)
    guard_file: str = defaults.FIX_GUARD_FILE  # where the builtin runner writes an input guard (prompt_injection)

    @field_validator("allowed_paths")
    @classmethod
    def _allowed_shape(cls, value: list[str]) -> list[str]:
        return [item if item in (".", "./") else _repo_relative(item, "allowed path") for item in value]

    @field_validator("agent_config", "guard_file", "worker_file")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        return None if value is None else _repo_relative(value, "file")

    @field_validator("base_ref")
    @classmethod
    def _ref_shape(cls, value: str) -> str:
        if not value or value.startswith("-") or any(c.isspace() for c in value):
            raise ValueError("must be a git ref (a branch, tag or commit) without spaces")
        return value


class AutoHealSpec(Strict):
    """``auto_heal:`` on a worker: on a new incident, run the fix agent then a regression replay by themselves,
    at most ``attempts`` fix runs per incident. Nothing is ever merged: a person reviews the branch."""

    # fix runs auto-heal may start per incident
    attempts: int = Field(default=1, ge=1, le=5)


class FixSettings(Strict):
    """The fix agent and regression replay (``fix:``)."""

    worktree_dir: Path | None = None  # where replay checks out before/after worktrees (default <data_dir>/worktrees)
    replay_timeout: PositiveDuration = defaults.REPLAY_TIMEOUT_S  # seconds a regression run waits for its tasks
    max_cases: int = Field(default=defaults.REPLAY_MAX_CASES, ge=1, le=100)  # cases replayed when none are named


class WorkerSpec(Strict):
    """One worker definition: exactly one of ``command``, ``endpoint`` or ``handler``."""

    # [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 100 characters
    name: str
    # argv list or shell-style string; prompt on stdin, or {prompt} in an argument
    command: list[str] | None = None
    # http(s)://host:port speaking mecha's worker contract
    endpoint: str | None = None
    # package.module:function, sync or async, called with a TaskContext
    handler: str | None = None
    # working directory of a command
    cwd: str | None = None
    # extra environment of a command (values redacted in GET /workers)
    env: dict[str, str] = Field(default_factory=dict)
    # seconds per task; a task may set its own
    timeout: PositiveDuration = defaults.TASK_TIMEOUT_S
    # tasks at once per worker process
    concurrency: int = Field(default=1, ge=1, le=1024)
    # this worker's bound (default: the top-level max_queue_depth)
    max_queue_depth: int | None = Field(default=None, ge=1)
    # attempts in all (1..10); a task may set its own
    max_retries: int = Field(default=defaults.MAX_RETRIES, ge=1, le=10)
    # pools this worker serves (POST /task with pool)
    pools: list[str] = Field(default_factory=list)
    auto: bool = True  # takes round-robin traffic when a task names no worker and no pool
    headers: dict[str, str] = Field(default_factory=dict)  # endpoint only: sent with every request
    # the git repository the fix agent commits to and regression replay checks out
    repo: RepoSpec | None = None
    auto_heal: AutoHealSpec | None = None  # fix agent + regression replay on each new incident of this worker
    events: list[WorkerRuleSpec] = Field(default_factory=list)  # rules whose target is this worker
    # cron entries whose tasks go to this worker
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


class Settings(Strict):
    """Everything a Taskyard process needs, validated. Built by :func:`config.loader.load_settings`."""

    # mecha-style single key: all access, project default
    api_key: str | None = None
    # several keys, each with its project, scopes (admin, submit, ingest, read) and rate limit
    api_keys: list[ApiKeySpec] = Field(default_factory=list)
    # redis://, rediss:// or unix:// URL; leave it out for the embedded Redis under data_dir
    redis_url: str | None = None
    # embedded Redis files, trace artifacts, replay worktrees (relative to the config file)
    data_dir: Path = Path(defaults.DATA_DIR)
    # where serve listens
    host: str = defaults.HOST
    # where serve listens (0: any free port)
    port: int = Field(default=defaults.PORT, ge=0, le=65535)
    # default bound per worker: pending + dispatched tasks
    max_queue_depth: int = Field(default=defaults.MAX_QUEUE_DEPTH, ge=1)
    rate_limit: RateLimitSpec | None = None  # per API key (api_keys[].rate_limit overrides); off unless set
    project_rate_limits: dict[str, RateLimitSpec] = Field(default_factory=dict)  # one bucket per listed project
    # alert webhooks: which private or loopback hosts they may reach
    outbound: OutboundSpec = Field(default_factory=OutboundSpec)
    # trace artifact uploads
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    # inbound webhook sources by name (github, or generic HMAC or plain sources)
    sources: dict[str, SourceSpec] = Field(default_factory=dict)
    # worker definitions (and/or workers_dir)
    workers: list[WorkerSpec] = Field(default_factory=list)
    # a directory of one-worker YAML files (mecha style), merged into workers
    workers_dir: Path | None = None
    rules: list[RuleSpec] = Field(default_factory=list)  # top-level rules; each names a worker or a pool
    # seconds between a worker process's heartbeats
    heartbeat_interval: Annotated[float, BeforeValidator(parse_duration), at_least(0.1)] = \
        defaults.HEARTBEAT_INTERVAL_S
    # missed heartbeats after which a process is gone and its tasks are requeued
    offline_after_heartbeats: int = Field(default=defaults.OFFLINE_AFTER_HEARTBEATS, ge=2)
    # seconds a stopping worker process lets running tasks finish before requeueing them
    drain_timeout: Duration = defaults.DRAIN_TIMEOUT_S
    # seconds a task may stay pending before it fails with expired
    task_expiry: Annotated[float, BeforeValidator(parse_duration), at_least(1.0)] = defaults.TASK_EXPIRY_S
    # worker processes a task may lose before it fails with worker lost
    max_lost_deliveries: int = Field(default=defaults.MAX_LOST_DELIVERIES, ge=1)
    # seconds an idle consumer blocks on its wake-up list before looking again
    poll_timeout: Annotated[float, BeforeValidator(parse_duration), at_least(0.01)] = defaults.POLL_TIMEOUT_S
    # debug, info, warning or error
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    builtin_echo: bool = True  # define the `echo` worker when the config names no worker
    # engine processes per serve (webhook matching, dispatch, write-back); each has its own interpreter lock
    engine_processes: int = Field(default=defaults.ENGINE_PROCESSES, ge=1, le=64)
    # top-level cron entries, each naming a worker or a pool
    schedules: list[TopScheduleSpec] = Field(default_factory=list)
    # limits on trace ingest
    traces: TraceSettings = Field(default_factory=TraceSettings)
    pricing: PriceList = Field(default_factory=list)  # LLM prices replacing or adding to config/pricing.py
    agent_health: AgentHealthSpec = Field(default_factory=AgentHealthSpec)  # MeshAI agents' heartbeat ages
    detectors: DetectorSettings = Field(default_factory=DetectorSettings)  # failure-detector thresholds
    repos: dict[str, RepoSpec] = Field(default_factory=dict)  # per project: the repo of its workers without one
    fix: FixSettings = Field(default_factory=FixSettings)  # fix agent and regression replay
    # how long finished tasks, events, traces and usage records are kept (0 or null: forever)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
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
    def _source_names(cls, value: dict[str, SourceSpec], info: ValidationInfo) -> dict[str, SourceSpec]:
        for name in value:
            if not WORKER_NAME_RE.fullmatch(name) or len(name) > 100:
                raise ValueError(f"source name {name!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 100 characters)")
            if name == "schedule":
                raise ValueError("the source name 'schedule' is reserved for cron schedules")
        keys = info.data.get("api_keys") or []  # validated before sources (declared first)
        readable = {k.project for k in keys} | {defaults.DEFAULT_PROJECT}
        for name, source in value.items():
            if source.project is not None and source.project not in readable:
                raise ValueError(f"{name}.project: no api_keys entry has project {source.project!r}, so no key "
                                 "could see its events (add a key for it, or leave project out)")
        return value

    @field_validator("project_rate_limits", "repos")
    @classmethod
    def _project_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not WORKER_NAME_RE.fullmatch(name):
                raise ValueError(f"project name {name!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
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
