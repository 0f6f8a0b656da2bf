"""What the fix agent and regression replay jobs need to know, resolved from the settings at the entry point."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config.detectors import DetectorSettings
from config.settings import RepoSpec, Settings

__all__ = ["FIX_POOL", "LoopOptions"]

FIX_POOL = "fix-agent"  # a worker serving this pool is the fix agent's `worker` runner


@dataclass(frozen=True)
class LoopOptions:
    default_bound: int  # default queue bound (for admitting the jobs' tasks)
    offline_after_ms: int  # milliseconds without a heartbeat before a worker process counts as gone
    worktree_root: Path  # where regression runs check out their before/after worktrees
    replay_timeout_s: float  # seconds a regression run waits for its replayed tasks
    max_cases: int  # cases replayed when a request names none
    detectors: DetectorSettings = field(default_factory=DetectorSettings)
    playbooks: Mapping[str, str] = field(default_factory=dict)  # failure class -> playbook text (Markdown)
    repos: Mapping[str, RepoSpec] = field(default_factory=dict)  # project -> repo of workers without one

    @classmethod
    def from_settings(cls, settings: Settings, playbooks: Mapping[str, str]) -> LoopOptions:
        root = settings.fix.worktree_dir or settings.data_dir / "worktrees"
        return cls(default_bound=settings.max_queue_depth, offline_after_ms=int(settings.offline_after_s * 1000),
                   worktree_root=Path(root).absolute(), replay_timeout_s=settings.fix.replay_timeout,
                   max_cases=settings.fix.max_cases, detectors=settings.detectors, playbooks=dict(playbooks),
                   repos=dict(settings.repos))
