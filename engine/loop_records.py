"""Fix runs and regression runs as records: plain data read from their hashes, and their public shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.models import iso_ms

__all__ = ["FixRun", "RegressionRun"]


def _opt_int(h: dict[str, str], name: str) -> int | None:
    value = h.get(name)
    return int(float(value)) if value not in (None, "") else None


def _json(h: dict[str, str], name: str, default: Any) -> Any:
    value = h.get(name)
    return json.loads(value) if value else default


@dataclass(frozen=True)
class FixRun:
    id: str
    project: str
    incident_id: str
    n: int
    status: str  # queued | running | completed | failed
    runner: str  # builtin | worker
    repo: dict[str, Any] | None  # the RepoSpec used (path, base_ref, allowed_paths, ...); None: no repo
    base_ref: str
    base_commit: str
    branch: str
    commit: str
    plan: str
    diff: str
    files: list[str]
    fallback: bool
    fallback_reason: str
    task_id: str  # the worker runner's task
    error: str
    auto: bool  # started by auto_heal
    created_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> FixRun:
        return cls(
            id=h["id"], project=h.get("project", ""), incident_id=h.get("incident_id", ""), n=int(h.get("n") or 0),
            status=h.get("status", ""), runner=h.get("runner", ""), repo=_json(h, "repo", None),
            base_ref=h.get("base_ref", ""), base_commit=h.get("base_commit", ""), branch=h.get("branch", ""),
            commit=h.get("commit", ""), plan=h.get("plan", ""), diff=h.get("diff", ""),
            files=_json(h, "files", []), fallback=h.get("fallback") == "1",
            fallback_reason=h.get("fallback_reason", ""), task_id=h.get("task_id", ""), error=h.get("error", ""),
            auto=h.get("auto") == "1", created_at_ms=int(float(h.get("created_at") or 0)),
            started_at_ms=_opt_int(h, "started_at"), finished_at_ms=_opt_int(h, "finished_at"))

    def to_public(self) -> dict[str, Any]:
        done = self.status == "completed"
        return {
            "id": self.id, "incident_id": self.incident_id, "n": self.n, "status": self.status,
            "runner": self.runner, "repo": self.repo["path"] if self.repo else None,
            "base_ref": self.base_ref or None, "base_commit": self.base_commit or None,
            "branch": self.branch or None, "commit": self.commit or None,
            "plan": self.plan if done or self.plan else None, "diff": self.diff or None, "files": self.files,
            "fallback": self.fallback, "fallback_reason": self.fallback_reason or None,
            "task_id": self.task_id or None, "error": self.error or None, "auto": self.auto,
            "created_at": iso_ms(self.created_at_ms), "started_at": iso_ms(self.started_at_ms),
            "finished_at": iso_ms(self.finished_at_ms),
        }


@dataclass(frozen=True)
class RegressionRun:
    id: str
    project: str
    incident_id: str
    n: int
    status: str
    fix_run_id: str
    failure_class: str
    repo: dict[str, Any] | None
    before_ref: str
    after_ref: str
    before_commit: str
    after_commit: str
    cases: list[dict[str, Any]]
    counts: dict[str, int]
    verdict: str  # fixed | not_fixed | not_reproduced | error ("" until it completes)
    error: str
    auto: bool
    deadline_ms: int
    created_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> RegressionRun:
        return cls(
            id=h["id"], project=h.get("project", ""), incident_id=h.get("incident_id", ""), n=int(h.get("n") or 0),
            status=h.get("status", ""), fix_run_id=h.get("fix_run_id", ""),
            failure_class=h.get("failure_class", ""), repo=_json(h, "repo", None),
            before_ref=h.get("before_ref", ""), after_ref=h.get("after_ref", ""),
            before_commit=h.get("before_commit", ""), after_commit=h.get("after_commit", ""),
            cases=_json(h, "cases", []), counts=_json(h, "counts", {}), verdict=h.get("verdict", ""),
            error=h.get("error", ""), auto=h.get("auto") == "1", deadline_ms=int(float(h.get("deadline") or 0)),
            created_at_ms=int(float(h.get("created_at") or 0)), started_at_ms=_opt_int(h, "started_at"),
            finished_at_ms=_opt_int(h, "finished_at"))

    def to_public(self) -> dict[str, Any]:
        counts = {name: self.counts.get(name, 0) for name in ("before_fail", "before_pass", "after_fail",
                                                               "after_pass")}
        return {
            "id": self.id, "incident_id": self.incident_id, "n": self.n, "status": self.status,
            "fix_run_id": self.fix_run_id or None, "failure_class": self.failure_class,
            "repo": self.repo["path"] if self.repo else None,
            "before_ref": self.before_ref, "after_ref": self.after_ref,
            "before_commit": self.before_commit or None, "after_commit": self.after_commit or None,
            "cases": [_public_case(c) for c in self.cases],
            "summary": {**counts, "verdict": self.verdict or None},
            "verdict": self.verdict or None, "error": self.error or None, "auto": self.auto,
            "created_at": iso_ms(self.created_at_ms), "started_at": iso_ms(self.started_at_ms),
            "finished_at": iso_ms(self.finished_at_ms),
        }


def _public_case(case: dict[str, Any]) -> dict[str, Any]:
    """A case as stored, minus what only the job needs (the prompt and context it replays)."""
    return {k: v for k, v in case.items() if k not in ("prompt", "context", "cwd_rel")}
