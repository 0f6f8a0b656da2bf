"""Closing the loop: fix runs (the fix agent) and regression runs (replay before and after a fix)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.auth import principal_of
from api.controllers.body import decode_json
from engine.loop_service import LoopService

__all__ = ["FixController"]

Loop = NamedDependency[LoopService]  # the app's LoopService, injected by name ("loop")


async def _optional_body(request: Request) -> Any:
    """The JSON body, or None when the request has none (every field of these requests is optional)."""
    raw = await request.body()
    return None if not raw.strip() else decode_json(raw)


class FixController(Controller):
    tags = ["fixes"]

    @post("/api/incidents/{incident_id:str}/fix-agent", opt={"scope": "submit"}, status_code=202,
          summary="Run the fix agent for an incident: {repo?, base_ref?, runner?}; a running one is returned")
    async def start_fix(self, request: Request, loop: Loop, incident_id: FromPath[str]) -> Response[dict[str, Any]]:
        run, created = await loop.start_fix(principal_of(request).project, incident_id, await _optional_body(request))
        return Response(run.to_public(), status_code=202 if created else 200)

    @get("/api/fix-runs/{run_id:str}", opt={"scope": "read"}, summary="A fix run: plan, diff, commit or fallback")
    async def fix_run(self, request: Request, loop: Loop, run_id: FromPath[str]) -> dict[str, Any]:
        return (await loop.fix_run(principal_of(request).project, run_id)).to_public()

    @get("/api/incidents/{incident_id:str}/fix-runs", opt={"scope": "read"}, summary="An incident's fix runs")
    async def fix_runs(self, request: Request, loop: Loop, incident_id: FromPath[str]) -> list[dict[str, Any]]:
        return [r.to_public() for r in await loop.fix_runs(principal_of(request).project, incident_id)]

    @post("/api/incidents/{incident_id:str}/regression-runs", opt={"scope": "submit"}, status_code=202,
          summary="Replay an incident's tasks before and after a fix: {fix_run_id?, before_ref?, after_ref?, cases?}")
    async def start_regression(self, request: Request, loop: Loop,
                               incident_id: FromPath[str]) -> Response[dict[str, Any]]:
        run, created = await loop.start_regression(principal_of(request).project, incident_id,
                                                   await _optional_body(request))
        return Response(run.to_public(), status_code=202 if created else 200)

    @get("/api/incidents/{incident_id:str}/regression-runs", opt={"scope": "read"},
         summary="An incident's regression runs")
    async def regression_runs(self, request: Request, loop: Loop, incident_id: FromPath[str]) -> list[dict[str, Any]]:
        return [r.to_public() for r in await loop.regression_runs(principal_of(request).project, incident_id)]

    @get("/api/regression-runs/{run_id:str}", opt={"scope": "read"},
         summary="A regression run: per-case before/after results and the verdict")
    async def regression_run(self, request: Request, loop: Loop, run_id: FromPath[str]) -> dict[str, Any]:
        return (await loop.regression_run(principal_of(request).project, run_id)).to_public()

    @get("/api/regression-runs/{run_id:str}/compare", opt={"scope": "read"},
         summary="Side by side per case: detections, duration, tokens, cost and output diff")
    async def compare(self, request: Request, loop: Loop, run_id: FromPath[str]) -> dict[str, Any]:
        return await loop.compare(principal_of(request).project, run_id)
