"""The alert webhook service: what the API asks of the engine about subscriptions (``/api/webhooks``).

Validation errors are ValidationFailed (400) naming the field. The URL passes the SSRF guard
(:mod:`engine.outbound`, run in a thread: it resolves the host) before anything is stored. A subscription's
secret is generated when the request gives none, answered once by :meth:`WebhookService.create`, and never
again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection
from typing import Any

from engine import alerts, keys, webhooks
from engine.bodies import object_body
from engine.clock import now_ms
from engine.detectors.model import FAILURE_CLASSES
from engine.errors import ValidationFailed, WebhookNotFound
from engine.ids import is_id, new_id
from engine.outbound import Resolver, check_url, resolve
from engine.store import AsyncRunner, Op
from engine.webhook_signing import new_secret
from engine.webhooks import EVENTS, MAX_LOG, MAX_WEBHOOKS, TEST_EVENT, Webhook

__all__ = ["SECRET_RE", "WebhookService"]

SECRET_RE = re.compile(r"[\x21-\x7e]{16,256}")  # a subscriber's own secret: 16 to 256 printable ASCII characters
_FIELDS = frozenset({"url", "events", "secret", "classes"})


class WebhookService:
    def __init__(self, runner: AsyncRunner, allow_hosts: Collection[str], *, resolver: Resolver = resolve) -> None:
        self.runner = runner
        self.allow_hosts = tuple(allow_hosts)
        self.resolver = resolver

    async def create(self, project: str, body: Any) -> tuple[Webhook, str]:
        """Store a subscription; answers it and its secret (the only time the secret is shown)."""
        fields = object_body(body, _FIELDS)
        url = fields.get("url")
        if not isinstance(url, str) or not url:
            raise ValidationFailed("url is required")
        events = _names(fields.get("events"), "events", EVENTS, required=True)
        classes = _names(fields.get("classes"), "classes", FAILURE_CLASSES, required=False)
        secret = fields.get("secret")
        if secret is None:
            secret = new_secret()
        elif not isinstance(secret, str) or not SECRET_RE.fullmatch(secret):
            raise ValidationFailed("invalid secret: 16 to 256 printable ASCII characters, no spaces")
        count = await self.runner.run(Op(int, command=("ZCARD", keys.key("webhooks", project=project))))
        if count >= MAX_WEBHOOKS:
            raise ValidationFailed(f"too many webhooks: at most {MAX_WEBHOOKS} per project")
        await asyncio.to_thread(check_url, url, self.allow_hosts, resolver=self.resolver)
        hook = Webhook(id=new_id(), project=project, url=url, events=events, classes=classes,
                       created_at_ms=now_ms(), secret=secret)
        await self.runner.run(webhooks.create(hook))
        return hook, secret

    async def list_webhooks(self, project: str) -> list[Webhook]:
        return await self.runner.run(webhooks.list_all(project))

    async def delete(self, project: str, webhook_id: str) -> None:
        if not is_id(webhook_id) or not await self.runner.run(webhooks.delete(webhook_id, project=project)):
            raise WebhookNotFound()

    async def test(self, project: str, webhook_id: str) -> str:
        """Queue a ``webhook.test`` delivery to this subscription; answers its delivery id."""
        hook = await self._get(project, webhook_id)
        [delivery_id] = await self.runner.run(alerts.emit_op(
            project, TEST_EVENT, {"webhook_id": hook.id, "message": "a test delivery from Taskyard"}, only=hook.id))
        return delivery_id

    async def deliveries(self, project: str, webhook_id: str, *, limit: int | None) -> list[dict[str, Any]]:
        """The subscription's delivery attempts, newest first."""
        size = MAX_LOG if limit is None else limit
        if not 1 <= size <= MAX_LOG:
            raise ValidationFailed(f"invalid limit: must be between 1 and {MAX_LOG}")
        hook = await self._get(project, webhook_id)
        return await self.runner.run(webhooks.log(hook.id, limit=size))

    async def _get(self, project: str, webhook_id: str) -> Webhook:
        hook = await self.runner.run(webhooks.get(webhook_id, project=project)) if is_id(webhook_id) else None
        if hook is None:
            raise WebhookNotFound()
        return hook


def _names(value: Any, name: str, known: Collection[str], *, required: bool) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or (required and not value) or not all(isinstance(v, str) for v in value):
        raise ValidationFailed(f"invalid {name}: a {'non-empty ' if required else ''}list of names")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ValidationFailed(f"invalid {name}: unknown {unknown[0]!r}; one of {', '.join(known)}")
    return tuple(dict.fromkeys(value))
