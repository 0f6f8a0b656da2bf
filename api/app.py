"""The Litestar app factory: routes, error mapping, auth, and a lifespan that owns the Redis client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from api.auth import AuthGate, key_table, scope_guard
from api.controllers import EventController, HealthController, TaskController, WorkerController
from api.errors import EXCEPTION_HANDLERS
from config import defaults
from config.settings import Settings
from engine.connect import async_client
from engine.event_service import EventService
from engine.rules import RuleBook
from engine.service import ServiceOptions, TaskService
from engine.store import AsyncRunner

__all__ = ["create_app"]



def create_app(settings: Settings, *, redis_url: str, rules: RuleBook | None = None) -> Any:
    """The ASGI app: Litestar behind the auth gate. ``redis_url`` is resolved by the caller (embedded or not);
    ``rules`` is the rule book built from the same settings (built here when not given)."""
    state: dict[str, Any] = {}
    rulebook = rules if rules is not None else RuleBook.build(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        client = async_client(redis_url)
        runner = AsyncRunner(client)
        state["service"] = TaskService(runner, ServiceOptions(
            default_bound=settings.max_queue_depth, offline_after_ms=int(settings.offline_after_s * 1000),
            max_lost=settings.max_lost_deliveries))
        state["events"] = EventService(runner, settings.sources, rulebook)
        try:
            yield
        finally:
            await client.aclose()

    def provide_service() -> TaskService:
        return state["service"]

    def provide_events() -> EventService:
        return state["events"]

    app = Litestar(
        route_handlers=[HealthController, TaskController, WorkerController, EventController],
        dependencies={"service": Provide(provide_service, sync_to_thread=False),
                      "events": Provide(provide_events, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        guards=[scope_guard],
        lifespan=[lifespan],
        request_max_body_size=defaults.MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(title="Taskyard", version="0.1.0", path="/schema"),
        logging_config=None,
    )
    return AuthGate(app, key_table(settings))
