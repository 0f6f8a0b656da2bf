"""MeshAI-shaped telemetry: POST /heartbeat, POST /telemetry/usage(s), GET /api/agents, GET /api/usage.

The project is always the API key's, never the body's. Ingest routes need the ``ingest`` scope, reads ``read``.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.auth import principal_of
from api.controllers.body import json_body
from engine.telemetry import TelemetryService

__all__ = ["TelemetryController"]

Telemetry = NamedDependency[TelemetryService]  # the app's TelemetryService, injected by name ("telemetry")


class TelemetryController(Controller):
    tags = ["telemetry"]

    @post("/heartbeat", status_code=200, opt={"scope": "ingest"}, summary="Record an agent heartbeat (MeshAI)")
    async def heartbeat(self, request: Request, telemetry: Telemetry) -> dict[str, Any]:
        view = await telemetry.heartbeat(principal_of(request).project, await json_body(request))
        return {"success": True, "data": {k: view[k] for k in ("agent_id", "status", "last_heartbeat")}}

    @post("/telemetry/usage", status_code=201, opt={"scope": "ingest"}, summary="Record one LLM usage (MeshAI)")
    async def usage(self, request: Request, telemetry: Telemetry) -> dict[str, Any]:
        record = await telemetry.record_usage(principal_of(request).project, await json_body(request))
        return {"success": True, "data": record}

    @post("/telemetry/usages", status_code=200, opt={"scope": "ingest"},
          summary="Record up to 100 LLM usages; valid ones are kept even when others are rejected (MeshAI)")
    async def usages(self, request: Request, telemetry: Telemetry) -> dict[str, Any]:
        return await telemetry.record_usages(principal_of(request).project, await json_body(request))

    @get("/api/agents", opt={"scope": "read"}, summary="External agents by last heartbeat, with their health")
    async def agents(self, request: Request, telemetry: Telemetry) -> list[dict[str, Any]]:
        status = request.query_params.get("status") or None
        return await telemetry.agents(principal_of(request).project, status=status)

    @get("/api/agents/{agent_id:str}", opt={"scope": "read"}, summary="One agent's health (unknown if never seen)")
    async def agent(self, request: Request, telemetry: Telemetry, agent_id: FromPath[str]) -> dict[str, Any]:
        return await telemetry.agent(principal_of(request).project, agent_id)

    @get("/api/usage", opt={"scope": "read"}, summary="Tokens and cost per agent, model or worker, with totals")
    async def summary(self, request: Request, telemetry: Telemetry) -> dict[str, Any]:
        q = request.query_params
        return await telemetry.summary(principal_of(request).project, group_by=q.get("group_by") or None,
                                       from_=q.get("from") or None, to=q.get("to") or None)
