"""The reaper: the engine's own liveness, so no task waits on Dramatiq's probabilistic maintenance.

Each pass (run by every ``serve`` and ``worker`` process; a short Redis lock lets one of them do it at a time):

- requeues the tasks of worker processes that stopped heartbeating (SIGKILL, power loss) and forgets them, but
  only once live processes have had a full offline window to heartbeat into a reachable store: not within that
  window after this reaper last found Redis unreachable, nor while Redis itself has been up for less (a restart
  reloads heartbeats that went stale while it was away: every process would look dead and every running task
  would run twice; the stranded-task move below waits the same way);
- enqueues delayed retries whose time has come;
- every ``SCAN_EVERY_S``: re-enqueues old pending tasks whose Dramatiq message went missing, fails pending
  tasks older than the task expiry with ``expired``, and moves round-robin tasks stranded on a worker that has
  had no live process for ``STRANDED_GRACE_MS`` to another online worker (tasks that named their worker wait).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from engine import keys, registry, tasks
from engine.clock import now_ms
from engine.dispatcher import plan
from engine.errors import NoOnlineWorkers, StoreUnavailable
from engine.models import SubmitRequest
from engine.store import Op, Runner

__all__ = ["Reaper", "ReaperOptions"]

logger = logging.getLogger(__name__)

LOCK_MS = 900  # milliseconds one process holds the reaper lock for a pass
SCAN_EVERY_S = 30.0  # seconds between scans for lost messages and expired tasks
MISSING_GRACE_MS = 30_000  # milliseconds a pending task must be old before its message counts as lost
STRANDED_GRACE_MS = 60_000  # milliseconds a worker must have been without a live process before its
#                             round-robin tasks move to another worker
BATCH = 500  # tasks handled per script call


@dataclass
class ReaperOptions:
    offline_after_ms: int
    task_expiry_ms: int
    max_lost: int
    default_bound: int = 256  # max_queue_depth of workers that set none


@dataclass
class Reaper:
    runner: Runner
    options: ReaperOptions
    owner: str
    _last_scan_ms: int = field(default=0)
    _store_away: bool = field(default=False)  # the last pass failed: Redis was unreachable
    _store_back_ms: int = field(default=0)  # when Redis answered again after the last outage seen here

    def tick(self) -> dict[str, int]:
        """One pass; answers what it did (empty when another process holds the lock)."""
        try:
            return self._tick()
        except StoreUnavailable:
            self._store_away = True
            raise

    def _tick(self) -> dict[str, int]:
        lock = keys.key("lock", name="reaper")
        locked = self.runner.run(Op(bool, command=("SET", lock, self.owner, "NX", "PX", LOCK_MS)))
        now = now_ms()
        if self._store_away:
            self._store_away, self._store_back_ms = False, now
        if not locked:
            return {}
        done = {"dead_processes": 0, "requeued": 0, "retries_due": 0, "missing": 0, "expired": 0}
        removed = self.runner.run(Op(list, command=("SMEMBERS", keys.key("workers_removed"))))
        names = self.runner.run(Op(list, command=("SMEMBERS", keys.key("workers")))) + removed
        cutoff = now - self.options.offline_after_ms
        dead: dict[str, list[str]] = {}
        for name in names:
            stale = self.runner.run(Op(list, command=(
                "ZRANGEBYSCORE", keys.key("worker_procs", worker=name), "-inf", cutoff)))
            for proc in stale:
                dead.setdefault(proc, []).append(name)
        if dead and not self._heartbeats_could_arrive(now):
            logger.info("stale heartbeats right after a store outage: no process counts as gone yet",
                        extra={"processes": len(dead)})
            dead = {}
        for proc, workers in dead.items():
            n = self.runner.run(tasks.reap_dead(proc_id=proc, workers=workers, now_ms=now,
                                                max_lost=self.options.max_lost, cutoff_ms=cutoff))
            if n < 0:  # it heartbeat between our read and the script: alive after all
                continue
            logger.warning("worker process gone", extra={"proc": proc, "workers": workers, "requeued": n})
            done["dead_processes"] += 1
            done["requeued"] += n
        for name in removed:
            self._forget_if_drained(name)
        due = self.runner.run(Op(list, command=("ZRANGEBYSCORE", keys.key("delayed"), "-inf", now,
                                                "LIMIT", 0, BATCH)))
        if due:
            done["retries_due"] = self.runner.run(tasks.reap_due(task_ids=due, now_ms=now))
        if now - self._last_scan_ms >= SCAN_EVERY_S * 1000:
            self._last_scan_ms = now
            done["redispatched"] = 0
            for name in names:
                self._scan_worker(name, now, done)
            if self._heartbeats_could_arrive(now):  # "no live process" means as little as "dead" above
                self._move_stranded(now, done)
        return done

    def _heartbeats_could_arrive(self, now: int) -> bool:
        """Whether the store has been reachable (from here) and up (Redis itself) for an offline window, so a
        stale heartbeat means a process that stopped, not a store that was away."""
        if now - self._store_back_ms < self.options.offline_after_ms:
            return False
        try:
            uptime_s = self.runner.run(Op(_uptime_s, command=("INFO", "server")))
        except StoreUnavailable:  # INFO refused (a managed Redis may rename it): judge by heartbeats alone
            return True
        return uptime_s is None or uptime_s * 1000 >= self.options.offline_after_ms

    def _move_stranded(self, now: int, done: dict[str, int]) -> None:
        online_since = now - self.options.offline_after_ms
        statuses = self.runner.run(registry.status(online_since_ms=online_since))
        defs = {s.spec.name: s.spec for s in statuses}
        for status in statuses:
            last = status.last_heartbeat_ms
            if status.processes or status.depth == 0 or (last is not None and now - last < STRANDED_GRACE_MS):
                continue
            waiting = self.runner.run(Op(list, command=(
                "ZRANGE", keys.key("worker_active", worker=status.spec.name), 0, BATCH - 1)))
            others = {n: s for n, s in defs.items() if n != status.spec.name}
            for task_id in waiting:
                task = self.runner.run(tasks.get(task_id))
                if task is None or task.state != "pending" or task.dispatch.get("policy") == "named":
                    continue
                try:
                    chosen = plan(SubmitRequest(prompt="-", pool=task.pool), others,
                                  default_bound=self.options.default_bound)
                except NoOnlineWorkers:
                    return
                moved = self.runner.run(tasks.redispatch(
                    task_id=task_id, from_worker=status.spec.name, now_ms=now, rr_group=chosen.rr_group,
                    online_since_ms=online_since, candidates=chosen.candidates))
                if moved is None:
                    break  # nowhere to go now (all offline or full): try again next scan
                done["redispatched"] += 1
                logger.warning("stranded task moved", extra={"task_id": task_id, "from": status.spec.name,
                                                             "to": moved})

    def _forget_if_drained(self, name: str) -> None:
        """Drop a removed worker from the reaper's watch once no process and no task of it remains."""
        procs, active = self.runner.run(Op(list, commands=(
            ("ZCARD", keys.key("worker_procs", worker=name)), ("ZCARD", keys.key("worker_active", worker=name)))))
        if procs == 0 and active == 0:
            self.runner.run(Op(bool, command=("SREM", keys.key("workers_removed"), name)))

    def _scan_worker(self, name: str, now: int, done: dict[str, int]) -> None:
        active = keys.key("worker_active", worker=name)
        old = self.runner.run(Op(list, command=("ZRANGEBYSCORE", active, "-inf", now - MISSING_GRACE_MS,
                                                "LIMIT", 0, BATCH)))
        if old:
            done["missing"] += self.runner.run(tasks.reap_missing(task_ids=old, now_ms=now))
        expired = self.runner.run(Op(list, command=("ZRANGEBYSCORE", active, "-inf",
                                                    now - self.options.task_expiry_ms, "LIMIT", 0, BATCH)))
        for task_id in expired:
            applied, _ = self.runner.run(tasks.finish(task_id=task_id, proc_id="", now_ms=now, outcome="failed",
                                                      text="expired", expect_state="pending"))
            done["expired"] += applied


def _uptime_s(info: object) -> int | None:
    """Redis's ``uptime_in_seconds`` from an ``INFO server`` answer (None when it is not there)."""
    if isinstance(info, dict) and isinstance(info.get("uptime_in_seconds"), int):
        return int(info["uptime_in_seconds"])
    return None
