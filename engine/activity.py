"""The project activity feed: what changed, live (``GET /api/activity``, the dashboard's and the CLI's feed).

Lua appends one entry to ``ty:p:<project>:activity`` (a capped stream) in the same step as every task state
change, webhook event state change, incident occurrence or triage, and fix or regression run status change
(``activity`` in ``_common.lua``), so the feed never shows a change that was not stored, nor misses one. Task
creations and outcomes also count into per-minute counters, kept two hours, for the dashboard's charts.

Entry ids are Redis stream ids (``<ms>-<n>``): a client resumes with ``Last-Event-ID`` on any replica. The feed
holds the last ~10,000 entries: a client away longer than that resumes from the oldest one kept.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from engine import keys
from engine.errors import ValidationFailed
from engine.models import iso_ms
from engine.store import AsyncRunner, Op
from engine.trace_stream import StreamHub, live_items

__all__ = ["KINDS", "Activity", "ActivityService", "check_after", "parse_entries", "read_after", "task_stats"]

KINDS = ("task", "event", "incident", "fix_run", "regression_run")
_EXTRA = {"task": "worker", "event": "source", "incident": "failure_class", "fix_run": "incident_id",
          "regression_run": "incident_id"}  # what an entry's extra field names, by kind
ID_RE = re.compile(r"[0-9]{1,15}-[0-9]{1,15}")
BACKLOG_PAGE = 1000  # entries per backlog read
MAX_MINUTES = 120  # minutes of per-minute task counters kept (two hours)
MINUTE_MS = 60_000  # milliseconds


@dataclass(frozen=True)
class Activity:
    id: str  # the stream entry id, "<ms>-<n>"
    kind: str
    subject: str  # the task, event, incident or run id
    state: str
    extra: str  # the worker, source, failure class or incident id (see _EXTRA)

    @property
    def order(self) -> tuple[int, int]:
        ms, _, n = self.id.partition("-")
        return int(ms), int(n)

    def to_public(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "subject": self.subject, "state": self.state,
                _EXTRA.get(self.kind, "extra"): self.extra, "at": iso_ms(self.order[0])}


def order_of(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n)


def parse_entries(entries: list[Any]) -> list[Activity]:
    out = []
    for entry_id, fields in entries:
        f = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True))
        out.append(Activity(id=entry_id, kind=f.get("k", ""), subject=f.get("i", ""), state=f.get("s", ""),
                            extra=f.get("x", "")))
    return out


def read_after(project: str, after: str, *, count: int) -> Op[list[Activity]]:
    """Entries after ``after`` (an entry id; "0-0" for the oldest kept), oldest first."""
    return Op(parse_entries, command=("XRANGE", keys.key("activity", project=project), f"({after}", "+",
                                      "COUNT", count))


def latest_id(project: str) -> Op[str]:
    """The newest entry's id ("0-0" when the feed is empty)."""
    return Op(lambda raw: raw[0][0] if raw else "0-0",
              command=("XREVRANGE", keys.key("activity", project=project), "+", "-", "COUNT", 1))


def task_stats(project: str, *, now_ms: int, minutes: int) -> Op[list[dict[str, Any]]]:
    """Per minute over the last ``minutes`` (this one included), oldest first: tasks created, completed, failed."""
    last = now_ms // MINUTE_MS
    first = last - minutes + 1
    hours = list(range(first // 60, last // 60 + 1))

    def parse(raw: list[Any]) -> list[dict[str, Any]]:
        counts: dict[str, int] = {}
        for h in raw:
            pairs = h.items() if isinstance(h, dict) else zip(h[::2], h[1::2], strict=True)
            counts.update({k: int(v) for k, v in pairs})
        return [{"minute": iso_ms(m * MINUTE_MS), **{what: counts.get(f"{m}:{what}", 0)
                                                    for what in ("created", "completed", "failed")}}
                for m in range(first, last + 1)]

    return Op(parse, commands=tuple(("HGETALL", keys.key("task_minutes", project=project, hour=str(h)))
                                    for h in hours))


def check_after(after: str | None) -> str | None:
    """A resume point from a request (``after`` or ``Last-Event-ID``): an entry id, or ValidationFailed."""
    if after is not None and not ID_RE.fullmatch(after):
        raise ValidationFailed("invalid after: an activity entry id such as 1732360000000-0")
    return after


class ActivityService:
    def __init__(self, runner: AsyncRunner, hub: StreamHub) -> None:
        self.runner = runner
        self.hub = hub

    async def stats(self, project: str, *, minutes: int | None, now_ms: int) -> list[dict[str, Any]]:
        size = 60 if minutes is None else minutes
        if not 1 <= size <= MAX_MINUTES:
            raise ValidationFailed(f"invalid minutes: must be between 1 and {MAX_MINUTES}")
        return await self.runner.run(task_stats(project, now_ms=now_ms, minutes=size))

    async def latest(self, project: str) -> str:
        """The newest entry's id: where a client that gives no resume point starts."""
        return await self.runner.run(latest_id(project))

    async def follow(self, project: str, *, after: str | None, heartbeat_s: float) -> AsyncIterator[Activity | None]:
        """Entries after ``after`` (None: from now on), then live ones as they land, forever; ``None`` every
        ``heartbeat_s`` seconds of silence."""
        after = check_after(after)
        async with self.hub.watch(keys.key("activity", project=project), project) as sub:
            last = after if after is not None else await self.runner.run(latest_id(project))
            while True:
                sub.lagged = False  # cleared first: see TraceService.follow
                while True:
                    page = await self.runner.run(read_after(project, last, count=BACKLOG_PAGE))
                    for entry in page:
                        last = entry.id
                        yield entry
                    if len(page) < BACKLOG_PAGE:
                        break
                async for live in live_items(sub, heartbeat_s):
                    if live is None:
                        yield None
                    elif live.order > order_of(last):
                        last = live.id
                        yield live
                if sub.failed:
                    return
