"""Writing one task's result back to GitHub, resumably: the part of ``task_finished`` that talks to GitHub.

Plans the steps under the worker's policy (:mod:`engine.writeback`), runs those not done on an earlier try,
and records each one that finished for good (succeeded, or failed for a reason a retry cannot fix) on the
event, so a retry never repeats it. The caller decides when to try again and, after the last try, calls
:func:`record_failure`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config import defaults
from config.settings import PolicySpec
from engine import events
from engine.clock import now_ms
from engine.github_api import GitHubClient
from engine.store import Runner
from engine.writeback import Target, WriteBackRequest, execute, plan

__all__ = ["record_failure", "write_back"]

Audit = Callable[..., None]


def write_back(runner: Runner, client: GitHubClient, request: WriteBackRequest, policy: PolicySpec,
               target: Target, *, event_id: str, task_id: str, first_try: bool, audit: Audit) -> list[str]:
    """Run the steps not done yet; answers the retryable failures still pending ("<step>: <why>")."""
    steps = plan(request, policy, target)
    if first_try:
        for problem in request.problems:
            audit("write_back_problem", event=event_id, task=task_id, problem=problem)
        for step in steps:
            audit("policy_decision", event=event_id, task=task_id, step=step.key, decision=step.decision)
    done = set(_recorded(runner, event_id, task_id))
    pending: list[str] = []
    for result in execute(client, steps, done=done, marker=f"{event_id}/{task_id}"):
        if result.ok or not result.retryable:  # done for good, either way: never tried again
            runner.run(events.record_write_back(event_id, task_id, result.key,
                                                {"ok": result.ok, "detail": result.detail}))
            audit("write_back" if result.ok else "write_back_step_failed", event=event_id, task=task_id,
                  step=result.key, detail=result.detail)
        else:
            pending.append(f"{result.key}: {result.detail}")
    return pending


def record_failure(runner: Runner, *, event_id: str, task_id: str, pending: list[str], audit: Audit) -> None:
    """After the last try: if any step failed, the event says why. Recorded at once; the state moves now if the
    event has settled, else when its last task ends (follow_event turns "completed" into write_back_failed
    while ``wb_failed`` is set)."""
    failed = [f"{step}: {outcome.get('detail')}" for step, outcome in _recorded(runner, event_id, task_id).items()
              if not outcome.get("ok")] + pending
    if not failed:
        return
    reason = ("write-back failed: " + "; ".join(failed))[:defaults.MAX_EVENT_ERROR_CHARS]
    runner.run(events.update(event_id=event_id, now_ms=now_ms(), fields={"wb_failed": reason}))
    runner.run(events.update(event_id=event_id, now_ms=now_ms(), state="write_back_failed", detail=reason,
                             expect=("completed",), fields={"error": reason}))
    audit("write_back_failed", event=event_id, task=task_id, reason=reason)


def _recorded(runner: Runner, event_id: str, task_id: str) -> dict[str, dict[str, Any]]:
    """This task's write-back steps that finished for good: step key -> outcome."""
    prefix = task_id + ":"
    return {k[len(prefix):]: v for k, v in runner.run(events.write_back_done(event_id)).items()
            if k.startswith(prefix)}
