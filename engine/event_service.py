"""The event service: what the API asks of the engine about webhooks (receive, read, list, dry-run, audit).

Receiving is one Lua call: the delivery dedupe, the event record, its indexes and the ``process_event`` job
are written together, so the webhook is answered 202 without waiting for matching or dispatch (GitHub gives a
delivery 10 s), and nothing is lost if this process dies right after answering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from config.settings import SourceSpec
from engine import audit, events, keys
from engine.clock import now_ms
from engine.errors import (
    Conflict,
    EventNotFound,
    InvalidBody,
    TemplateFailed,
    UnknownSource,
    ValidationFailed,
    WebhookInvalid,
)
from engine.event_context import LAZY_ATTRIBUTES, base_context
from engine.events import EVENT_STATES, Event
from engine.ids import is_id, new_id
from engine.paging import page_request
from engine.rules import EventView, RuleBook
from engine.sources import InboundEvent, parse_delivery
from engine.store import AsyncRunner, Op

__all__ = ["EventService", "LogPage", "Receipt"]

MAX_LOG_PAGE = 1000  # audit entries per answer at most
REPLAY_TRIES = 5  # replay numbers tried when a delivery with the same id took one first
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a JSON escape of a UTF-16 surrogate


@dataclass(frozen=True)
class Receipt:
    """The answer to a delivery: ``status`` is received (202), duplicate (200) or ping (200)."""

    status: str
    event_id: str | None = None
    event: Event | None = None

    def to_public(self) -> dict[str, Any]:
        if self.status == "duplicate":
            return {"status": "duplicate", "event_id": self.event_id}
        if self.status == "ping":
            return {"status": "pong"}
        assert self.event is not None
        public = self.event.to_public()
        return {k: public[k] for k in ("id", "source", "type", "state", "actor", "subject", "attrs", "created_at")}



@dataclass(frozen=True)
class LogPage:
    """A page of audit entries (public shape), and whether the scan behind it read all it needed to."""

    entries: list[dict[str, Any]]
    complete: bool

class EventService:
    def __init__(self, runner: AsyncRunner, sources: Mapping[str, SourceSpec], rules: RuleBook) -> None:
        self.runner = runner
        self.sources = dict(sources)
        self.rules = rules

    def source(self, name: str) -> SourceSpec:
        spec = self.sources.get(name)
        if spec is None:
            raise UnknownSource(name)
        return spec

    async def receive(self, name: str, headers: Mapping[str, str], body: bytes, *, project: str) -> Receipt:
        """Verify, store and queue a delivery. Raises UnknownSource, WebhookInvalid."""
        inbound = parse_delivery(name, self.source(name), headers, body)
        if inbound.ping:
            return Receipt("ping")
        if _SURROGATE_ESCAPE.search(body):  # rare: only then pay for the full check
            try:
                json.dumps(inbound.payload, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise WebhookInvalid("body holds a lone surrogate escape (not valid Unicode)") from None
        event_id, now = new_id(), now_ms()
        received = await self.runner.run(events.receive(
            event_id=event_id, project=project, source=name, delivery_id=inbound.delivery_id, now_ms=now,
            type=inbound.type, actor=inbound.actor, subject=inbound.subject, attrs=inbound.attrs,
            raw_payload=body.decode("utf-8")))  # verified UTF-8 JSON: kept byte for byte, not re-encoded
        if not received.created:
            return Receipt("duplicate", event_id=received.event_id)
        return Receipt("received", event_id=event_id, event=Event(
            id=event_id, project=project, source=name, type=inbound.type, state="received", seq=0,
            created_at_ms=now, updated_at_ms=now, actor=inbound.actor, subject=inbound.subject,
            attrs=inbound.attrs, delivery_id=inbound.delivery_id))

    async def replay(self, project: str, event_id: str) -> dict[str, Any]:
        """Run a stored event's matching again, as a new event through the receive path: the same source, type
        (what the delivery's headers said), attributes and raw payload, a new id, the delivery id
        ``replay:<original id>:<n>`` (so it is not deduplicated away) and ``replay_of``. The normal
        ``process_event`` job then matches and dispatches it. Answers the new event as :meth:`get` does."""
        record = await self.runner.run(events.stored_record(event_id)) if is_id(event_id) else None
        if record is None or record.get("project") != project:
            raise EventNotFound()
        for _ in range(REPLAY_TRIES):
            n = await self.runner.run(events.count_replay(event_id))
            if n is None:
                raise EventNotFound()  # deleted by retention since it was read
            replay_id = new_id()
            received = await self.runner.run(events.receive(
                event_id=replay_id, project=project, source=record.get("source", ""),
                delivery_id=f"replay:{event_id}:{n}", now_ms=now_ms(), type=record.get("type", ""),
                actor=record.get("actor") or None, subject=record.get("subject") or None,
                attrs=json.loads(record["attrs"]) if record.get("attrs") else {},
                raw_payload=record.get("payload", ""), extra={"replay_of": event_id}))
            if received.created:
                return await self.get(project, replay_id)
            # a delivery sent with this very id took it first: take the next number
        raise Conflict(f"could not replay event {event_id}: its replay delivery ids are taken")

    async def get(self, project: str, event_id: str) -> dict[str, Any]:
        """The event with its payload, matches, linked tasks (with their current states) and history."""
        event = await self.runner.run(events.get(event_id)) if is_id(event_id) else None
        if event is None or event.project != project:
            raise EventNotFound()
        public = event.to_public(detail=True)
        linked = []
        for match in event.matches:
            if match.get("task_id"):
                state = await self.runner.run(Op(lambda raw: raw, command=(
                    "HMGET", keys.key("task", id=match["task_id"]), "state", "worker_name")))
                linked.append({"id": match["task_id"], "rule": match.get("rule"), "state": state[0],
                               "worker_name": state[1]})
        public["tasks"] = linked
        return public

    async def list_events(self, project: str, *, state: str | None, source: str | None, limit: int | None,
                   cursor: str | None) -> tuple[list[Event], str | None]:
        size, below = page_request(state=state, states=EVENT_STATES, limit=limit, cursor=cursor)
        page, last = await self.runner.run(events.list_page(project=project, state=state, source=source,
                                                            below_seq=below, limit=size))
        return page, (str(last) if last is not None else None)

    def test_rules(self, body: Any) -> dict[str, Any]:
        """Dry run: which rules match a delivery and why the others do not, with the rendered prompts. No
        signature check (the caller holds an API key), nothing stored, nothing dispatched."""
        if not isinstance(body, dict) or not isinstance(body.get("source"), str):
            raise InvalidBody("source is required")
        unknown = set(body) - {"source", "type", "headers", "payload"}
        if unknown:
            raise InvalidBody(f"unknown field {sorted(unknown)[0]!r}")
        name = body["source"]
        spec = self.source(name).model_copy(update={"secret": None})
        headers = body.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise InvalidBody("headers must map names to strings")
        headers = {str(k).lower(): v for k, v in headers.items()}
        kind = body.get("type")
        if kind is not None and not isinstance(kind, str):
            raise InvalidBody("type must be a string")
        if kind and spec.kind == "github":
            headers.setdefault("x-github-event", kind.split(".")[0])
        elif kind and spec.event_header:
            headers.setdefault(spec.event_header.lower(), kind)
        if "payload" not in body:
            raise InvalidBody("payload is required")
        try:
            inbound: InboundEvent = parse_delivery(name, spec, headers,
                                                   json.dumps(body["payload"]).encode("utf-8"))
        except WebhookInvalid as exc:  # the caller is authenticated: tell them what is wrong with the delivery
            raise InvalidBody(f"{exc.reason}") from None
        event_type = kind or inbound.type
        view = EventView(source=name, type=event_type, attrs=inbound.attrs, payload=inbound.payload)
        context = base_context(payload=inbound.payload, source=name, event_type=event_type, actor=inbound.actor,
                               subject=inbound.subject, attrs=inbound.attrs)
        context.update({lazy: f"<{lazy}: fetched from GitHub at dispatch>" for lazy in LAZY_ATTRIBUTES})
        results = []
        for verdict in self.rules.evaluate(view):
            entry = verdict.to_public()
            if verdict.matched:
                try:
                    entry["prompt"] = verdict.rule.prompt.render(context)
                except TemplateFailed as exc:
                    entry["prompt_error"] = str(exc)
            results.append(entry)
        return {"source": name, "type": event_type, "actor": inbound.actor, "subject": inbound.subject,
                "attrs": inbound.attrs, "matched": [r["rule"] for r in results if r["matched"]],
                "rules": results}

    async def logs(self, project: str, *, event: str | None, task: str | None, action: str | None, since_ms: int | None,
                   limit: int) -> LogPage:
        """The project's entries that match, newest first. ``complete`` is False when the scan stopped at
        ``audit.MAX_SCANNED`` entries before it could be sure the answer holds every match it should."""
        if not 1 <= limit <= MAX_LOG_PAGE:
            raise ValidationFailed(f"invalid limit: must be between 1 and {MAX_LOG_PAGE}")

        def wanted(entry: audit.Entry) -> bool:
            return audit.matches(entry, project=project, event=event, task=task, action=action)

        anchor = ("event", event) if event else ("task", task) if task else None
        if anchor is None:  # newest first, until the page is full
            found, complete = await self._scan(
                lambda before: audit.page(before=before, since_ms=since_ms, count=audit.SCAN_BATCH), wanted,
                enough=lambda found: len(found) >= limit)
            return LogPage([e.to_public() for e in found[:limit]], complete=complete)
        if not is_id(anchor[1]):
            return LogPage([], complete=True)  # no record has that id
        # One record's entries: read from its creation on (oldest first), not back from the newest, so an old
        # event's trail is found however many entries came after it.
        owner, created_ms = await self.runner.run(audit.origin(anchor[0], anchor[1]))
        if owner != project or created_ms is None:
            return LogPage([], complete=True)  # no such record in this project: no entries
        low = max(since_ms or 0, created_ms - audit.CLOCK_MARGIN_MS)
        found, complete = await self._scan(
            lambda after: audit.page_forward(after=after, since_ms=low, count=audit.SCAN_BATCH), wanted,
            enough=lambda found: False)
        return LogPage([e.to_public() for e in reversed(found[-limit:])], complete=complete)

    async def _scan(self, batch_after: Callable[[str | None], Op[list[audit.Entry]]],
                    wanted: Callable[[audit.Entry], bool],
                    enough: Callable[[list[audit.Entry]], bool]) -> tuple[list[audit.Entry], bool]:
        """The wanted entries of batches read one after another (``batch_after`` the last id read) until
        ``enough`` of them, or the stream's end; False with them when it stopped at ``audit.MAX_SCANNED``."""
        found: list[audit.Entry] = []
        cursor: str | None = None
        scanned = 0
        while not enough(found):
            if scanned >= audit.MAX_SCANNED:
                return found, False
            batch = await self.runner.run(batch_after(cursor))
            scanned += len(batch)
            found += [e for e in batch if wanted(e)]
            if len(batch) < audit.SCAN_BATCH:
                break
            cursor = batch[-1].id
        return found, True
