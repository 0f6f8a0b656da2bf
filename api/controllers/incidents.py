"""Incidents: list (newest activity first), read with evidence and playbook, triage (status, owner)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.auth import principal_of
from api.controllers.body import int_param, json_body
from engine.errors import Unprocessable, ValidationFailed
from engine.incident_service import IncidentService

__all__ = ["IncidentController"]

Incidents = NamedDependency[IncidentService]  # the app's IncidentService, injected by name ("incidents")


class IncidentController(Controller):
    tags = ["incidents"]

    @get("/api/incidents", opt={"scope": "read"}, summary="List incidents, newest activity first")
    async def list_incidents(self, request: Request, incidents: Incidents) -> Response[list[dict[str, Any]]]:
        q = request.query_params
        page, cursor = await incidents.list_incidents(
            principal_of(request).project, status=q.get("status") or None, failure_class=q.get("class") or None,
            worker=q.get("worker") or None, limit=int_param(q.get("limit"), "limit"), cursor=q.get("cursor") or None)
        headers = {"X-Next-Cursor": cursor} if cursor else {}
        return Response([i.to_public() for i in page], headers=headers)

    @get("/api/incidents/{incident_id:str}", opt={"scope": "read"},
         summary="An incident with its evidence, history and playbook")
    async def show(self, request: Request, incidents: Incidents, incident_id: FromPath[str]) -> dict[str, Any]:
        incident = await incidents.get(principal_of(request).project, incident_id)
        return incident.to_public(playbook=incidents.playbook(incident.failure_class))

    @patch("/api/incidents/{incident_id:str}", opt={"scope": "submit"},
           summary="Triage an incident: {status?, owner?}; each change goes to its history")
    async def triage(self, request: Request, incidents: Incidents, incident_id: FromPath[str]) -> dict[str, Any]:
        try:
            body = await json_body(request)
        except ValidationFailed as exc:
            raise Unprocessable(exc.message, detail=exc.detail) from None
        principal = principal_of(request)
        actor = f"key:{principal.key_id}" if principal.key_id else "anonymous"
        updated = await incidents.update(principal.project, incident_id, body, actor=actor)
        return updated.incident.to_public(playbook=incidents.playbook(updated.incident.failure_class))
