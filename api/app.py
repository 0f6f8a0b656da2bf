"""The Litestar app factory: routes, error mapping, auth, and a lifespan that owns the Redis client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from api.auth import AuthGate, key_table, require_scope
from api.controllers import EventController, HealthController, TaskController, WorkerController
from api.controllers.activity import ActivityController
from api.controllers.artifacts import ArtifactController
from api.controllers.fixes import FixController
from api.controllers.incidents import IncidentController
from api.controllers.mesedi import MesediController
from api.controllers.telemetry import TelemetryController
from api.controllers.traces import TraceController
from api.controllers.ui import UIController
from api.controllers.webhooks import WebhookController
from api.errors import EXCEPTION_HANDLERS
from api.ratelimit import RateLimitGate, policy_of
from config import defaults
from config.settings import Settings
from engine.activity import ActivityService, parse_entries
from engine.analysis import Analyzer
from engine.artifact_service import ArtifactService
from engine.artifacts import LocalDiskStore
from engine.connect import async_client, sync_client
from engine.event_service import EventService
from engine.incident_service import IncidentService
from engine.loop_options import LoopOptions
from engine.loop_service import LoopService
from engine.mesedi import MesediAdapter
from engine.playbooks import load_playbooks
from engine.pricing import PriceBook
from engine.rules import RuleBook
from engine.service import ServiceOptions, TaskService
from engine.store import AsyncRunner, ThreadLocalRunner
from engine.telemetry import TelemetryService
from engine.trace_service import TraceService
from engine.trace_stream import StreamHub
from engine.webhook_service import WebhookService

__all__ = ["create_app"]


def create_app(settings: Settings, *, redis_url: str, rules: RuleBook | None = None) -> Any:
    """The ASGI app: Litestar behind the auth gate. ``redis_url`` is resolved by the caller (embedded or not);
    ``rules`` is the rule book built from the same settings (built here when not given)."""
    state: dict[str, Any] = {}
    rulebook = rules if rules is not None else RuleBook.build(settings)
    prices = PriceBook.build(settings.pricing)
    playbooks = load_playbooks()  # read once: served with every incident

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        client = async_client(redis_url)
        runner = state["runner"] = AsyncRunner(client)
        state["service"] = TaskService(runner, ServiceOptions(
            default_bound=settings.max_queue_depth, offline_after_ms=int(settings.offline_after_s * 1000),
            max_lost=settings.max_lost_deliveries))
        state["events"] = EventService(runner, settings.sources, rulebook)
        artifact_store = LocalDiskStore(settings.data_dir / "artifacts")
        await asyncio.to_thread(artifact_store.remove_stale_temp)
        state["artifacts"] = ArtifactService(runner, artifact_store, settings.artifacts)
        hub = StreamHub(async_client(redis_url))
        state["traces"] = TraceService(runner, settings.traces, prices, hub)
        state["mesedi"] = MesediAdapter(state["traces"])
        state["incidents"] = IncidentService(runner, playbooks)
        state["webhooks"] = WebhookService(runner, settings.outbound.allow_hosts)
        state["loop"] = LoopService(runner, LoopOptions.from_settings(settings, playbooks))
        activity_hub = StreamHub(async_client(redis_url), parse=parse_entries)
        state["activity"] = ActivityService(runner, activity_hub)
        analysis_runner = ThreadLocalRunner(lambda: sync_client(redis_url, single_connection=True))
        state["analyzer"] = Analyzer(analysis_runner, settings.detectors)
        state["telemetry"] = TelemetryService(runner, prices, health=settings.agent_health)
        try:
            yield
        finally:
            await hub.close()
            await activity_hub.close()
            analysis_runner.close()
            await runner.aclose()
            await client.aclose()

    def provide_service() -> TaskService:
        return state["service"]

    def provide_events() -> EventService:
        return state["events"]

    def provide_artifacts() -> ArtifactService:
        return state["artifacts"]

    def provide_traces() -> TraceService:
        return state["traces"]

    def provide_mesedi() -> MesediAdapter:
        return state["mesedi"]

    def provide_analyzer() -> Analyzer:
        return state["analyzer"]

    def provide_incidents() -> IncidentService:
        return state["incidents"]

    def provide_telemetry() -> TelemetryService:
        return state["telemetry"]

    def provide_webhooks() -> WebhookService:
        return state["webhooks"]

    def provide_loop() -> LoopService:
        return state["loop"]

    def provide_activity() -> ActivityService:
        return state["activity"]

    app = Litestar(
        route_handlers=[HealthController, TaskController, WorkerController, EventController, TraceController,
                        MesediController,
                        ArtifactController, TelemetryController, IncidentController, WebhookController, FixController,
                        ActivityController, UIController],
        dependencies={"service": Provide(provide_service, sync_to_thread=False),
                      "events": Provide(provide_events, sync_to_thread=False),
                      "artifacts": Provide(provide_artifacts, sync_to_thread=False),
                      "traces": Provide(provide_traces, sync_to_thread=False),
                      "mesedi": Provide(provide_mesedi, sync_to_thread=False),
                      "analyzer": Provide(provide_analyzer, sync_to_thread=False),
                      "incidents": Provide(provide_incidents, sync_to_thread=False),
                      "telemetry": Provide(provide_telemetry, sync_to_thread=False),
                      "webhooks": Provide(provide_webhooks, sync_to_thread=False),
                      "loop": Provide(provide_loop, sync_to_thread=False),
                      "activity": Provide(provide_activity, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        before_request=require_scope,
        lifespan=[lifespan],
        request_max_body_size=defaults.MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(title="Taskyard", version="0.1.0", path="/schema"),
        logging_config=None,
    )
    policy = policy_of(settings)
    inner: Any = RateLimitGate(app, policy, lambda: state.get("runner")) if policy.enabled else app
    return AuthGate(inner, key_table(settings))
