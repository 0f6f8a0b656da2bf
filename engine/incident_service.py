"""The incident service: what the API (and the analysis path) asks of the engine about incidents: record
detections, read, list, triage."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from engine import alerts, incidents
from engine.bodies import object_body
from engine.clock import now_ms
from engine.detectors.model import FAILURE_CLASSES, Detection
from engine.errors import IncidentNotFound, Unprocessable, ValidationFailed
from engine.ids import is_id
from engine.incidents import INCIDENT_STATUSES, Incident, Outcome, Updated
from engine.paging import page_request
from engine.store import AsyncRunner
from engine.trace_service import AGENT_RE

__all__ = ["OWNER_RE", "IncidentService"]

OWNER_RE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")  # an owner: 1 to 200 characters, no control characters
_PATCH_FIELDS = frozenset({"status", "owner"})


class IncidentService:
    def __init__(self, runner: AsyncRunner, playbooks: Mapping[str, str]) -> None:
        self.runner = runner
        self.playbooks = playbooks

    async def record(self, project: str, trace_id: str, task_id: str | None, worker: str, cost_usd: float,
                     detections: Sequence[Detection], now_ms: int) -> list[Outcome]:
        """Count one trace's detections into incidents (see :func:`engine.incidents.record`): one Outcome per
        detection, in order; ``outcome.alert`` is true exactly once per incident creation and per regression.
        Sync callers (engine jobs) run ``incidents.record(...)`` on their own runner instead."""
        if not detections:
            return []
        return await self.runner.run(incidents.record(
            project=project, trace_id=trace_id, task_id=task_id, worker=worker, cost_usd=cost_usd,
            detections=detections, now_ms=now_ms))

    async def get(self, project: str, incident_id: str) -> Incident:
        """The incident with its history; unknown or another project's -> IncidentNotFound."""
        found = await self.runner.run(incidents.get(incident_id, project=project)) if is_id(incident_id) else None
        if found is None:
            raise IncidentNotFound()
        return found

    def playbook(self, failure_class: str) -> str | None:
        return self.playbooks.get(failure_class)

    async def list_incidents(self, project: str, *, status: str | None, failure_class: str | None, worker: str | None,
                   limit: int | None, cursor: str | None) -> tuple[list[Incident], str | None]:
        """A page newest activity first and the cursor of the next one (None: no more). Bad values -> 400."""
        if status is not None and status not in INCIDENT_STATUSES:
            raise ValidationFailed(f"invalid status: must be one of {', '.join(INCIDENT_STATUSES)}")
        if failure_class is not None and failure_class not in FAILURE_CLASSES:
            raise ValidationFailed(f"invalid class: must be one of {', '.join(FAILURE_CLASSES)}")
        if worker is not None and not AGENT_RE.fullmatch(worker):
            raise ValidationFailed("invalid worker")
        size, below = page_request(state=None, states=(), limit=limit, cursor=cursor)
        page, last = await self.runner.run(incidents.list_page(
            project=project, status=status, failure_class=failure_class, worker=worker, below_seq=below,
            limit=size))
        return page, (str(last) if last is not None else None)

    async def update(self, project: str, incident_id: str, body: Any, *, actor: str) -> Updated:
        """PATCH ``{status?, owner?}``: a bad body or status -> Unprocessable (422); unknown -> IncidentNotFound.
        ``owner`` null or "" clears it. ``actor`` is who the history names."""
        try:
            fields = object_body(body, _PATCH_FIELDS)
        except ValidationFailed as exc:
            raise Unprocessable(exc.message, detail=exc.detail) from None
        if not fields:
            raise Unprocessable("invalid request body", detail="status or owner is required")
        status = fields.get("status")
        if "status" in fields and status not in INCIDENT_STATUSES:
            raise Unprocessable(f"invalid status: must be one of {', '.join(INCIDENT_STATUSES)}")
        owner = fields.get("owner")
        if isinstance(owner, str) and owner and not owner.strip():
            raise Unprocessable("invalid owner: blank (use null or \"\" to clear it)")
        if owner is not None and (not isinstance(owner, str) or (owner and not OWNER_RE.fullmatch(owner))):
            raise Unprocessable("invalid owner: a string of at most 200 characters without control characters, "
                                "or null")
        if not is_id(incident_id):
            raise IncidentNotFound()
        updated = await self.runner.run(incidents.update(
            incident_id, project=project, status=status, owner=owner, set_owner="owner" in fields, by=actor,
            now_ms=now_ms()))
        if updated is None:
            raise IncidentNotFound()
        incident = updated.incident
        if updated.previous_status not in (None, "resolved") and incident.status == "resolved":
            await self.runner.run(alerts.emit_op(project, "incident.resolved", alerts.incident_data(incident),
                                                 failure_class=incident.failure_class))
        return updated
