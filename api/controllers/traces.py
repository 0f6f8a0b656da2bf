"""Traces: create, ingest events (batched, partial), read, list sessions, and the live SSE stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.auth import principal_of
from api.controllers.body import int_param, json_body, parse_json, read_limited
from config import defaults
from engine.analysis import Analyzer
from engine.errors import TraceNotFound, ValidationFailed
from engine.trace_service import TraceService

__all__ = ["TraceController"]

Traces = NamedDependency[TraceService]  # the app's TraceService, injected by name ("traces")


def _seq_param(value: str | None, name: str) -> int:
    return int_param(value, name, digits=16) or 0


class TraceController(Controller):
    tags = ["traces"]

    @post("/api/traces", status_code=201, opt={"scope": "ingest"}, summary="Create a trace")
    async def create(self, request: Request, traces: Traces) -> Response[dict[str, Any]]:
        trace, created = await traces.create(principal_of(request).project, await json_body(request))
        return Response(trace.to_public(), status_code=201 if created else 200)

    @get("/api/traces/{trace_id:str}", opt={"scope": "read"}, summary="Get a trace's summary")
    async def show(self, request: Request, traces: Traces, trace_id: FromPath[str]) -> dict[str, Any]:
        return (await traces.get(principal_of(request).project, trace_id)).to_public()

    @post("/api/traces/{trace_id:str}/events", status_code=200, opt={"scope": "ingest"},
          summary="Append events (one, a JSON array, or {events: [...]}); valid events land even when others fail",
          request_max_body_size=None)
    async def ingest(self, request: Request, traces: Traces, trace_id: FromPath[str]) -> dict[str, Any]:
        body = parse_json(await read_limited(request, traces.settings.max_body_bytes))
        result = await traces.ingest(principal_of(request).project, trace_id, body)
        return result.to_public()

    @get("/api/traces/{trace_id:str}/events", opt={"scope": "read"}, summary="A trace's events in seq order")
    async def events(self, request: Request, traces: Traces, trace_id: FromPath[str]) -> list[dict[str, Any]]:
        q = request.query_params
        limit = int_param(q.get("limit"), "limit")
        page = await traces.events(principal_of(request).project, trace_id,
                                   after_seq=_seq_param(q.get("after_seq"), "after_seq"),
                                   limit=defaults.TRACE_PAGE if limit is None else limit)
        return [e.to_public() for e in page]

    @post("/api/traces/{trace_id:str}/analyze", status_code=200, opt={"scope": "ingest"},
          summary="Run the detectors on a trace now; the result is stored and returned")
    async def analyze(self, request: Request, traces: Traces, analyzer: NamedDependency[Analyzer],
                      trace_id: FromPath[str]) -> dict[str, Any]:
        await traces.get(principal_of(request).project, trace_id)  # 404 for an unknown or foreign trace
        result = await asyncio.to_thread(analyzer.analyze, trace_id, final=True)
        if result is None:
            raise TraceNotFound()
        return result.to_public()

    @get("/api/traces/{trace_id:str}/analysis", opt={"scope": "read"}, summary="A trace's stored analysis")
    async def analysis(self, request: Request, traces: Traces, trace_id: FromPath[str]) -> Any:
        return await traces.analysis(principal_of(request).project, trace_id)

    @get("/api/sessions", opt={"scope": "read"}, summary="List traces, newest first")
    async def sessions(self, request: Request, traces: Traces) -> Response[list[dict[str, Any]]]:
        q = request.query_params
        page, cursor = await traces.sessions(
            principal_of(request).project, status=q.get("status") or None, agent=q.get("agent") or None,
            limit=int_param(q.get("limit"), "limit"), cursor=q.get("cursor") or None)
        headers = {"X-Next-Cursor": cursor} if cursor else {}
        return Response([t.to_public() for t in page], headers=headers)

    @get("/api/stream", opt={"scope": "read"}, summary="A trace's events live (SSE); resumes from Last-Event-ID")
    async def stream(self, request: Request, traces: Traces) -> ServerSentEvent:
        q = request.query_params
        trace_id = q.get("trace_id") or ""
        if not trace_id:
            raise ValidationFailed("trace_id is required")
        resume = request.headers.get("last-event-id")
        after = _seq_param(resume, "Last-Event-ID") if resume else _seq_param(q.get("after_seq"), "after_seq")
        project = principal_of(request).project
        await traces.get(project, trace_id)  # 404 before the stream starts, not inside it
        feed = traces.follow(project, trace_id, after_seq=after, heartbeat_s=defaults.SSE_HEARTBEAT_S)

        async def messages() -> AsyncIterator[ServerSentEventMessage]:
            async for event in feed:
                if event is None:
                    yield ServerSentEventMessage(comment="keep-alive", data=None)
                else:
                    yield ServerSentEventMessage(id=event.seq, data=json.dumps(
                        event.to_public(trace_id), ensure_ascii=False, separators=(",", ":")))

        return ServerSentEvent(messages(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
