"""The task service: what the API asks of the engine (submit, read, list, cancel, workers, health).

Async, over an :class:`~engine.store.AsyncRunner`. Worker definitions are cached for ``DEFS_TTL_MS`` so a submit
costs one Redis round trip; a named worker missing from the cache forces a refresh.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from config.settings import WorkerSpec
from engine import keys, registry, tasks
from engine.admission import admission, refusal
from engine.clock import now_ms
from engine.errors import Conflict, TaskNotFound, WorkerNotFound
from engine.ids import is_id, new_id
from engine.models import TASK_STATES, Task
from engine.paging import page_request
from engine.store import AsyncRunner, Op
from engine.submit import parse_submit

__all__ = ["ServiceOptions", "TaskService"]

DEFS_TTL_MS = 1000  # milliseconds a replica trusts its cached worker definitions
DEGRADED_FILL = 0.9  # fraction of total queue capacity above which /health says degraded


@dataclass(frozen=True)
class ServiceOptions:
    default_bound: int
    offline_after_ms: int
    max_lost: int


class TaskService:
    def __init__(self, runner: AsyncRunner, options: ServiceOptions) -> None:
        self.runner = runner
        self.options = options
        self._defs: dict[str, WorkerSpec] = {}
        self._defs_at = -DEFS_TTL_MS
        self._refresh: asyncio.Task[None] | None = None

    # -- workers -------------------------------------------------------------------------------------------
    async def _statuses(self, names: list[str] | None = None) -> list[registry.WorkerStatus]:
        online_since = now_ms() - self.options.offline_after_ms
        return await self.runner.run(registry.status(names, online_since_ms=online_since))

    async def _definitions(self, *, force: bool = False) -> dict[str, WorkerSpec]:
        """Cached definitions; concurrent callers share one refresh instead of a stampede on Redis."""
        if force or now_ms() - self._defs_at > DEFS_TTL_MS:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.ensure_future(self._load_definitions())
            await asyncio.shield(self._refresh)
        return self._defs

    async def _load_definitions(self) -> None:
        self._defs = {s.spec.name: s.spec for s in await self._statuses()}
        self._defs_at = now_ms()

    async def workers(self) -> list[dict[str, Any]]:
        now = now_ms()
        return [s.to_public(default_bound=self.options.default_bound, now_ms=now) for s in await self._statuses()]

    async def worker(self, name: str) -> dict[str, Any]:
        for status in await self._statuses([name]):
            return status.to_public(default_bound=self.options.default_bound, now_ms=now_ms())
        raise WorkerNotFound()

    async def register_worker(self, spec: WorkerSpec, *, source: str) -> dict[str, Any]:
        """Define a new worker; Conflict when the name is taken (decided in Redis, so two callers racing
        for one name cannot both succeed)."""
        if not await self.runner.run(registry.register(spec, source=source, replace=False)):
            raise Conflict("worker already exists")
        self._defs_at = -DEFS_TTL_MS
        return await self.worker(spec.name)

    async def remove_worker(self, name: str) -> int:
        """Delete a definition; its pending tasks fail with ``worker removed``. Answers how many failed here
        (should this stop half way, the reaper fails the rest; tasks still running finish normally, and any
        that would go back to the queue fail with ``worker removed`` instead)."""
        if await self.runner.run(registry.get_def(name)) is None:
            raise WorkerNotFound()
        await self.runner.run(registry.unregister(name))
        self._defs_at = -DEFS_TTL_MS
        ids = await self.runner.run(Op(list, command=("ZRANGE", keys.key("worker_active", worker=name), 0, -1)))
        failed = 0
        for task_id in ids:
            applied, _ = await self.runner.run(tasks.finish(
                task_id=task_id, proc_id="", now_ms=now_ms(), outcome="failed", text="worker removed",
                expect_state="pending"))
            failed += applied
        return failed

    # -- tasks ---------------------------------------------------------------------------------------------
    async def submit(self, project: str, body: Any) -> tuple[Task, bool]:
        """Store and enqueue a task; answers (task, created). ``created`` is False for an idempotent replay."""
        request = parse_submit(body)
        defs = await self._definitions(force=bool(request.worker) and request.worker not in self._defs)
        task_id, now = new_id(), now_ms()
        result = await self.runner.run(admission(
            request, defs, task_id=task_id, project=project, now_ms=now, default_bound=self.options.default_bound,
            offline_after_ms=self.options.offline_after_ms))
        if result.status == "dup":
            assert result.task_id is not None
            return await self.get(project, result.task_id), False
        if result.status != "ok":
            raise refusal(result, request)
        assert result.worker is not None
        spec = defs.get(result.worker)
        return Task(
            id=task_id, project=project, worker_name=result.worker, prompt=request.prompt, state="pending",
            seq=0, created_at_ms=now, context=request.context, attempts=0,
            max_retries=request.max_retries or (spec.max_retries if spec else 1),
            timeout=request.timeout or (spec.timeout if spec else 0.0), pool=request.pool,
            idempotency_key=request.idempotency_key, dispatch=result.decision or {},
        ), True

    async def get(self, project: str, task_id: str) -> Task:
        task = await self.runner.run(tasks.get(task_id)) if is_id(task_id) else None
        if task is None or task.project != project:
            raise TaskNotFound()
        return task

    async def list(self, project: str, *, state: str | None, worker: str | None, limit: int | None,
                   cursor: str | None) -> tuple[list[Task], str | None]:
        """A page newest first and the cursor of the next page (None on the last page)."""
        size, below = page_request(state=state, states=TASK_STATES, limit=limit, cursor=cursor)
        page, last_seq = await self.runner.run(tasks.list_page(project=project, state=state, worker=worker,
                                                               below_seq=below, limit=size))
        return page, (str(last_seq) if last_seq is not None else None)

    async def cancel(self, project: str, task_id: str) -> Task:
        if not is_id(task_id):
            raise TaskNotFound()
        outcome, _ = await self.runner.run(tasks.cancel(task_id=task_id, project=project, now_ms=now_ms()))
        if outcome == "missing":
            raise TaskNotFound()
        return await self.get(project, task_id)

    # -- health and metrics ---------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        statuses = await self._statuses()
        depth = sum(s.depth for s in statuses)
        cap = sum(s.spec.max_queue_depth or self.options.default_bound for s in statuses)
        online = sum(1 for s in statuses if s.processes)
        degraded = cap > 0 and depth > DEGRADED_FILL * cap
        return {
            "status": "degraded" if degraded else "ok",
            "queue_depth": depth,
            "queue_cap": cap,
            "workers": len(statuses),
            "workers_online": online,
            "redis": "ok",
        }

    async def metrics(self) -> dict[str, Any]:
        counters = await self.runner.run(Op(dict, command=("HGETALL", keys.key("metrics"))))
        latency = await self.runner.run(Op(dict, command=("HGETALL", keys.key("latency"))))
        engine_queue = await self.runner.run(Op(int, command=("LLEN", keys.key("dq_engine"))))
        return {"counters": counters, "latency": latency, "workers": await self._statuses(),
                "default_bound": self.options.default_bound, "engine_queue": engine_queue}
