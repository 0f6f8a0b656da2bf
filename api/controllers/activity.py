"""The live activity feed (SSE) and the per-minute task counters behind the dashboard's charts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.auth import principal_of
from api.controllers.body import int_param
from config import defaults
from engine.activity import ActivityService, check_after
from engine.clock import now_ms
from engine.models import iso_ms

__all__ = ["ActivityController"]

Feed = NamedDependency[ActivityService]  # the app's ActivityService, injected by name ("activity")


class ActivityController(Controller):
    tags = ["activity"]

    @get("/api/activity", opt={"scope": "read"},
         summary="What changes, live (SSE): tasks, events, incidents, fix and regression runs; resumes from "
                 "Last-Event-ID")
    async def feed(self, request: Request, activity: Feed) -> ServerSentEvent:
        project = principal_of(request).project
        after = check_after(request.headers.get("last-event-id") or request.query_params.get("after") or None)
        if after is None:  # "from now on" means from this request, not from when the body starts streaming
            after = await activity.latest(project)
        entries = activity.follow(project, after=after, heartbeat_s=defaults.SSE_HEARTBEAT_S)

        async def messages() -> AsyncIterator[ServerSentEventMessage]:
            # A comment first: the server sends the headers with the first bytes, and only then does a browser's
            # EventSource report the feed open (the dashboard refreshes on open: nothing between load and feed is lost).
            yield ServerSentEventMessage(comment="connected", data=None)
            async for entry in entries:
                if entry is None:
                    yield ServerSentEventMessage(event="tick", data=json.dumps({"at": iso_ms(now_ms())}))
                else:
                    yield ServerSentEventMessage(id=entry.id, event=entry.kind, data=json.dumps(
                        entry.to_public(), ensure_ascii=False, separators=(",", ":")))

        return ServerSentEvent(messages(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @get("/api/stats/tasks", opt={"scope": "read"},
         summary="Tasks created, completed and failed per minute over the last `minutes` (default 60, at most 120)")
    async def task_stats(self, request: Request, activity: Feed) -> list[dict[str, Any]]:
        minutes = int_param(request.query_params.get("minutes"), "minutes")
        return await activity.stats(principal_of(request).project, minutes=minutes, now_ms=now_ms())
