"""Rate limiting at the edge: an ASGI gate between the auth gate and the app.

Each limited request costs one Lua call (``engine.ratelimit.check``) before routing. Every response to it,
errors included, carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds
until the bucket is full again); over the limit the answer is 429 ``{"error": "rate limit exceeded"}`` with
``Retry-After`` (seconds, at least 1), and the app never sees the request. Open paths (``/health``,
``/metrics``) are never limited. When Redis cannot answer, the request goes through unlimited (fail-open) and a
warning is logged: rate limiting must not turn a Redis blip into an outage of its own, and every endpoint that
needs Redis answers 503 by itself meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from api.auth import OPEN_PATHS, key_id, principal_in, route_path
from api.errors import send_error
from config.settings import Settings
from engine.errors import RateLimited, StoreUnavailable
from engine.ratelimit import RateLimitPolicy, Verdict, check
from engine.store import AsyncRunner

__all__ = ["RateLimitGate", "policy_of"]

logger = logging.getLogger("taskyard.api")

_WEBHOOK_PREFIX = "/webhook/"


def policy_of(settings: Settings) -> RateLimitPolicy:
    """The rate-limit policy a config asks for; empty (nothing limited) unless it sets a ``rate_limit``."""
    return RateLimitPolicy(
        default=settings.rate_limit,
        keys={key_id(spec.key): spec.rate_limit for spec in settings.api_keys if spec.rate_limit is not None},
        projects=dict(settings.project_rate_limits),
        sources={name: spec.rate_limit for name, spec in settings.sources.items() if spec.rate_limit is not None},
        signed_sources=frozenset(name for name, spec in settings.sources.items() if spec.verifies_signature),
    )


class RateLimitGate:
    """ASGI middleware inside the auth gate (it needs the principal the gate found).

    ``runner`` gives the app's store runner, which exists only once the app's lifespan has started.
    """

    def __init__(self, app: Any, policy: RateLimitPolicy, runner: Callable[[], AsyncRunner | None]) -> None:
        self.app = app
        self.policy = policy
        self.runner = runner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        verdict = await self._verdict(scope) if scope["type"] == "http" else None
        if verdict is None:
            await self.app(scope, receive, send)
            return
        headers = _headers(verdict)
        if not verdict.allowed:
            await send_error(send, RateLimited(verdict.retry_after_s), headers)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _verdict(self, scope: dict) -> Verdict | None:
        """The verdict on this request, or None when no bucket applies (or Redis cannot say)."""
        principal, runner = principal_in(scope), self.runner()
        path = route_path(scope["path"])
        if principal is None or runner is None or path in OPEN_PATHS:
            return None
        source = path[len(_WEBHOOK_PREFIX):].split("/", 1)[0] if path.startswith(_WEBHOOK_PREFIX) else None
        buckets = self.policy.buckets(key_id=principal.key_id, project=principal.project, source=source,
                                      authenticated=principal.authenticated)
        if not buckets:
            return None
        try:
            return await runner.run(check(buckets))
        except StoreUnavailable as exc:
            logger.warning("rate limit not checked: store unavailable",
                           extra={"path": path, "reason": exc.message})
            return None


def _headers(verdict: Verdict) -> list[tuple[bytes, bytes]]:
    return [(b"x-ratelimit-limit", str(verdict.limit).encode()),
            (b"x-ratelimit-remaining", str(verdict.remaining).encode()),
            (b"x-ratelimit-reset", str(verdict.reset_s).encode())]
