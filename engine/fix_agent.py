"""The fix agent: the ``fix_agent`` engine job (DESIGN section 6).

For a fix run of an incident, the job builds the bundle a runner needs (:mod:`engine.fix_bundle`: incident,
playbook, the events around the critical step, the task and the worker definition, secrets redacted) and runs
one of two runners:

- ``builtin``: a deterministic playbook edit (:mod:`engine.fix_builtin`) of the agent's settings file, the
  worker's YAML or a guard file in the repository;
- ``worker``: a task for a worker of the ``fix-agent`` pool, through the normal queues; its answer (``{plan,
  diff}`` JSON, or a diff in its output) is parsed (:mod:`engine.fix_output`) and the diff applied.

Either way :mod:`engine.git_ops` commits on a new branch ``taskyard/fix-<incident>-<n>`` from ``base_ref`` in a
temporary worktree, refusing paths outside ``allowed_paths``, and the run keeps the plan, the diff, the commit
and the changed files. No repository, no applicable edit, a runner error or an unusable diff end the run
``completed`` with the plan only, ``fallback: true`` and a ``fallback_reason``: never a made-up diff.

The job is re-entrant (a redelivered job finds the branch it made, or the task it submitted, and goes on).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from config.settings import RepoSpec
from engine import alerts, git_ops, incidents, keys, registry, runs, tasks, traces
from engine.admission import admission, refusal
from engine.clock import now_ms
from engine.errors import AdmissionRefused, GitError, TaskyardError
from engine.event_jobs import Retry
from engine.fix_builtin import BuiltinFix, FixFacts, builtin_fix
from engine.fix_bundle import build_bundle, render_prompt
from engine.fix_output import parse_output
from engine.incidents import Incident
from engine.loop_options import FIX_POOL, LoopOptions
from engine.loop_records import FixRun
from engine.models import FINAL_STATES, SubmitRequest
from engine.store import Op

__all__ = ["FixAgent", "branch_name", "fix_task_id"]

logger = logging.getLogger(__name__)

POLL_S = 1.0  # seconds between looks at the fix-agent worker's task
REFUSED_RETRY_S = 5.0  # seconds before submitting again when no fix-agent worker could take the task
COMMIT_LOCK_MS = 600_000  # milliseconds a run's commit step holds its lock at most (git's own limit is 300 s)
EVENT_WINDOW = 10  # events either side of the critical step that go into the bundle
MAX_TASK_TEXT = 4_000  # characters of the original task's result or error in the bundle


def branch_name(incident_id: str, n: int) -> str:
    return f"taskyard/fix-{incident_id}-{n}"


def fix_task_id(run_id: str) -> str:
    """The fix-agent worker's task of a run: derived from the run, so a redelivered job admits the same task."""
    return hashlib.sha256(f"fix:{run_id}".encode()).hexdigest()[:32]


class FixAgent:
    def __init__(self, runner: Any, options: LoopOptions) -> None:
        self.runner = runner
        self.options = options
        self.on_completed: list[Callable[[FixRun], None]] = []  # auto-heal's next step

    # -- the job -------------------------------------------------------------------------------------------
    def job(self, run_id: str, attempt: int) -> Retry | None:
        found = self.runner.run(runs.get("fix", run_id))
        if found is None:
            return None
        run = FixRun.from_hash(found)
        if run.status in runs.FINAL_STATUSES:
            if run.status == "completed" and found.get("settled") != "1":
                self._settle(run)  # the delivery that finished it died before its follow-ups
            return None
        if run.status == "queued":
            self.runner.run(runs.update("fix", run.id, now_ms=now_ms(), expect=("queued",),
                                        fields={"status": "running", "started_at": str(now_ms())}))
        incident = self.runner.run(incidents.get(run.incident_id, project=run.project))
        if incident is None:
            self._finish(run, plan="", fallback="the incident no longer exists")
            return None
        playbook = self.options.playbooks.get(incident.failure_class) or ""
        if run.runner == "worker":
            return self._worker(run, incident, playbook)
        return self._builtin(run, incident, playbook)

    def give_up(self, run_id: str, exc: BaseException) -> None:
        """The job failed for good: the run fails with the reason, so the next request can start a new one."""
        self.runner.run(runs.update("fix", run_id, now_ms=now_ms(), expect=("queued", "running"), fields={
            "status": "failed", "finished_at": str(now_ms()),
            "error": f"the fix job failed: {type(exc).__name__}: {exc}"[:500]}))

    # -- runners -------------------------------------------------------------------------------------------
    def _builtin(self, run: FixRun, incident: Incident, playbook: str) -> Retry | None:
        repo = RepoSpec.model_validate(run.repo) if run.repo else None
        if repo is None:
            self._finish(run, plan=playbook, fallback=_no_repo(incident, run.project))
            return None
        try:
            base = git_ops.resolve_ref(repo.path, run.base_ref)
        except GitError as exc:
            self._finish(run, plan=playbook, fallback=exc.message)
            return None
        spec = self._worker_spec(incident.worker)
        trace = self.runner.run(traces.get(incident.trace_id)) if incident.trace_id else None
        facts = FixFacts(
            incident_id=incident.id, failure_class=incident.failure_class, signature=incident.signature,
            worker=incident.worker, agent_config=repo.agent_config, worker_file=repo.worker_file,
            guard_file=repo.guard_file,
            thresholds=self.options.detectors.for_run(worker=incident.worker, project=run.project),
            timeout_s=spec.timeout if spec is not None else None,
            observed_duration_s=(trace.duration_ms / 1000) if trace and trace.duration_ms is not None else None)
        try:
            edit = builtin_fix(facts, lambda path: git_ops.read_file(repo.path, base, path))
        except GitError as exc:
            self._finish(run, plan=playbook, fallback=exc.message)
            return None
        if not isinstance(edit, BuiltinFix):
            self._finish(run, plan=playbook, fallback=edit.reason)
            return None
        return self._commit(run, incident, repo, base, edit.plan,
                     lambda branch, message: git_ops.commit_files(
                         repo.path, base_ref=base, branch=branch, files=edit.files, message=message,
                         allowed_paths=repo.allowed_paths))

    def _worker(self, run: FixRun, incident: Incident, playbook: str) -> Retry | None:
        if not run.task_id:
            return self._submit(run, incident, playbook)
        task = self.runner.run(tasks.get(run.task_id))
        if task is None:
            self._finish(run, plan=playbook, fallback=f"the fix-agent task {run.task_id} is gone")
            return None
        if task.state not in FINAL_STATES:
            return Retry(delay_s=POLL_S, attempt=2)
        if task.state != "completed":
            reason = f"the fix-agent task {task.id} ended {task.state}" + (f": {task.error}" if task.error else "")
            self._finish(run, plan=playbook, fallback=reason[:1000])
            return None
        proposal = parse_output(task.result or "")
        repo = RepoSpec.model_validate(run.repo) if run.repo else None
        if repo is None:
            self._finish(run, plan=proposal.plan, fallback=_no_repo(incident, run.project)
                         + "; the worker's plan is kept, its diff was not applied")
            return None
        if proposal.diff is None:
            self._finish(run, plan=proposal.plan, fallback="the fix-agent worker proposed no diff")
            return None
        diff = proposal.diff
        try:
            base = git_ops.resolve_ref(repo.path, run.base_ref)
        except GitError as exc:
            self._finish(run, plan=proposal.plan, fallback=exc.message)
            return None
        return self._commit(run, incident, repo, base, proposal.plan,
                            lambda branch, message: git_ops.commit_diff(
                                repo.path, base_ref=base, branch=branch, diff=diff, message=message,
                                allowed_paths=repo.allowed_paths))

    def _submit(self, run: FixRun, incident: Incident, playbook: str) -> Retry | None:
        bundle = self._bundle(run, incident, playbook)
        request = SubmitRequest(
            prompt=render_prompt(bundle), pool=FIX_POOL, idempotency_key=f"fix:{run.id}",
            context={"taskyard_fix": {"fix_run_id": run.id, "incident_id": incident.id,
                                      "failure_class": incident.failure_class,
                                      "repo": run.repo["path"] if run.repo else None,
                                      "base_ref": run.base_ref or None}})
        now = now_ms()
        statuses = self.runner.run(registry.status(None, online_since_ms=now - self.options.offline_after_ms))
        defs = {s.spec.name: s.spec for s in statuses}
        try:
            result = self.runner.run(admission(
                request, defs, task_id=fix_task_id(run.id), project=run.project, now_ms=now,
                default_bound=self.options.default_bound, offline_after_ms=self.options.offline_after_ms,
                extra_fields={"fix_run": run.id}))
            if result.status not in ("ok", "dup"):
                raise refusal(result, request)
        except AdmissionRefused as exc:
            if now - run.created_at_ms < self.options.replay_timeout_s * 1000:
                logger.info("no fix-agent worker took the task yet", extra={"run": run.id, "reason": exc.message})
                return Retry(delay_s=REFUSED_RETRY_S, attempt=2)
            self._finish(run, plan=playbook, fallback=f"no fix-agent worker took the task: {exc.message}")
            return None
        except TaskyardError as exc:
            self._finish(run, plan=playbook, fallback=f"could not submit the fix-agent task: {exc}")
            return None
        task_id = result.task_id if result.status == "dup" and result.task_id else fix_task_id(run.id)
        if result.status == "dup" and self._field(task_id, "fix_run") != run.id:  # the key is the run's alone
            self._finish(run, plan=playbook, fallback=f"task {task_id} holds this run's idempotency key but is not "
                                                      "its fix-agent task; nothing was applied")
            return None
        self.runner.run(runs.update("fix", run.id, now_ms=now_ms(), expect=("running",),
                                    fields={"task_id": task_id}))
        return Retry(delay_s=POLL_S, attempt=2)

    # -- shared --------------------------------------------------------------------------------------------
    def _commit(self, run: FixRun, incident: Incident, repo: RepoSpec, base: str, plan: str,
                make: Callable[[str, str], git_ops.Commit]) -> Retry | None:
        """Commit on the run's branch, one delivery of the job at a time (a redelivered job running beside the
        first waits, then finds the run finished or the branch made and reuses it)."""
        branch = branch_name(incident.id, run.n)
        message = (f"taskyard: fix {incident.failure_class} incident {incident.id[:12]} (run {run.n})\n\n{plan}\n\n"
                   f"Incident: {incident.id}\nFix-Run: {run.id}\n")
        lock = keys.key("lock", name=f"fixrun:{run.id}")
        if not self.runner.run(Op(bool, command=("SET", lock, "1", "NX", "PX", COMMIT_LOCK_MS))):
            return Retry(delay_s=POLL_S, attempt=2)
        try:
            commit = git_ops.existing_commit(repo.path, base=base, branch=branch) or make(branch, message)
        except GitError as exc:
            self._finish(run, plan=plan, fallback=exc.message)
            return None
        finally:
            self.runner.run(Op(int, command=("DEL", lock)))
        self._finish(run, plan=plan, commit=commit)
        return None

    def _finish(self, run: FixRun, *, plan: str, fallback: str = "", commit: git_ops.Commit | None = None) -> None:
        fields = {"status": "completed", "plan": plan, "fallback": "1" if fallback else "0",
                  "fallback_reason": fallback, "finished_at": str(now_ms())}
        if commit is not None:
            fields.update({"branch": commit.branch, "commit": commit.commit, "base_commit": commit.base,
                           "diff": commit.diff, "files": json.dumps(commit.files)})
        outcome, _ = self.runner.run(runs.update("fix", run.id, now_ms=now_ms(), expect=("queued", "running"),
                                                 fields=fields))
        if outcome != "ok":
            return
        stored = self.runner.run(runs.get("fix", run.id))
        done = FixRun.from_hash(stored) if stored else run
        logger.info("fix run completed", extra={"run": run.id, "incident": run.incident_id,
                                                "fallback": done.fallback, "commit": done.commit})
        self._settle(done)

    def _settle(self, done: FixRun) -> None:
        """What follows a completed run (its alert, auto-heal's next step), then ``settled``: a job that dies in
        between does it again when redelivered (the alert is deduplicated)."""
        public = done.to_public()
        public.pop("diff", None)  # alerts stay small: the diff is one GET away
        self.runner.run(alerts.emit_op(done.project, "fix_run.completed", public,
                                       dedupe=f"fix_run.completed:{done.id}"))
        for callback in self.on_completed:
            callback(done)
        self.runner.run(runs.update("fix", done.id, now_ms=now_ms(), expect=("completed",), fields={"settled": "1"}))

    def _field(self, task_id: str, name: str) -> str | None:
        return self.runner.run(Op(lambda raw: raw, command=("HGET", keys.key("task", id=task_id), name)))

    def _worker_spec(self, worker: str) -> Any:
        found = self.runner.run(registry.get_def(worker)) if worker else None
        return found[0] if found is not None else None

    def _bundle(self, run: FixRun, incident: Incident, playbook: str) -> dict[str, Any]:
        critical = incident.critical_step_seq
        events: list[dict[str, Any]] = []
        if incident.trace_id:
            trace = self.runner.run(traces.get(incident.trace_id))
            anchor = critical if critical is not None else (trace.last_seq if trace else 0)
            page = self.runner.run(traces.read_events(incident.trace_id, after_seq=max(0, anchor - EVENT_WINDOW - 1),
                                                      limit=2 * EVENT_WINDOW + 1))
            events = [e.to_public() for e in page]
        task = self.runner.run(tasks.get(incident.task_id)) if incident.task_id else None
        spec = self._worker_spec(incident.worker)
        return build_bundle(
            incident=incident.to_public(), playbook=playbook or None, events=events, critical_step_seq=critical,
            task=None if task is None else {"id": task.id, "prompt": task.prompt, "context": task.context,
                                            "state": task.state, "result": (task.result or "")[:MAX_TASK_TEXT],
                                            "error": (task.error or "")[:MAX_TASK_TEXT]},
            worker=spec.model_dump(mode="json", exclude_none=True) if spec is not None else None,
            repo=run.repo, window=EVENT_WINDOW)


def _no_repo(incident: Incident, project: str) -> str:
    who = f"worker {incident.worker}" if incident.worker else "this incident's agent"
    return (f"no repository is configured for {who} or project {project}: add repo: {{path, allowed_paths}} to "
            f"the worker's definition (or repos: {{{project}: ...}}) to let a fix be committed")
