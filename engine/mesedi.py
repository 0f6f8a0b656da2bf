"""Mesedi-shaped telemetry, mapped onto traces: an execution is a trace (trace id = ``execution_id``).

- ``POST /executions {execution_id, status: "started", sdk_language, sdk_version}`` creates the trace (again:
  the stored one, so an SDK's retry is harmless);
- ``PATCH /executions/{id} {status, duration_ms, total_tokens_in, total_tokens_out, crash_signature}`` appends
  ``session_end`` (idempotent per status);
- ``POST /events [{event_id, execution_id, event_type, sequence, timestamp, payload}, ...]`` appends events,
  idempotent on ``event_id``; each item is accepted or rejected on its own.

Mesedi numbers events from 0; a trace's seq starts at 1, so ``seq = sequence + 1`` (the original ``sequence`` is
kept nowhere else: subtract one). ``X-Mesedi-Schema-Version`` may be missing or ``1``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from engine.bodies import object_body
from engine.errors import InvalidBody, NotFound, TraceNotFound, ValidationFailed
from engine.trace_events import END_STATUSES
from engine.trace_service import AGENT_RE, TRACE_ID_RE, TraceService

__all__ = ["SUPPORTED_SCHEMA_VERSIONS", "MesediAdapter", "check_schema_version"]

SUPPORTED_SCHEMA_VERSIONS = ("1",)
_EXECUTION_FIELDS = {"execution_id", "status", "sdk_language", "sdk_version", "agent_id", "agent_name", "metadata"}
_FINISH_FIELDS = {"status", "duration_ms", "total_tokens_in", "total_tokens_out", "crash_signature", "error"}


class ExecutionNotFound(NotFound):
    message = "execution not found"


def check_schema_version(value: str | None) -> None:
    if value is None or value.strip() in SUPPORTED_SCHEMA_VERSIONS:
        return
    raise ValidationFailed(f"unsupported X-Mesedi-Schema-Version {value.strip()[:20]!r}: supported versions are "
                           + ", ".join(SUPPORTED_SCHEMA_VERSIONS))


def _text(body: dict[str, Any], name: str, *, limit: int = 200) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise ValidationFailed(f"invalid {name}: a string of at most {limit} characters")
    return value


class MesediAdapter:
    def __init__(self, traces: TraceService) -> None:
        self.traces = traces

    async def start(self, project: str, body: Any) -> tuple[dict[str, Any], bool]:
        body = object_body(body, _EXECUTION_FIELDS)
        execution_id = body.get("execution_id")
        if not isinstance(execution_id, str) or not TRACE_ID_RE.fullmatch(execution_id):
            raise ValidationFailed("execution_id is required (letters, digits and _.-, at most 128 characters)")
        if body.get("status", "started") != "started":
            raise ValidationFailed('invalid status: a new execution is "started"')
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValidationFailed("invalid metadata: must be a JSON object")
        sdk = {k: v for k in ("sdk_language", "sdk_version") if (v := _text(body, k)) is not None}
        agent = _text(body, "agent_id") or _text(body, "agent_name")
        label = agent if agent and AGENT_RE.fullmatch(agent) else None  # "Support Bot" names it, not indexes it
        trace, created = await self.traces.create(project, {
            "id": execution_id, "name": (agent or f"{sdk.get('sdk_language', 'mesedi')} execution").strip() or "-",
            **({"agent": label} if label else {}), "metadata": {**metadata, **sdk}}, source="mesedi")
        return {"execution_id": trace.id, "status": "started" if trace.status == "running" else trace.status,
                "created_at": trace.to_public()["created_at"], "trace_id": trace.id}, created

    async def finish(self, project: str, execution_id: str, body: Any) -> dict[str, Any]:
        body = object_body(body, _FINISH_FIELDS)
        status = body.get("status")
        if not isinstance(status, str) or status not in END_STATUSES:
            raise ValidationFailed(f"invalid status: one of {', '.join(sorted(END_STATUSES))}")
        payload = {k: body[k] for k in _FINISH_FIELDS if body.get(k) is not None}
        try:
            result = await self.traces.ingest(project, execution_id, {
                "type": "session_end", "idempotency_key": f"mesedi.end.{status}", "payload": payload})
        except TraceNotFound:
            raise ExecutionNotFound() from None
        if result.rejected:
            raise InvalidBody(f"{result.rejected[0].reason}")
        trace = (await self.traces.get(project, execution_id)).to_public()
        return {"execution_id": execution_id, "status": trace["status"], "duration_ms": trace["duration_ms"],
                "total_tokens_in": trace["tokens_in"], "total_tokens_out": trace["tokens_out"],
                "cost_usd": trace["cost_usd"], "ended_at": trace["ended_at"]}

    async def events(self, project: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, list):
            raise InvalidBody("a JSON array of events")
        limit = self.traces.settings.max_batch
        if len(body) > limit:
            raise ValidationFailed(f"too many events: at most {limit} per batch")
        rejected: list[dict[str, Any]] = []
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for index, item in enumerate(body):
            mapped, reason = _map_event(item)
            if mapped is None:
                event_id = item.get("event_id") if isinstance(item, dict) else None
                rejected.append({"index": index, "event_id": event_id if isinstance(event_id, str) else None,
                                 "reason": reason})
            else:
                groups[item["execution_id"]].append((index, mapped))
        accepted = duplicates = 0
        for execution_id, items in groups.items():
            try:
                result = await self.traces.append(project, execution_id, [event for _, event in items])
            except TraceNotFound:
                rejected += [{"index": i, "event_id": e["idempotency_key"], "reason": "unknown execution_id"}
                             for i, e in items]
                continue
            accepted += result.accepted
            duplicates += result.duplicates
            rejected += [{"index": items[r.index][0], "event_id": r.idempotency_key, "reason": r.reason}
                         for r in result.rejected]
        rejected.sort(key=lambda r: r["index"])
        return {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}


def _map_event(item: Any) -> tuple[dict[str, Any] | None, str]:
    if not isinstance(item, dict):
        return None, "event must be a JSON object"
    unknown = set(item) - {"event_id", "execution_id", "event_type", "sequence", "timestamp", "payload"}
    if unknown:
        return None, f"unknown field: {sorted(unknown)[0]}"
    event_id, execution_id = item.get("event_id"), item.get("execution_id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 200:
        return None, "event_id is required"
    if not isinstance(execution_id, str) or not TRACE_ID_RE.fullmatch(execution_id):
        return None, "execution_id is required"
    kind = item.get("event_type")
    if not isinstance(kind, str) or not kind:
        return None, "event_type is required"
    sequence = item.get("sequence")
    if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0):
        return None, "invalid sequence: must be a non-negative integer"
    mapped: dict[str, Any] = {"type": kind.lower(), "idempotency_key": event_id, "payload": item.get("payload", {})}
    if sequence is not None:
        mapped["seq"] = sequence + 1
    if item.get("timestamp") is not None:
        mapped["timestamp"] = item["timestamp"]
    return mapped, ""
