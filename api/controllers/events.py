"""Webhooks and events: POST /webhook/{source}, GET /events, GET /event/{id}, replay, the rules dry run, the audit log.

A webhook body is read with the source's own size limit (``max_body_bytes``, 5 MiB by default): a declared
length over it is refused 413 before a byte is read, a chunked body as soon as it passes the limit.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.auth import principal_of
from api.controllers.body import int_param, json_body, read_limited
from api.controllers.mesedi import mesedi_events
from config import defaults
from engine.clock import parse_ms
from engine.errors import Forbidden, Unauthorized
from engine.event_service import EventService
from engine.mesedi import MesediAdapter

__all__ = ["EventController"]

Events = NamedDependency[EventService]  # the app's EventService, injected by name ("events")


def _since_ms(value: str | None) -> int | None:
    """``since`` as epoch milliseconds or an RFC 3339 time (``2026-11-23T09:00:00Z``)."""
    return None if value is None else parse_ms(value, "since")


class EventController(Controller):
    tags = ["events"]

    @post("/webhook/{source:str}", status_code=202, opt={"scope": "ingest"}, summary="Receive a webhook",
          request_max_body_size=None)
    async def webhook(self, request: Request, events: Events, source: FromPath[str]) -> Response[dict[str, Any]]:
        spec = events.source(source)
        principal = principal_of(request)
        if not principal.authenticated and not spec.verifies_signature:
            raise Unauthorized()  # a source without a secret needs an API key
        project = principal.project
        if spec.project is not None:
            # A signed source's signature speaks for its project; without one, the key must be that project's.
            if not spec.verifies_signature and principal.project != spec.project:
                raise Forbidden()
            project = spec.project
        body = await read_limited(request, spec.max_body_bytes)
        headers = {k.lower(): v for k, v in request.headers.items()}
        receipt = await events.receive(source, headers, body, project=project)
        return Response(receipt.to_public(), status_code=202 if receipt.status == "received" else 200)

    @post("/events", status_code=200, opt={"scope": "ingest"}, request_max_body_size=None,
          summary="Mesedi: append execution events (a JSON array), idempotent on event_id")
    async def mesedi_events(self, request: Request, mesedi: NamedDependency[MesediAdapter]) -> dict[str, Any]:
        return await mesedi_events(request, mesedi)

    @get("/events", opt={"scope": "read"}, summary="List webhook events, newest first")
    async def index(self, request: Request, events: Events) -> Response[list[dict[str, Any]]]:
        q = request.query_params
        page, cursor = await events.list_events(
            principal_of(request).project, state=q.get("state") or None, source=q.get("source") or None,
            limit=int_param(q.get("limit"), "limit"), cursor=q.get("cursor") or None)
        headers = {"X-Next-Cursor": cursor} if cursor else {}
        return Response([e.to_public() for e in page], headers=headers)

    @get("/event/{event_id:str}", opt={"scope": "read"}, summary="Get an event with its payload and tasks")
    async def show(self, request: Request, events: Events, event_id: FromPath[str]) -> dict[str, Any]:
        return await events.get(principal_of(request).project, event_id)

    @post("/api/events/{event_id:str}/replay", status_code=202, opt={"scope": "submit"},
          summary="Run a stored event's matching again, as a new event (replay_of the original)")
    async def replay(self, request: Request, events: Events, event_id: FromPath[str]) -> dict[str, Any]:
        return await events.replay(principal_of(request).project, event_id)

    @post("/api/rules/test", status_code=200, opt={"scope": "read"}, summary="Dry-run the rules on a payload")
    async def test_rules(self, request: Request, events: Events) -> dict[str, Any]:
        return events.test_rules(await json_body(request))

    @get("/logs", opt={"scope": "admin"}, summary="The audit trail of the key's project, newest first")
    async def logs(self, request: Request, events: Events) -> Response[list[dict[str, Any]]]:
        q = request.query_params
        since_ms = _since_ms(q.get("since") or None)
        limit = int_param(q.get("limit"), "limit")
        page = await events.logs(principal_of(request).project, event=q.get("event") or None,
                                 task=q.get("task") or None, action=q.get("action") or None, since_ms=since_ms,
                                 limit=defaults.AUDIT_PAGE if limit is None else limit)
        # The scan stopped at its cap: older matches may exist (narrow it with since=, event= or task=).
        headers = {} if page.complete else {"X-Audit-Truncated": "true"}
        return Response(page.entries, headers=headers)
