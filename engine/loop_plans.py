"""Planning fix runs and regression runs (pure): which repository, which runner, which refs and cases.

Shared by the API (:mod:`engine.loop_service`) and auto-heal, so a run started either way looks the same.
Problems a caller can fix are :class:`~engine.errors.Unprocessable` (422) with a message saying what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from config.settings import RepoSpec, WorkerSpec
from engine.errors import Unprocessable
from engine.loop_options import FIX_POOL
from engine.models import Task

__all__ = ["RUNNERS", "case_of", "check_ref", "choose_runner", "fix_fields", "pick_cases", "repo_for", "replayable"]

RUNNERS = ("builtin", "worker")
MAX_REF_CHARS = 200  # characters of a git ref given in a request


def repo_for(requested: str | None, *, worker: WorkerSpec | None, project_repo: RepoSpec | None) -> RepoSpec | None:
    """The repository of an incident: the worker's ``repo``, else the project's (``repos.<project>``). A
    ``requested`` path must be one of those two (the API never lets a caller point the fix agent at an arbitrary
    directory of the server); None: no repository is configured."""
    configured = [r for r in (worker.repo if worker else None, project_repo) if r is not None]
    if requested is None:
        return configured[0] if configured else None
    if not isinstance(requested, str) or not requested.strip() or "\0" in requested:
        raise Unprocessable("invalid repo: a repository path")
    wanted = os.path.realpath(requested)
    for repo in configured:
        if os.path.realpath(repo.path) == wanted:
            return repo
    raise Unprocessable(f"invalid repo: {requested} is not a repository configured for this incident's worker or "
                        "project (repo: on the worker, or repos.<project>)")


def check_ref(value: Any, name: str) -> str:
    """A git ref from a request (branch, tag or commit); resolved against the repository by the caller."""
    if (not isinstance(value, str) or not value or value.startswith("-") or len(value) > MAX_REF_CHARS
            or any(c.isspace() or ord(c) < 32 for c in value)):
        raise Unprocessable(f"invalid {name}: a git branch, tag or commit")
    return value


def choose_runner(requested: Any, defs: Mapping[str, WorkerSpec]) -> str:
    """``worker`` when asked for (a worker must serve the fix-agent pool) or, when nothing is asked, when one
    does; else ``builtin``."""
    serves = any(FIX_POOL in spec.pools for spec in defs.values())
    if requested is None:
        return "worker" if serves else "builtin"
    if requested not in RUNNERS:
        raise Unprocessable(f"invalid runner: must be one of {', '.join(RUNNERS)}")
    if requested == "worker" and not serves:
        raise Unprocessable(f"invalid runner: no worker serves the {FIX_POOL} pool (add pools: [{FIX_POOL}] "
                            "to a worker that proposes fixes)")
    return str(requested)


def fix_fields(*, repo: RepoSpec | None, base_ref: str | None, runner: str, auto: bool = False) -> dict[str, str]:
    """The stored fields of a new fix run."""
    return {"runner": runner, "repo": json.dumps(repo.model_dump(mode="json")) if repo else "",
            "base_ref": base_ref or (repo.base_ref if repo else ""), "auto": "1" if auto else "0"}


def replayable(spec: WorkerSpec | None, repo: RepoSpec, project_repo: RepoSpec | None) -> bool:
    """Whether a task of this worker can be replayed in worktrees of ``repo``: the worker is still defined, its
    repository (its own, else the project's) is ``repo``, and its ``cwd`` (if any) lies inside it. An incident
    groups the same failure across workers; a worker of another repository cannot be judged in this one."""
    if spec is None:
        return False
    own = repo_for(None, worker=spec, project_repo=project_repo)
    if own is None or os.path.realpath(own.path) != os.path.realpath(repo.path):
        return False
    if spec.cwd:
        rel = os.path.relpath(os.path.realpath(spec.cwd), os.path.realpath(repo.path))
        return rel == "." or not rel.startswith("..")
    return True


def case_of(task: Task, *, spec: WorkerSpec | None, repo: RepoSpec) -> dict[str, Any]:
    """A regression case from an affected task: what to replay and where in the worktree to run it (the
    worker's ``cwd`` relative to the repository, when it lies inside it)."""
    cwd_rel = ""
    if spec is not None and spec.cwd:
        rel = os.path.relpath(os.path.realpath(spec.cwd), os.path.realpath(repo.path))
        if rel != "." and not rel.startswith(".."):
            cwd_rel = rel
    return {"task_id": task.id, "worker": task.worker_name, "prompt": task.prompt, "context": task.context,
            "cwd_rel": cwd_rel, "before": {}, "after": {}}


def pick_cases(affected: Sequence[str], requested: Any, *, limit: int) -> list[str]:
    """The task ids to replay: ``requested`` (a list of the incident's task ids) or its newest ``limit``."""
    if requested is None:
        return list(affected[:limit])
    if (not isinstance(requested, list) or not requested or len(requested) > 100
            or not all(isinstance(t, str) for t in requested)):
        raise Unprocessable("invalid cases: a list of 1 to 100 task ids of the incident")
    known = set(affected)
    for task_id in requested:
        if task_id not in known:
            raise Unprocessable(f"invalid cases: task {task_id} is not one of the incident's tasks")
    return list(dict.fromkeys(requested))
