"""Regression replay: the ``regression_replay`` engine job (DESIGN section 6).

For each case (a task the incident affected: its prompt, context and worker), the job runs the task again on
the same worker twice, once with its ``cwd`` switched to a git worktree of ``before_commit`` and once of
``after_commit``, through the normal queues (so bounds, round-robin and concurrency apply; the worker process
must see this machine's disk, where the worktrees live). Replayed tasks carry ``regression_run``: their traces
are analysed but never counted into incidents. When every replayed task has ended, the job runs the detectors
on the new traces, judges each case (:mod:`engine.replay_verdict`), stores the verdict, and on ``fixed`` marks
the incident resolved with the fix linked (the ``regressed`` rule then watches for its return).

The job is re-entrant: each step submits what is not submitted yet (idempotency keys make a repeated step
harmless), then asks to run again in ``POLL_S`` until all tasks ended or ``fix.replay_timeout`` passed.
Worktrees are removed when the run ends, whatever the outcome, and when its job gives up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from engine import alerts, git_ops, incidents, keys, registry, runs, tasks, traces
from engine.admission import admission
from engine.analysis import Analyzer
from engine.clock import now_ms
from engine.errors import AdmissionRefused, GitError, QueueFull, TaskyardError
from engine.event_jobs import Retry
from engine.loop_options import LoopOptions
from engine.loop_records import RegressionRun
from engine.models import FINAL_STATES, SubmitRequest
from engine.replay_verdict import settle, side_failed, summarize
from engine.store import Op, Runner

__all__ = ["SIDES", "Replay", "replay_task_id"]

logger = logging.getLogger(__name__)

SIDES = ("before", "after")
POLL_S = 1.0  # seconds between the job's looks at its replayed tasks
MAX_OUTPUT_CHARS = 8_000  # characters of each replayed task's output kept for the comparison


class Replay:
    def __init__(self, runner: Runner, analyzer: Analyzer, options: LoopOptions) -> None:
        self.runner = runner
        self.analyzer = analyzer
        self.options = options
        self.on_verdict: list[Any] = []  # callbacks (run) after a run completes: auto-heal's next step

    # -- the job -------------------------------------------------------------------------------------------
    def job(self, run_id: str, attempt: int) -> Retry | None:
        found = self.runner.run(runs.get("regression", run_id))
        if found is None:
            return None
        run = RegressionRun.from_hash(found)
        if run.status in runs.FINAL_STATUSES:
            if run.status == "completed" and found.get("settled") != "1":
                self._settle(run)  # the delivery that finished it died before its follow-ups
            return None
        if run.status == "queued":
            self.runner.run(runs.update("regression", run.id, now_ms=now_ms(), expect=("queued",),
                                        fields={"status": "running", "started_at": str(now_ms())}))
        cases = [dict(c) for c in run.cases]
        try:
            return self._step(run, cases, attempt)
        except GitError as exc:
            self._finish(run, cases, error=exc.message)
            return None

    def give_up(self, run_id: str, exc: BaseException) -> None:
        """The job failed for good (Dramatiq's retries are spent): the run fails, its worktrees go."""
        found = self.runner.run(runs.get("regression", run_id))
        if found is None:
            return
        run = RegressionRun.from_hash(found)
        self._cleanup(run)
        self.runner.run(runs.update("regression", run.id, now_ms=now_ms(), expect=("queued", "running"), fields={
            "status": "failed", "verdict": "error", "finished_at": str(now_ms()),
            "error": f"the replay job failed: {type(exc).__name__}: {exc}"[:500]}))

    # -- steps ---------------------------------------------------------------------------------------------
    def _worktree(self, run: RegressionRun, side: str) -> Path:
        return self.options.worktree_root / run.id / side

    def _step(self, run: RegressionRun, cases: list[dict[str, Any]], attempt: int) -> Retry | None:
        assert run.repo is not None
        for side, commit in (("before", run.before_commit), ("after", run.after_commit)):
            path = self._worktree(run, side)
            if not (path / ".git").exists():
                shutil.rmtree(path, ignore_errors=True)  # a half-made one from an interrupted step
                path.parent.mkdir(parents=True, exist_ok=True)
                git_ops.add_worktree(run.repo["path"], commit, str(path))
        now = now_ms()
        changed = self._submit(run, cases, now)
        waiting = False
        for case in cases:
            for side in SIDES:
                judged = case[side]
                if judged.get("error") or "failed" in judged:
                    continue
                if not judged.get("task_id"):
                    waiting = True  # refused for now (queue full): submitted on a later step
                    continue
                state = self.runner.run(Op(lambda raw: raw, command=(
                    "HGET", keys.key("task", id=judged["task_id"]), "state")))
                if state not in FINAL_STATES:
                    waiting = True
                    continue
                self._judge(run, judged, state)
                changed = True
        if waiting and now < run.deadline_ms:
            if changed:
                self._save(run, cases)
            return Retry(delay_s=POLL_S, attempt=attempt + 1)
        if waiting:
            self._expire(run, cases, now)
        self._finish(run, cases)
        return None

    def _submit(self, run: RegressionRun, cases: list[dict[str, Any]], now: int) -> bool:
        """Admit each case's side that has no task yet; answers whether anything changed."""
        statuses = self.runner.run(registry.status(None, online_since_ms=now - self.options.offline_after_ms))
        defs = {s.spec.name: s.spec for s in statuses}
        changed = False
        for index, case in enumerate(cases):
            for side in SIDES:
                judged = case.setdefault(side, {})
                if judged.get("task_id") or judged.get("error"):
                    continue
                cwd = self._worktree(run, side) / case.get("cwd_rel", "")
                request = SubmitRequest(prompt=case["prompt"], worker=case["worker"], context=case.get("context"),
                                        max_retries=1, idempotency_key=f"regression:{run.id}:{index}:{side}")
                task_id = replay_task_id(run.id, index, side)
                try:
                    result = self.runner.run(admission(
                        request, defs, task_id=task_id, project=run.project, now_ms=now,
                        default_bound=self.options.default_bound, offline_after_ms=self.options.offline_after_ms,
                        extra_fields={"cwd": str(cwd), "regression_run": run.id}))
                except QueueFull:
                    continue
                except AdmissionRefused as exc:
                    judged["error"] = f"could not run the case: {exc.message}"
                    changed = True
                    continue
                except TaskyardError as exc:  # the worker is gone
                    judged["error"] = f"could not run the case on worker {case['worker']}: {exc}"
                    changed = True
                    continue
                if result.status in ("ok", "dup"):
                    admitted = result.task_id if result.status == "dup" and result.task_id else task_id
                    owner = self.runner.run(Op(lambda raw: raw, command=(
                        "HGET", keys.key("task", id=admitted), "regression_run")))
                    if owner != run.id:  # the idempotency key is the run's alone: never adopt another task
                        judged["error"] = f"task {admitted} holds this case's idempotency key but is not its replay"
                    else:
                        judged["task_id"] = judged["trace_id"] = admitted
                    changed = True
        return changed

    def _judge(self, run: RegressionRun, judged: dict[str, Any], state: str) -> None:
        """Run the detectors on a replayed task's new trace and keep what the comparison shows."""
        task = self.runner.run(tasks.get(judged["task_id"]))
        judged["state"] = state
        if task is not None:
            judged["output"] = (task.result or task.error or "")[:MAX_OUTPUT_CHARS]
        if state == "cancelled":
            judged["error"] = "the replayed task was cancelled"
            return
        trace = self.runner.run(traces.get(judged["task_id"]))
        analysis = self.analyzer.analyze(judged["task_id"], final=True, record=False, trace=trace) if trace else None
        if trace is None or analysis is None:
            judged["error"] = f"the replayed task has no trace (it ended {state} before it started)"
            return
        detections = [d.to_public() for d in analysis.detections]
        judged.update({
            "detections": detections, "failed": side_failed(detections, run.failure_class),
            "duration_ms": trace.duration_ms, "tokens": trace.tokens_in + trace.tokens_out,
            "cost_usd": round(trace.cost_usd, 8), "events": trace.events})

    def _expire(self, run: RegressionRun, cases: list[dict[str, Any]], now: int) -> None:
        """The replay timeout passed: cancel what still runs; those sides are errors."""
        for case in cases:
            for side in SIDES:
                judged = case[side]
                if judged.get("error") or "failed" in judged:
                    continue
                if judged.get("task_id"):
                    self.runner.run(tasks.cancel(task_id=judged["task_id"], project=run.project, now_ms=now))
                judged["error"] = "did not finish within fix.replay_timeout"

    # -- the end -------------------------------------------------------------------------------------------
    def _save(self, run: RegressionRun, cases: list[dict[str, Any]]) -> None:
        self.runner.run(runs.update("regression", run.id, now_ms=now_ms(), expect=("running",),
                                    fields={"cases": json.dumps(cases)}))

    def _finish(self, run: RegressionRun, cases: list[dict[str, Any]], *, error: str = "") -> None:
        try:
            for case in cases:
                if error:
                    case["result"] = "error"
                else:
                    settle(case)
            counts, verdict = summarize(cases)
            if error:
                verdict = "error"
            fields = {"status": "completed", "cases": json.dumps(cases), "counts": json.dumps(counts),
                      "verdict": verdict, "error": error, "finished_at": str(now_ms())}
            outcome, _ = self.runner.run(runs.update("regression", run.id, now_ms=now_ms(), expect=("running",),
                                                     fields=fields))
        finally:
            self._cleanup(run)
        if outcome != "ok":
            return  # another delivery of the job finished it first
        logger.info("regression run completed", extra={"run": run.id, "incident": run.incident_id,
                                                       "verdict": verdict, **counts})
        stored = self.runner.run(runs.get("regression", run.id))
        self._settle(RegressionRun.from_hash(stored) if stored else run)

    def _settle(self, done: RegressionRun) -> None:
        """What follows a completed run (resolving the incident on ``fixed``, the alert, auto-heal's next step),
        then ``settled``: a job that dies in between does it all again when redelivered (each step is idempotent:
        resolving a resolved incident changes nothing, the alert is deduplicated)."""
        if done.verdict == "fixed":
            self._resolve(done)
        self.runner.run(alerts.emit_op(done.project, "regression_run.completed", {
            **done.to_public(), "cases": len(done.cases)}, failure_class=done.failure_class,
            dedupe=f"regression_run.completed:{done.id}"))
        for callback in self.on_verdict:
            callback(done)
        self.runner.run(runs.update("regression", done.id, now_ms=now_ms(), expect=("completed",),
                                    fields={"settled": "1"}))

    def _resolve(self, run: RegressionRun) -> None:
        """A verified fix: the incident is resolved with the fix linked."""
        self.runner.run(Op(int, command=("HSET", keys.key("incident", id=run.incident_id),
                                         "fix_run_id", run.fix_run_id, "regression_run_id", run.id)))
        updated = self.runner.run(incidents.update(
            run.incident_id, project=run.project, status="resolved", owner=None, set_owner=False,
            by=f"regression-run:{run.id}", now_ms=now_ms()))
        if updated is not None and updated.previous_status not in (None, "resolved"):
            incident = updated.incident
            self.runner.run(alerts.emit_op(run.project, "incident.resolved", alerts.incident_data(incident),
                                           failure_class=incident.failure_class))

    def _cleanup(self, run: RegressionRun) -> None:
        root = self.options.worktree_root / run.id
        for side in SIDES:
            path = root / side
            if run.repo is not None:
                try:
                    git_ops.remove_worktree(run.repo["path"], str(path))
                except GitError:
                    logger.warning("could not remove a worktree", extra={"run": run.id, "path": str(path)})
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def replay_task_id(run_id: str, index: int, side: str) -> str:
    """The id of a case's replayed task: derived from the run, the case and the side, so a repeated step
    admits the same task."""
    return hashlib.sha256(f"{run_id}:{index}:{side}".encode()).hexdigest()[:32]
