"""Choosing where a task goes: the named worker, or round-robin over a pool or the auto-selectable workers.

Planning is pure (this module); the depth check, the online check and the write happen atomically in
``admit.lua``. Candidates are in name order; the round-robin cursor lives in Redis per candidate group, so
several API replicas share one rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import WorkerSpec
from engine.errors import NoOnlineWorkers, WorkerNotFound
from engine.models import SubmitRequest

__all__ = ["Plan", "plan"]


@dataclass(frozen=True)
class Plan:
    policy: str  # named | pool | round-robin
    candidates: list[tuple[str, int, int, float]]  # (worker, bound, max_retries, timeout s) in name order
    rr_group: str  # "" for a named worker
    require_online: bool


def plan(request: SubmitRequest, defs: dict[str, WorkerSpec], *, default_bound: int) -> Plan:
    """Which workers may take the request, and how to choose. Raises WorkerNotFound / NoOnlineWorkers."""

    def candidate(spec: WorkerSpec) -> tuple[str, int, int, float]:
        return spec.name, spec.max_queue_depth or default_bound, spec.max_retries, spec.timeout

    if request.worker:
        spec = defs.get(request.worker)
        if spec is None:
            raise WorkerNotFound()
        # A named worker that is offline still takes the task: it waits in its queue (DESIGN section 5).
        return Plan("named", [candidate(spec)], "", False)
    if request.pool:
        members = [s for s in defs.values() if request.pool in s.pools]
        policy, group = "pool", f"pool:{request.pool}"
    else:
        members = [s for s in defs.values() if s.auto]
        policy, group = "round-robin", "*"
    if not members:
        raise NoOnlineWorkers(decision={"policy": policy, "candidates": [], "skipped": []})
    members.sort(key=lambda s: s.name)
    return Plan(policy, [candidate(s) for s in members], group, True)
