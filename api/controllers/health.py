"""GET /health and GET /metrics: open without a key."""

from __future__ import annotations

from litestar import Controller, Response, get

from api.controllers.body import Service
from api.metrics import render_metrics
from engine.errors import StoreUnavailable

__all__ = ["HealthController"]


class HealthController(Controller):
    tags = ["health"]

    @get("/health", summary="Service health")
    async def health(self, service: Service) -> Response[dict[str, object]]:
        try:
            body = await service.health()
        except StoreUnavailable:
            return Response({"status": "degraded", "redis": "unreachable", "error": "store unavailable"},
                            status_code=503)
        return Response(body, status_code=200 if body["status"] == "ok" else 503)

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self, service: Service) -> Response[bytes]:
        return Response(render_metrics(await service.metrics()), media_type="text/plain; version=0.0.4")
