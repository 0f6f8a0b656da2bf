"""The fix-run and regression-run service: what the API asks of the engine about closing the loop.

Starting a run validates the request, resolves the repository, the runner, the refs and the cases here (so a
mistake is a 422 at once, not a failed run later) and stores the run with its job in one atomic call. The jobs
themselves are :mod:`engine.fix_agent` and :mod:`engine.replay`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from config.settings import RepoSpec, WorkerSpec
from engine import git_ops, incidents, registry, runs, tasks
from engine.bodies import object_body
from engine.clock import now_ms
from engine.errors import FixRunNotFound, GitError, IncidentNotFound, RegressionRunNotFound, Unprocessable
from engine.ids import is_id, new_id
from engine.incidents import Incident
from engine.loop_options import LoopOptions
from engine.loop_plans import case_of, check_ref, choose_runner, fix_fields, pick_cases, replayable, repo_for
from engine.loop_records import FixRun, RegressionRun
from engine.replay_verdict import compare
from engine.store import AsyncRunner

__all__ = ["LoopService"]

LIST_LIMIT = 100  # runs listed per incident
_FIX_FIELDS = frozenset({"repo", "base_ref", "runner"})
_REGRESSION_FIELDS = frozenset({"fix_run_id", "before_ref", "after_ref", "cases"})


def _body(body: Any, allowed: frozenset[str]) -> dict[str, Any]:
    """The request's fields; no body at all means none (400 for a body that is not an object or names an
    unknown field)."""
    return {} if body is None else object_body(body, allowed)


class LoopService:
    def __init__(self, runner: AsyncRunner, options: LoopOptions) -> None:
        self.runner = runner
        self.options = options

    async def _incident(self, project: str, incident_id: str) -> Incident:
        found = await self.runner.run(incidents.get(incident_id, project=project)) if is_id(incident_id) else None
        if found is None:
            raise IncidentNotFound()
        return found

    async def _defs(self) -> dict[str, WorkerSpec]:
        statuses = await self.runner.run(registry.status(None, online_since_ms=now_ms()))
        return {s.spec.name: s.spec for s in statuses}

    async def _resolve(self, repo: RepoSpec, ref: str, name: str) -> str:
        try:
            return await asyncio.to_thread(git_ops.resolve_ref, repo.path, ref)
        except GitError as exc:
            raise Unprocessable(f"invalid {name}: {exc.message}") from None

    # -- fix runs ------------------------------------------------------------------------------------------
    async def start_fix(self, project: str, incident_id: str, body: Any) -> tuple[FixRun, bool]:
        """POST /api/incidents/{id}/fix-agent: (the run, created). A run already queued or running for the
        incident is the answer to a second request (created False)."""
        fields = _body(body, _FIX_FIELDS)
        incident = await self._incident(project, incident_id)
        defs = await self._defs()
        repo = repo_for(fields.get("repo"), worker=defs.get(incident.worker),
                        project_repo=self.options.repos.get(project))
        base_ref = check_ref(fields["base_ref"], "base_ref") if fields.get("base_ref") is not None else None
        if repo is not None and base_ref is not None:
            await self._resolve(repo, base_ref, "base_ref")
        runner = choose_runner(fields.get("runner"), defs)
        created = await self.runner.run(runs.create(
            "fix", incident_id=incident.id, project=project, run_id=new_id(), now_ms=now_ms(),
            fields=fix_fields(repo=repo, base_ref=base_ref, runner=runner)))
        if created is None:
            raise IncidentNotFound()
        return await self.fix_run(project, created.run_id), created.created

    async def fix_run(self, project: str, run_id: str) -> FixRun:
        found = await self.runner.run(runs.get("fix", run_id)) if is_id(run_id) else None
        if found is None or found.get("project") != project:
            raise FixRunNotFound()
        return FixRun.from_hash(found)

    async def fix_runs(self, project: str, incident_id: str) -> list[FixRun]:
        incident = await self._incident(project, incident_id)
        ids = await self.runner.run(runs.list_ids("fix", incident.id, limit=LIST_LIMIT))
        found = await asyncio.gather(*(self.runner.run(runs.get("fix", i)) for i in ids))
        return [FixRun.from_hash(h) for h in found if h]

    # -- regression runs -----------------------------------------------------------------------------------
    async def start_regression(self, project: str, incident_id: str, body: Any) -> tuple[RegressionRun, bool]:
        """POST /api/incidents/{id}/regression-runs: (the run, created)."""
        fields = _body(body, _REGRESSION_FIELDS)
        incident = await self._incident(project, incident_id)
        defs = await self._defs()
        fix = await self._fix_for(project, incident, fields)
        repo: RepoSpec | None
        if fix is not None and fix.repo:
            repo = RepoSpec.model_validate(fix.repo)
        else:
            repo = repo_for(None, worker=defs.get(incident.worker), project_repo=self.options.repos.get(project))
        if repo is None:
            raise Unprocessable("no repository is configured for this incident's worker or project: add repo: "
                                "{path, allowed_paths} to the worker (or repos.<project>)")
        before_ref = check_ref(fields["before_ref"], "before_ref") if fields.get("before_ref") is not None \
            else (fix.base_commit if fix else "")
        after_ref = check_ref(fields["after_ref"], "after_ref") if fields.get("after_ref") is not None \
            else (fix.branch if fix else "")
        if not before_ref or not after_ref:
            raise Unprocessable("nothing to compare: give fix_run_id (a fix run with a commit), or before_ref and "
                                "after_ref")
        before_commit = await self._resolve(repo, before_ref, "before_ref")
        after_commit = await self._resolve(repo, after_ref, "after_ref")
        cases = await self._cases(incident, fields.get("cases"), defs, repo)
        now = now_ms()
        created = await self.runner.run(runs.create(
            "regression", incident_id=incident.id, project=project, run_id=new_id(), now_ms=now, fields={
                "fix_run_id": fix.id if fix else "", "failure_class": incident.failure_class,
                "repo": json.dumps(repo.model_dump(mode="json")), "before_ref": before_ref, "after_ref": after_ref,
                "before_commit": before_commit, "after_commit": after_commit, "cases": json.dumps(cases),
                "deadline": str(now + int(self.options.replay_timeout_s * 1000)), "auto": "0"}))
        if created is None:
            raise IncidentNotFound()
        return await self.regression_run(project, created.run_id), created.created

    async def _fix_for(self, project: str, incident: Incident, fields: dict[str, Any]) -> FixRun | None:
        """The fix run a regression run checks: the one named, else (when no refs are given) the incident's
        newest fix run with a commit."""
        wanted = fields.get("fix_run_id")
        if wanted is not None:
            if not isinstance(wanted, str) or not is_id(wanted):
                raise Unprocessable("invalid fix_run_id")
            try:
                fix = await self.fix_run(project, wanted)
            except FixRunNotFound:
                raise Unprocessable(f"invalid fix_run_id: no fix run {wanted}") from None
            if fix.incident_id != incident.id:
                raise Unprocessable(f"invalid fix_run_id: fix run {wanted} belongs to another incident")
            if not fix.commit:
                why = f" ({fix.fallback_reason})" if fix.fallback_reason else f" (it is {fix.status})"
                raise Unprocessable(f"invalid fix_run_id: fix run {wanted} made no commit{why}")
            return fix
        if fields.get("before_ref") is not None and fields.get("after_ref") is not None:
            return None
        for fix in await self.fix_runs(project, incident.id):
            if fix.commit:
                return fix
        return None

    async def _cases(self, incident: Incident, requested: Any, defs: dict[str, WorkerSpec],
                     repo: RepoSpec) -> list[dict[str, Any]]:
        project_repo = self.options.repos.get(incident.project)
        found = await asyncio.gather(*(self.runner.run(tasks.get(t)) for t in incident.tasks))
        usable = {task.id: task for task in found if task is not None and not task.regression_run
                  and replayable(defs.get(task.worker_name), repo, project_repo)}
        if requested is not None:
            chosen = pick_cases(incident.tasks, requested, limit=self.options.max_cases)
            for task_id in chosen:
                if task_id not in usable:
                    raise Unprocessable(f"invalid cases: task {task_id} cannot be replayed in {repo.path} (it is gone, "
                                        "or its worker is not defined or works in another repository)")
        else:
            chosen = pick_cases([t for t in incident.tasks if t in usable], None, limit=self.options.max_cases)
        if not chosen:
            raise Unprocessable(f"nothing to replay: none of the incident's recorded tasks ran on a worker of "
                                f"{repo.path} that is still defined (traces of external agents cannot be replayed, "
                                "and expired tasks are gone)")
        return [case_of(usable[t], spec=defs.get(usable[t].worker_name), repo=repo) for t in chosen]

    async def regression_run(self, project: str, run_id: str) -> RegressionRun:
        found = await self.runner.run(runs.get("regression", run_id)) if is_id(run_id) else None
        if found is None or found.get("project") != project:
            raise RegressionRunNotFound()
        return RegressionRun.from_hash(found)

    async def regression_runs(self, project: str, incident_id: str) -> list[RegressionRun]:
        incident = await self._incident(project, incident_id)
        ids = await self.runner.run(runs.list_ids("regression", incident.id, limit=LIST_LIMIT))
        found = await asyncio.gather(*(self.runner.run(runs.get("regression", i)) for i in ids))
        return [RegressionRun.from_hash(h) for h in found if h]

    async def compare(self, project: str, run_id: str) -> dict[str, Any]:
        run = await self.regression_run(project, run_id)
        public = run.to_public()
        return {"id": run.id, "incident_id": run.incident_id, "status": run.status, "verdict": run.verdict or None,
                "summary": public["summary"], "before_commit": run.before_commit, "after_commit": run.after_commit,
                "cases": compare(run.cases)}
