"""GET /health (and HEAD, for load-balancer probes) and GET /metrics: open without a key."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, head

from api.controllers.body import Service
from api.metrics import render_metrics
from engine.errors import StoreUnavailable
from engine.service import TaskService

__all__ = ["HealthController"]


async def _health(service: TaskService) -> tuple[dict[str, Any], int]:
    try:
        body = await service.health()
    except StoreUnavailable:
        return {"status": "degraded", "queue_depth": None, "queue_cap": None, "redis": "unreachable",
                "error": "store unavailable"}, 503
    return body, 200 if body["status"] == "ok" else 503


class HealthController(Controller):
    tags = ["health"]

    @get("/health", summary="Service health")
    async def health(self, service: Service) -> Response[dict[str, Any]]:
        body, status = await _health(service)
        return Response(body, status_code=status)

    @head("/health", summary="Service health, status only")
    async def health_head(self, service: Service) -> Response[None]:
        _, status = await _health(service)
        return Response(None, status_code=status)

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self, service: Service) -> Response[bytes]:
        return Response(render_metrics(await service.metrics()), media_type="text/plain; version=0.0.4")
