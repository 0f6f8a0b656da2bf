"""Retention: finished tasks, webhook events, traces and usage records are deleted once they are old enough.

The periods come from ``retention:`` (:class:`config.retention.RetentionSettings`); ``None`` keeps a kind forever.
One sweep (:meth:`RetentionSweep.sweep`, run every minute by one ``serve`` engine process under a Redis lock, see
``workers/engine_queue.py``) goes over every project of the registry ``ty:projects`` (no keyspace scan) and:

- for tasks, events and traces, calls ``retention_sweep.lua`` once per (project, kind, final state) and batch: the
  script walks a list index oldest first (the final state's; for traces, all of the project's), deletes each
  expired record with everything that belongs to it in the same atomic step, and answers how many it deleted and
  whether it stopped at the batch limit. A walk whose batch came back full is called again from where it
  stopped, round-robin with the others, until every batch comes back short or the sweep's time budget is spent
  (the engine sweeps again after a short pause while sweeps run out of budget: ``EngineQueue._retain``);
- trims each project's usage stream to the usage period (``XTRIM MINID``: entry ids are Redis server time);
- removes the files of the artifacts whose metadata went with their traces, best effort (a failure is logged;
  the file is then an orphan on disk, never a reference to missing bytes).

Each script call examines at most ``batch`` records, so Redis is never held for long (4-8 ms per call of 200
expired tasks with their traces, 8-16 ms with 500, measured: ``docs/benchmarks.md``). Incidents, fix runs and
regression runs are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from config.retention import RetentionSettings
from engine import keys
from engine.artifacts import ArtifactStore
from engine.clock import now_ms
from engine.store import Op, Runner

__all__ = ["FINAL_STATES", "SWEEP_BATCH", "SWEEP_BUDGET_S", "RetentionPolicy", "RetentionSweep", "SweepReport",
           "Swept", "sweep_batch", "trim_usage"]

logger = logging.getLogger(__name__)

SWEEP_BATCH = 200  # records one script call examines at most: 200 expired tasks with traces hold Redis 4-8 ms
SWEEP_BUDGET_S = 2.0  # seconds one sweep may spend; what is left goes to the next one (seconds later)
USAGE_TRIM_CHUNK = 10_000  # usage entries one approximate XTRIM removes at most (whole stream nodes)

# The walks of each kind: tasks and events walk the list index of each final state; traces walk the index of all
# traces ("any"), because a trace enters a status index when it ends, at its creation seq, where a walk that
# remembers how far it got (retention_sweep.lua's mark) could have passed already.
FINAL_STATES: dict[str, tuple[str, ...]] = {
    "tasks": ("completed", "failed", "cancelled"),
    "events": ("completed", "failed", "skipped", "write_back_failed", "matched"),  # matched: only auto: false rules
    "traces": ("any",),
}


@dataclass(frozen=True)
class RetentionPolicy:
    """Periods in milliseconds per kind; ``None`` keeps that kind forever."""

    tasks_ms: int | None = None
    events_ms: int | None = None
    traces_ms: int | None = None
    usage_ms: int | None = None

    @classmethod
    def from_settings(cls, settings: RetentionSettings) -> RetentionPolicy:
        def ms(seconds: float | None) -> int | None:
            return None if not seconds else int(seconds * 1000)

        return cls(tasks_ms=ms(settings.tasks), events_ms=ms(settings.events), traces_ms=ms(settings.traces),
                   usage_ms=ms(settings.usage))

    def period_ms(self, kind: str) -> int | None:
        return {"tasks": self.tasks_ms, "events": self.events_ms, "traces": self.traces_ms,
                "usage": self.usage_ms}[kind]


@dataclass(frozen=True)
class Swept:
    """One script call: records deleted, the last seq examined, whether it stopped at the batch limit, and the
    ids of artifacts whose metadata it deleted (their files are the caller's to remove)."""

    deleted: int
    last_seq: str
    more: bool
    artifacts: tuple[str, ...] = ()


@dataclass
class SweepReport:
    """What one sweep did: records deleted per kind (usage: stream entries), artifact files removed, whether it
    finished (every batch came back short) or ran out of its time budget, its script calls and its seconds."""

    deleted: dict[str, int] = field(default_factory=lambda: {"tasks": 0, "events": 0, "traces": 0, "usage": 0})
    files: int = 0
    finished: bool = True
    calls: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def sweep_batch(*, kind: str, project: str, state: str, cutoff_ms: int, after: str = "",
                batch: int = SWEEP_BATCH) -> Op[Swept]:
    """One call of ``retention_sweep.lua``: delete the expired records among the next ``batch`` of the walk's
    index after seq ``after`` (``""``: from the start, or for traces from where earlier walks settled)."""
    if state not in FINAL_STATES[kind]:
        raise ValueError(f"{kind} are not swept in state {state!r}")

    def parse(raw: list[Any]) -> Swept:
        return Swept(int(raw[0]), str(raw[1]), raw[2] == 1, tuple(raw[3]))

    return Op(parse, script="retention_sweep", args=(kind, project, state, cutoff_ms, after, batch))


def trim_usage(*, project: str, cutoff_ms: int, limit: int | None = USAGE_TRIM_CHUNK) -> Op[int]:
    """Remove usage records made before ``cutoff_ms`` (stream ids are Redis server time): with ``limit``, at most
    that many and whole stream nodes only (cheap, may leave up to a node's worth before the cutoff); without,
    exactly."""
    stream = keys.key("usage", project=project)
    if limit is None:
        return Op(int, command=("XTRIM", stream, "MINID", f"{cutoff_ms}-0"))
    return Op(int, command=("XTRIM", stream, "MINID", "~", f"{cutoff_ms}-0", "LIMIT", limit))


def projects() -> Op[list[str]]:
    return Op(lambda raw: sorted(raw), command=("SMEMBERS", keys.key("projects")))


class RetentionSweep:
    """Deletes what ``policy`` says has expired, project by project. ``known_projects`` (the configured ones) are
    swept too, even before they write anything after an upgrade that introduced the registry. ``artifacts``
    removes the files of deleted artifacts (None: leave them). ``clock`` gives epoch milliseconds."""

    def __init__(self, runner: Runner, policy: RetentionPolicy, *, artifacts: ArtifactStore | None = None,
                 known_projects: Iterable[str] = (), clock: Callable[[], int] = now_ms,
                 batch: int = SWEEP_BATCH, budget_s: float = SWEEP_BUDGET_S) -> None:
        self.runner = runner
        self.policy = policy
        self.artifacts = artifacts
        self.known_projects = frozenset(known_projects)
        self.clock = clock
        self.batch = batch
        self.budget_s = budget_s

    @property
    def enabled(self) -> bool:
        return any(self.policy.period_ms(kind) for kind in ("tasks", "events", "traces", "usage"))

    def sweep(self) -> SweepReport:
        """One sweep over every project; safe to run in several processes at once (each deletion is one atomic
        script step, so a record is deleted once), though the engine runs one at a time under a lock."""
        report = SweepReport()
        if not self.enabled:
            return report
        started = time.monotonic()
        deadline = started + self.budget_s
        now = self.clock()
        registered: list[str] = self.runner.run(projects())
        names = sorted({*registered, *self.known_projects})
        walks: list[tuple[str, str, str, int]] = []  # (kind, project, state, cutoff)
        for kind, states in FINAL_STATES.items():
            period = self.policy.period_ms(kind)
            if period:
                walks += [(kind, project, state, now - period) for project in names for state in states]
        after = {walk: "" for walk in walks}
        files: list[str] = []
        while after:
            for walk in list(after):
                if time.monotonic() > deadline:
                    report.finished = False
                    break
                kind, project, state, cutoff = walk
                swept = self.runner.run(sweep_batch(kind=kind, project=project, state=state, cutoff_ms=cutoff,
                                                    after=after[walk], batch=self.batch))
                report.calls += 1
                report.deleted[kind] += swept.deleted
                files += swept.artifacts
                if swept.more:
                    after[walk] = swept.last_seq
                else:
                    del after[walk]
            if not report.finished:
                break
        if self.policy.usage_ms:  # records at or before the cutoff go, as the other kinds' (MINID keeps its own id)
            report.finished = self._trim_usage(names, now - self.policy.usage_ms + 1, deadline, report) \
                and report.finished
        report.files = self._remove_files(files)
        report.seconds = round(time.monotonic() - started, 3)
        if report.total or files:
            logger.info("retention sweep", extra={**{f"deleted_{k}": v for k, v in report.deleted.items()},
                                                  "files": report.files, "finished": report.finished,
                                                  "calls": report.calls, "seconds": report.seconds})
        return report

    def _trim_usage(self, names: list[str], cutoff: int, deadline: float, report: SweepReport) -> bool:
        for project in names:
            while True:
                if time.monotonic() > deadline:
                    return False
                removed = self.runner.run(trim_usage(project=project, cutoff_ms=cutoff))
                report.deleted["usage"] += removed
                if removed == 0:
                    break
            report.deleted["usage"] += self.runner.run(trim_usage(project=project, cutoff_ms=cutoff, limit=None))
        return True

    def _remove_files(self, artifact_ids: list[str]) -> int:
        """Remove the files of deleted artifacts, best effort: a failure leaves an orphan file, logged."""
        if self.artifacts is None or not artifact_ids:
            return 0
        store = self.artifacts

        async def remove() -> int:
            removed = 0
            for artifact_id in artifact_ids:
                try:
                    await store.delete(artifact_id)
                    removed += 1
                except Exception:  # noqa: BLE001 - best effort: the metadata is gone, the file is an orphan
                    logger.warning("could not remove an expired artifact's file", exc_info=True,
                                   extra={"artifact_id": artifact_id})
            return removed

        return asyncio.run(remove())
