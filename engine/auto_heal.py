"""Auto-heal: on a new incident of a worker with ``auto_heal``, run the fix agent, then a regression replay of
its commit; on ``not_fixed``, try again while the worker's ``auto_heal.attempts`` allow. It never merges:
the branch waits for a person, and a ``fixed`` verdict only resolves the incident (as a manual replay would).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from config.settings import RepoSpec, WorkerSpec
from engine import incidents, registry, runs, tasks
from engine.analysis import Analyzer
from engine.clock import now_ms
from engine.errors import TaskyardError
from engine.fix_agent import FixAgent
from engine.ids import new_id
from engine.incidents import Outcome
from engine.loop_options import LoopOptions
from engine.loop_plans import case_of, choose_runner, fix_fields, replayable, repo_for
from engine.loop_records import FixRun, RegressionRun
from engine.replay import Replay
from engine.store import Runner

__all__ = ["AutoHeal"]

logger = logging.getLogger(__name__)


class AutoHeal:
    def __init__(self, runner: Runner, options: LoopOptions) -> None:
        self.runner = runner
        self.options = options

    def attach(self, analyzer: Analyzer, fixer: FixAgent, replay: Replay) -> None:
        analyzer.on_outcomes.append(self.on_outcomes)
        fixer.on_completed.append(self.on_fix)
        replay.on_verdict.append(self.on_verdict)

    def _defs(self) -> dict[str, WorkerSpec]:
        return {s.spec.name: s.spec for s in self.runner.run(registry.status(None, online_since_ms=now_ms()))}

    def on_outcomes(self, project: str, worker: str, outcomes: Sequence[Outcome]) -> None:
        """A new incident (or one back after a resolve) of an auto-heal worker: start a fix run."""
        if not worker or not any(o.kind in ("created", "regressed") for o in outcomes):
            return
        defs = self._defs()
        spec = defs.get(worker)
        if spec is None or spec.auto_heal is None:
            return
        for outcome in outcomes:
            if outcome.kind in ("created", "regressed"):
                self._fix(project, outcome.incident_id, spec, defs)

    def _fix(self, project: str, incident_id: str, spec: WorkerSpec, defs: dict[str, WorkerSpec]) -> None:
        assert spec.auto_heal is not None
        ids = self.runner.run(runs.list_ids("fix", incident_id, limit=100))
        made = sum(1 for i in ids if (self.runner.run(runs.get("fix", i)) or {}).get("auto") == "1")
        if made >= spec.auto_heal.attempts:
            logger.info("auto-heal attempts used up", extra={"incident": incident_id, "attempts": made})
            return
        repo = repo_for(None, worker=spec, project_repo=self.options.repos.get(project))
        created = self.runner.run(runs.create(
            "fix", incident_id=incident_id, project=project, run_id=new_id(), now_ms=now_ms(),
            fields=fix_fields(repo=repo, base_ref=None, runner=choose_runner(None, defs), auto=True)))
        logger.info("auto-heal: fix run started", extra={"incident": incident_id,
                                                         "run": created.run_id if created else None})

    def on_fix(self, run: FixRun) -> None:
        """An auto-heal fix run made a commit: replay the incident's tasks before and after it."""
        if not run.auto or not run.commit or not run.repo:
            return
        incident = self.runner.run(incidents.get(run.incident_id, project=run.project))
        if incident is None:
            return
        defs = self._defs()
        for other in self.runner.run(runs.list_ids("regression", incident.id, limit=100)):
            if (self.runner.run(runs.get("regression", other)) or {}).get("fix_run_id") == run.id:
                return  # done already (this follow-up ran before its job was redelivered)
        repo = RepoSpec.model_validate(run.repo)
        project_repo = self.options.repos.get(run.project)
        found = [self.runner.run(tasks.get(t)) for t in incident.tasks]
        cases = [case_of(t, spec=defs.get(t.worker_name), repo=repo) for t in found
                 if t is not None and not t.regression_run
                 and replayable(defs.get(t.worker_name), repo, project_repo)][:self.options.max_cases]
        if not cases:
            logger.info("auto-heal: nothing to replay", extra={"incident": incident.id})
            return
        now = now_ms()
        try:
            self.runner.run(runs.create("regression", incident_id=incident.id, project=run.project,
                                        run_id=new_id(), now_ms=now, fields={
                "fix_run_id": run.id, "failure_class": incident.failure_class, "repo": json.dumps(run.repo),
                "before_ref": run.base_commit, "after_ref": run.branch, "before_commit": run.base_commit,
                "after_commit": run.commit, "cases": json.dumps(cases),
                "deadline": str(now + int(self.options.replay_timeout_s * 1000)), "auto": "1"}))
        except TaskyardError:
            logger.exception("auto-heal: could not start the regression run", extra={"incident": incident.id})

    def on_verdict(self, run: RegressionRun) -> None:
        """An auto-heal replay said not_fixed: another fix attempt, while attempts remain."""
        if not run.auto or run.verdict != "not_fixed":
            return
        incident = self.runner.run(incidents.get(run.incident_id, project=run.project, shown=1))
        defs = self._defs()
        spec = defs.get(incident.worker) if incident else None
        if incident is not None and spec is not None and spec.auto_heal is not None:
            self._fix(run.project, incident.id, spec, defs)
