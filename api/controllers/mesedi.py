"""Mesedi's telemetry surface: executions and their events, mapped onto traces (see engine/mesedi.py).

``POST /events`` shares its path with mecha's ``GET /events`` (webhook events), and Litestar routes one path per
controller, so that handler is :func:`mesedi_events`, mounted by :class:`~api.controllers.events.EventController`.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.auth import principal_of
from api.controllers.body import json_body, parse_json, read_limited
from engine.mesedi import MesediAdapter, check_schema_version

__all__ = ["MesediController"]

Mesedi = NamedDependency[MesediAdapter]  # injected by name ("mesedi")


class MesediController(Controller):
    tags = ["telemetry: Mesedi"]

    @post("/executions", status_code=201, opt={"scope": "ingest"}, summary="Start an execution (a trace)")
    async def start(self, request: Request, mesedi: Mesedi) -> Response[dict[str, Any]]:
        check_schema_version(request.headers.get("x-mesedi-schema-version"))
        execution, created = await mesedi.start(principal_of(request).project, await json_body(request))
        return Response(execution, status_code=201 if created else 200)

    @patch("/executions/{execution_id:str}", status_code=200, opt={"scope": "ingest"},
           summary="End an execution: its status, duration and token totals")
    async def finish(self, request: Request, mesedi: Mesedi, execution_id: FromPath[str]) -> dict[str, Any]:
        check_schema_version(request.headers.get("x-mesedi-schema-version"))
        return await mesedi.finish(principal_of(request).project, execution_id, await json_body(request))


async def mesedi_events(request: Request, mesedi: MesediAdapter) -> dict[str, Any]:
    """``POST /events``: Mesedi execution events (a JSON array), idempotent on ``event_id``."""
    check_schema_version(request.headers.get("x-mesedi-schema-version"))
    body = parse_json(await read_limited(request, mesedi.traces.settings.max_body_bytes))
    return await mesedi.events(principal_of(request).project, body)
