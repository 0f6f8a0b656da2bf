"""The trace service: what the API asks of the engine about traces (create, ingest, read, list, follow)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from config import defaults
from config.settings import TraceSettings
from engine import keys, traces
from engine.bodies import object_body
from engine.clock import now_ms
from engine.errors import Conflict, InvalidBody, NotFound, TraceNotFound, ValidationFailed
from engine.ids import new_id
from engine.paging import page_request
from engine.pricing import PriceBook
from engine.store import AsyncRunner, Op
from engine.trace_events import Rejection, prepare_batch
from engine.trace_stream import StreamHub, live_items
from engine.traces import TRACE_STATUSES, Trace, TraceEvent

__all__ = ["AGENT_RE", "IngestResult", "TRACE_ID_RE", "TraceService"]

# No ":" in ids: a trace's own keys are ty:trace:<id>:events and :keys, so an id "x:events" would be another
# trace's stream.
TRACE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
AGENT_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,200}")  # agent names (an index key part): printable, no spaces
MAX_NAME_CHARS = 200
MAX_METADATA_BYTES = 65_536  # bytes of a trace's metadata JSON
MAX_TAGS = 50
MAX_TAG_CHARS = 100
_CREATE_FIELDS = frozenset({"id", "name", "agent", "metadata", "tags"})
BACKLOG_PAGE = 500  # events read per XRANGE while a stream catches up


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    rejected: list[Rejection]
    last_seq: int
    seqs: list[int | None]  # per event sent: the seq it is stored under (None: rejected)

    def to_public(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": [r.to_public() for r in self.rejected], "last_seq": self.last_seq}


class TraceService:
    def __init__(self, runner: AsyncRunner, settings: TraceSettings, prices: PriceBook,
                 hub: StreamHub | None = None) -> None:
        self.runner = runner
        self.settings = settings
        self.prices = prices
        self.hub = hub

    # -- create and read --------------------------------------------------------------------------------
    async def create(self, project: str, body: Any, *, source: str = "api") -> tuple[Trace, bool]:
        """Create a trace; answers (trace, created). The same id again in the same project answers the stored
        trace (a retried create is harmless); an id another project uses -> Conflict."""
        body = object_body(body, _CREATE_FIELDS)
        trace_id = body.get("id")
        if trace_id is None:
            trace_id = new_id()
        elif not isinstance(trace_id, str) or not TRACE_ID_RE.fullmatch(trace_id):
            raise ValidationFailed("invalid id: letters, digits and _.- (at most 128 characters)")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise ValidationFailed(f"name is required (a string of at most {MAX_NAME_CHARS} characters)")
        agent = body.get("agent")
        if agent is not None and (not isinstance(agent, str) or not AGENT_RE.fullmatch(agent)):
            raise ValidationFailed("invalid agent: at most 200 printable characters without spaces")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValidationFailed("invalid metadata: must be a JSON object")
        if len(json.dumps(metadata, ensure_ascii=False).encode("utf-8")) > MAX_METADATA_BYTES:
            raise ValidationFailed(f"invalid metadata: at most {MAX_METADATA_BYTES} bytes")
        tags = body.get("tags") or []
        if (not isinstance(tags, list) or len(tags) > MAX_TAGS
                or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG_CHARS for t in tags)):
            raise ValidationFailed(f"invalid tags: at most {MAX_TAGS} strings of 1 to {MAX_TAG_CHARS} characters")
        created = await self.runner.run(traces.create(
            trace_id=trace_id, project=project, now_ms=now_ms(), name=name, agent=agent or "",
            source=source, metadata=metadata, tags=tags))
        if created.status == "taken" or created.trace is None:
            raise Conflict("trace id in use")
        return created.trace, created.status == "created"

    async def get(self, project: str, trace_id: str) -> Trace:
        trace = await self.runner.run(traces.get(trace_id)) if TRACE_ID_RE.fullmatch(trace_id) else None
        if trace is None or trace.project != project:
            raise TraceNotFound()
        return trace

    async def analysis(self, project: str, trace_id: str) -> dict[str, Any]:
        """The trace's stored analysis (a live scan while it runs, the full one once it ended)."""
        await self.get(project, trace_id)
        stored = await self.runner.run(Op(lambda raw: raw, command=("GET", keys.key("trace_analysis", id=trace_id))))
        if stored is None:
            raise NotFound("analysis not found")
        return json.loads(stored)

    async def events(self, project: str, trace_id: str, *, after_seq: int, limit: int) -> list[TraceEvent]:
        await self.get(project, trace_id)
        if not 1 <= limit <= defaults.TRACE_MAX_PAGE:
            raise ValidationFailed(f"invalid limit: must be between 1 and {defaults.TRACE_MAX_PAGE}")
        return await self.runner.run(traces.read_events(trace_id, after_seq=after_seq, limit=limit))

    async def sessions(self, project: str, *, status: str | None, agent: str | None, limit: int | None,
                       cursor: str | None) -> tuple[list[Trace], str | None]:
        size, below = page_request(state=status, states=TRACE_STATUSES, limit=limit, cursor=cursor)
        if agent is not None and not AGENT_RE.fullmatch(agent):
            raise ValidationFailed("invalid agent")
        page, last = await self.runner.run(traces.list_page(project=project, status=status, agent=agent,
                                                            below_seq=below, limit=size))
        return page, (str(last) if last is not None else None)

    # -- ingest -----------------------------------------------------------------------------------------
    async def ingest(self, project: str, trace_id: str, body: Any) -> IngestResult:
        """One event (an object with ``type``), ``{"events": [...]}`` or a JSON array of events. Each event is
        validated alone: valid ones are stored even when others are rejected."""
        if isinstance(body, list):
            batch = body
        elif isinstance(body, dict) and "events" in body:
            if set(body) != {"events"} or not isinstance(body["events"], list):
                raise InvalidBody('{"events": [...]} takes nothing else')
            batch = body["events"]
        elif isinstance(body, dict):
            batch = [body]
        else:
            raise ValidationFailed("invalid request body")
        if len(batch) > self.settings.max_batch:
            raise ValidationFailed(f"too many events: at most {self.settings.max_batch} per batch")
        if not TRACE_ID_RE.fullmatch(trace_id):
            raise TraceNotFound()
        return await self.append(project, trace_id, batch)

    async def append(self, project: str, trace_id: str, batch: list[Any]) -> IngestResult:
        now = now_ms()
        ready, rejected = prepare_batch(batch, prices=self.prices, max_event_bytes=self.settings.max_event_bytes,
                                        now_ms=now)
        seqs: list[int | None] = [None] * len(batch)
        if not ready:
            trace = await self.get(project, trace_id)
            return IngestResult(0, 0, rejected, trace.last_seq, seqs)
        appended = await self.runner.run(traces.append(trace_id=trace_id, project=project, now_ms=now,
                                                       events=ready))
        if not appended.found:
            raise TraceNotFound()
        accepted = duplicates = 0
        last = 0
        for event, (outcome, seq) in zip(ready, appended.outcomes, strict=True):
            key = event.given_key
            if outcome == "ok":
                accepted += 1
                seqs[event.index] = seq
                last = max(last, seq)
            elif outcome == "dup":
                duplicates += 1
                seqs[event.index] = seq
            elif outcome == "conflict":
                rejected.append(Rejection(event.index, key, f"conflict: seq {seq} already holds another event"))
            else:
                last = max(last, seq)
                rejected.append(Rejection(event.index, key, f"seq must grow: the last stored seq is {seq}"))
        rejected.sort(key=lambda r: r.index)
        if not last:
            last = (await self.get(project, trace_id)).last_seq
        return IngestResult(accepted, duplicates, rejected, last, seqs)

    # -- follow -----------------------------------------------------------------------------------------
    async def follow(self, project: str, trace_id: str, *, after_seq: int,
                     heartbeat_s: float) -> AsyncIterator[TraceEvent | None]:
        """The trace's events after ``after_seq``, then live ones as they land, forever; ``None`` every
        ``heartbeat_s`` seconds of silence (the caller sends a keep-alive)."""
        await self.get(project, trace_id)
        if self.hub is None:
            raise RuntimeError("this TraceService has no stream hub")
        last = after_seq
        async with self.hub.subscribe(trace_id) as sub:
            while True:
                # Clear the lag mark first: whatever is dropped from now on was stored before it was dropped,
                # so either the backlog read below has it or the mark is set again and the backlog re-read.
                sub.lagged = False
                async for event in self._backlog(trace_id, last):
                    last = event.seq
                    yield event
                async for live in live_items(sub, heartbeat_s):
                    if live is None:
                        yield None
                    elif live.seq > last:
                        last = live.seq
                        yield live
                if sub.failed:
                    return  # the stream cannot be followed (see StreamHub): end the feed

    async def _backlog(self, trace_id: str, after_seq: int) -> AsyncIterator[TraceEvent]:
        while True:
            page = await self.runner.run(traces.read_events(trace_id, after_seq=after_seq, limit=BACKLOG_PAGE))
            for event in page:
                yield event
            if len(page) < BACKLOG_PAGE:
                return
            after_seq = page[-1].seq

