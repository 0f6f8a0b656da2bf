"""Worker definitions and worker processes: register, heartbeat, deregister, status. Each returns an Op.

A worker *definition* (name, backend, bounds) is stored once; any number of worker *processes* serve it. A
process is alive while it heartbeats: it refreshes its score in ``worker_procs`` and the TTL of its ``proc``
hash every heartbeat interval. Online, busy and health are derived from those, never stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from config.settings import WorkerSpec
from engine import keys
from engine.models import iso_ms
from engine.store import Op

__all__ = [
    "ProcessInfo",
    "WorkerStatus",
    "deregister",
    "get_def",
    "heartbeat",
    "health_of",
    "redact",
    "register",
    "status",
    "unregister",
]

HEALTHY_MAX_AGE_MS = 120_000  # heartbeat younger than this: healthy (MeshAI's rule)
DEGRADED_MAX_AGE_MS = 300_000  # younger than this: degraded; older: down

_SECRET_KEY = re.compile(r"token|secret|password|passwd|authorization|api[_-]?key|credential", re.I)
REDACTED = "[redacted]"
# A URL's whole userinfo (``user:pass@``, or a token as the user name: ``https://ghp_x@host``), up to its last @
_URL_USERINFO = re.compile(r"(://)[^/?#\s]*@")
# The value of a secret-looking query parameter (``?api_key=...``, ``&access_token=...``)
_URL_SECRET_PARAM = re.compile(r"([?&][^=&#\s]*(?:token|secret|password|passwd|api[_-]?key|sig|auth)[^=&#\s]*=)"
                               r"[^&#\s]*", re.I)


@dataclass(frozen=True)
class ProcessInfo:
    proc_id: str
    concurrency: int
    error: str


@dataclass(frozen=True)
class WorkerStatus:
    """A worker definition with its live figures."""

    spec: WorkerSpec
    source: str
    depth: int
    running: int
    last_heartbeat_ms: int | None
    processes: list[ProcessInfo]

    def state(self) -> str:
        if not self.processes:
            return "offline"
        if any(p.error for p in self.processes):
            return "error"
        slots = sum(p.concurrency for p in self.processes)
        return "busy" if slots and self.running >= slots else "online"

    def health(self, now_ms: int) -> str:
        """By heartbeat age, but never better than the state says: a worker with no live process is ``down``
        (``unknown`` if it never sent a heartbeat) and one whose process reports an error at best ``degraded``,
        so ``offline`` never sits next to ``healthy``."""
        by_age = health_of(self.last_heartbeat_ms, now_ms)
        if not self.processes:
            return "unknown" if by_age == "unknown" else "down"
        if any(p.error for p in self.processes) and by_age == "healthy":
            return "degraded"
        return by_age

    def to_public(self, *, default_bound: int, now_ms: int) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "kind": self.spec.kind,
            "state": self.state(),
            "health": self.health(now_ms),
            "queue_depth": self.depth,
            "max_queue_depth": self.spec.max_queue_depth or default_bound,
            "concurrency": self.spec.concurrency,
            "running": self.running,
            "last_heartbeat": iso_ms(self.last_heartbeat_ms),
            "processes": len(self.processes),
            "errors": sorted({p.error for p in self.processes if p.error}),
            "pools": self.spec.pools,
            "source": self.source,
            "definition": redact(self.spec.model_dump(mode="json", exclude_defaults=False)),
        }


def health_of(last_heartbeat_ms: int | None, now_ms: int, *, degraded_after_ms: int = HEALTHY_MAX_AGE_MS,
              down_after_ms: int = DEGRADED_MAX_AGE_MS) -> str:
    """By heartbeat age (MeshAI's rule): healthy below ``degraded_after_ms`` (2 min), degraded below
    ``down_after_ms`` (5 min), down from then on; unknown when it never sent one. Workers and agents alike."""
    if last_heartbeat_ms is None:
        return "unknown"
    age = now_ms - last_heartbeat_ms
    if age < degraded_after_ms:
        return "healthy"
    return "degraded" if age < down_after_ms else "down"


def redact(value: Any, key: str = "") -> Any:
    """A copy safe to show to any reader: every ``env`` and ``headers`` value, values of secret-looking keys
    (token, password, authorization...), credentials in URLs (the whole userinfo, secret-looking query
    parameters) and bearer strings are replaced."""
    if isinstance(value, dict):
        if key in ("env", "headers"):
            return {k: REDACTED for k in value}
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        value = re.sub(r"(?i)(\bbearer\s+)\S+", r"\1" + REDACTED, value)
        value = _URL_USERINFO.sub(r"\1" + REDACTED + "@", value)
        value = _URL_SECRET_PARAM.sub(r"\1" + REDACTED, value)
    return value


def _encode(spec: WorkerSpec, source: str) -> str:
    """The stored definition holds no secret: ``env`` and ``headers`` values and an endpoint's URL credentials
    are redacted. Only the process that runs a worker needs them, and it has its own spec; nothing that reads a
    definition back (dispatch, status, replay, the fix agent) uses them."""
    stored = spec.model_dump(mode="json")
    stored["env"] = redact(stored["env"], "env")
    stored["headers"] = redact(stored["headers"], "headers")
    if stored["endpoint"]:
        stored["endpoint"] = redact(stored["endpoint"])
    return json.dumps({"spec": stored, "source": source}, separators=(",", ":"))


def _decode(raw: str) -> tuple[WorkerSpec, str]:
    data = json.loads(raw)
    return WorkerSpec.model_validate(data["spec"]), data.get("source", "")


def register(spec: WorkerSpec, *, source: str, replace: bool = True) -> Op[bool]:
    """Store a definition; answers whether it was stored. ``source`` says who defined it: config, api or
    process. With ``replace=False`` an existing definition of that name is kept (and False answered)."""
    only_new = () if replace else ("NX",)
    return Op(lambda raw: bool(raw[0]), commands=(
        ("SET", keys.key("worker_def", worker=spec.name), _encode(spec, source), *only_new),
        ("SADD", keys.key("workers"), spec.name),
        ("SREM", keys.key("workers_removed"), spec.name),
    ))


def unregister(name: str) -> Op[bool]:
    """Forget a definition and its Dramatiq queue; answers whether it existed. The name stays in
    ``workers_removed`` until the reaper has seen its last process and task go, so a process that dies later
    is still reaped and its tasks still fail with ``worker removed`` rather than waiting forever."""
    return Op(lambda raw: bool(raw[0]), commands=(
        ("DEL", keys.key("worker_def", worker=name)),
        ("SREM", keys.key("workers"), name),
        ("SADD", keys.key("workers_removed"), name),
        ("DEL", keys.key("dq_queue", worker=name), keys.key("dq_msgs", worker=name),
         keys.key("worker_wake", worker=name), keys.key("worker_seen", worker=name)),
    ))


def get_def(name: str) -> Op[tuple[WorkerSpec, str] | None]:
    """The definition and its source, or None."""
    return Op(lambda raw: _decode(raw) if raw else None, command=("GET", keys.key("worker_def", worker=name)))


def heartbeat(*, proc_id: str, specs: list[WorkerSpec], now_ms: int, ttl_ms: int, host: str, pid: int,
              errors: dict[str, str] | None = None) -> Op[None]:
    """Mark a process alive for ``ttl_ms`` and record which workers it serves with what concurrency."""
    errors = errors or {}
    proc_key = keys.key("proc", proc=proc_id)
    fields: list[Any] = ["host", host, "pid", pid, "seen", now_ms,
                         "workers", ",".join(s.name for s in specs)]
    for spec in specs:
        fields += [f"concurrency:{spec.name}", spec.concurrency, f"error:{spec.name}", errors.get(spec.name, "")]
    commands: list[tuple] = [("HSET", proc_key, *fields), ("PEXPIRE", proc_key, ttl_ms)]
    for spec in specs:
        commands += [("ZADD", keys.key("worker_procs", worker=spec.name), now_ms, proc_id),
                     ("SET", keys.key("worker_seen", worker=spec.name), now_ms)]
        error_key = keys.key("worker_error", worker=spec.name)
        # A failing backend takes no round-robin traffic until a health check passes (or the mark expires).
        commands.append(("SET", error_key, errors[spec.name], "PX", ttl_ms) if errors.get(spec.name)
                        else ("DEL", error_key))
    return Op(lambda raw: None, commands=tuple(commands))


def deregister(*, proc_id: str, workers: list[str]) -> Op[None]:
    """Forget a process that stopped cleanly (its tasks were finished or requeued before)."""
    commands: list[tuple] = [("DEL", keys.key("proc", proc=proc_id), keys.key("proc_tasks", proc=proc_id),
                              keys.key("proc_cancel", proc=proc_id))]
    commands += [("ZREM", keys.key("worker_procs", worker=w), proc_id) for w in workers]
    return Op(lambda raw: None, commands=tuple(commands))


def status(names: list[str] | None = None, *, online_since_ms: int) -> Op[list[WorkerStatus]]:
    """Live status of the named workers (unknown names are left out) in the order given, or of every defined
    worker by name when ``names`` is None: one round trip either way."""

    def parse(raw: list[list[Any]]) -> list[WorkerStatus]:
        out = []
        for row in raw:
            spec, source = _decode(row[1])
            procs = [ProcessInfo(row[i], int(row[i + 1] or 0), row[i + 2]) for i in range(5, len(row), 3)]
            last = int(float(row[4])) if row[4] else None
            out.append(WorkerStatus(spec, source, int(row[2]), int(row[3]), last, procs))
        return out

    return Op(parse, script="worker_status", args=(online_since_ms, *(names or ())))
