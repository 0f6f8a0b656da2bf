"""Outbound alert webhooks: subscribe, list, remove, send a test, read the delivery log."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.auth import principal_of
from api.controllers.body import int_param, json_body
from engine.webhook_service import WebhookService

__all__ = ["WebhookController"]

Webhooks = NamedDependency[WebhookService]  # the app's WebhookService, injected by name ("webhooks")


class WebhookController(Controller):
    tags = ["webhooks"]

    @post("/api/webhooks", status_code=201, opt={"scope": "admin"},
          summary="Subscribe a URL to alert events; the answer shows the signing secret once")
    async def create(self, request: Request, webhooks: Webhooks) -> Response[dict[str, Any]]:
        hook, secret = await webhooks.create(principal_of(request).project, await json_body(request))
        return Response({**hook.to_public(), "secret": secret}, status_code=201)

    @get("/api/webhooks", opt={"scope": "read"}, summary="List the project's webhook subscriptions, newest first")
    async def list_webhooks(self, request: Request, webhooks: Webhooks) -> list[dict[str, Any]]:
        return [h.to_public() for h in await webhooks.list_webhooks(principal_of(request).project)]

    @delete("/api/webhooks/{webhook_id:str}", status_code=200, opt={"scope": "admin"},
            summary="Remove a webhook subscription and its delivery log")
    async def remove(self, request: Request, webhooks: Webhooks, webhook_id: FromPath[str]) -> dict[str, Any]:
        await webhooks.delete(principal_of(request).project, webhook_id)
        return {"removed": webhook_id}

    @post("/api/webhooks/{webhook_id:str}/test", status_code=202, opt={"scope": "admin"},
          summary="Queue a webhook.test delivery to this subscription")
    async def test(self, request: Request, webhooks: Webhooks, webhook_id: FromPath[str]) -> dict[str, Any]:
        delivery_id = await webhooks.test(principal_of(request).project, webhook_id)
        return {"delivery_id": delivery_id, "status": "pending"}

    @get("/api/webhooks/{webhook_id:str}/deliveries", opt={"scope": "read"},
         summary="The subscription's delivery attempts, newest first")
    async def deliveries(self, request: Request, webhooks: Webhooks,
                         webhook_id: FromPath[str]) -> list[dict[str, Any]]:
        limit = int_param(request.query_params.get("limit"), "limit")
        return await webhooks.deliveries(principal_of(request).project, webhook_id, limit=limit)
