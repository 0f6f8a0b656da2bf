"""The store of fix runs and regression runs: an incident's attempts to fix itself. Each function returns an Op.

A run is a hash (``ty:fixrun:<id>`` or ``ty:regrun:<id>``) with a ``kind`` (fix | regression) and a status:
``queued`` -> ``running`` -> ``completed`` (or ``failed`` when its job gave up for good). An incident lists its
runs of each kind by number n (1, 2, ...) and has at most one active (queued or running) run of each kind:
``run_create.lua`` decides that atomically, so a second request while one runs answers with the running one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine import keys
from engine.store import Op

__all__ = ["FINAL_STATUSES", "KINDS", "RUN_STATUSES", "Created", "create", "get", "list_ids", "update"]

KINDS = ("fix", "regression")
RUN_STATUSES = ("queued", "running", "completed", "failed")
FINAL_STATUSES = frozenset({"completed", "failed"})


@dataclass(frozen=True)
class Created:
    run_id: str
    created: bool  # False: a run of this kind was already queued or running for the incident; this is that one


def _pairs(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True))


def create(kind: str, *, incident_id: str, project: str, run_id: str, now_ms: int,
           fields: Mapping[str, str]) -> Op[Created | None]:
    """Start a run of ``kind`` and queue its job, or answer with the incident's active one; None: no such
    incident in the project."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    args: list[Any] = [kind, incident_id, project, run_id, now_ms]
    for name, value in fields.items():
        args += [name, value]

    def parse(raw: list[Any]) -> Created | None:
        if raw[0] == "missing":
            return None
        return Created(run_id=raw[1], created=raw[0] == "created")

    return Op(parse, script="run_create", args=tuple(args))


def get(kind: str, run_id: str) -> Op[dict[str, str] | None]:
    """The run's fields, or None."""
    template = "fix_run" if kind == "fix" else "regression_run"
    return Op(lambda raw: _pairs(raw) or None, command=("HGETALL", keys.key(template, id=run_id)))


def update(kind: str, run_id: str, *, now_ms: int, fields: Mapping[str, str],
           expect: tuple[str, ...] = ()) -> Op[tuple[str, str | None]]:
    """Write ``fields`` if the run's status is in ``expect`` (empty: any). Answers (outcome, status now):
    ("ok", status) | ("stale", status) | ("missing", None). A final status releases the incident's active run."""
    args: list[Any] = [kind, run_id, now_ms, ",".join(expect)]
    for name, value in fields.items():
        args += [name, value]

    def parse(raw: list[Any]) -> tuple[str, str | None]:
        return (raw[0], raw[1] if len(raw) > 1 else None)

    return Op(parse, script="run_update", args=tuple(args))


def list_ids(kind: str, incident_id: str, *, limit: int) -> Op[list[str]]:
    """The incident's runs of ``kind``, newest first."""
    template = "incident_fix_runs" if kind == "fix" else "incident_regression_runs"
    return Op(list, command=("ZREVRANGE", keys.key(template, id=incident_id), 0, limit - 1))
