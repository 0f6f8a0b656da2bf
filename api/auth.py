"""API keys, projects and scopes.

An outer ASGI gate authenticates every request before routing, so unknown paths answer 401 too (not 404)
when a key is configured. Keys are held only as SHA-256 digests. Scopes are checked per route by a
``before_request`` hook (``opt={"scope": ...}``); ``admin`` holds every scope.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request
from litestar.connection import ASGIConnection

from config import defaults
from config.settings import Settings
from engine.errors import Forbidden

__all__ = ["OPEN_PATHS", "OPERATOR", "QUERY_KEY_PATHS", "UI_PREFIX", "AuthGate", "Principal", "key_id", "principal_in",
           "principal_of", "require_scope", "route_path"]

OPEN_PATHS = frozenset({"/health", "/metrics"})
UI_PREFIX = "/ui"  # the dashboard's page and static files: open, they hold no data (the page asks for the key)
# EventSource cannot send headers, so these SSE routes (and only these, only GET) also take ?api_key=<key>.
QUERY_KEY_PATHS = frozenset({"/api/activity", "/api/stream"})
_SCOPE_KEY = "taskyard.principal"
# A route's scope for changes that reach every project (registering and removing workers): an admin key of the
# default project (the single api_key is one). Not a scope a key lists: another project's admin is refused.
OPERATOR = "operator"
KEY_ID_CHARS = 16  # hex characters of a key's SHA-256 that identify it (rate-limit buckets, logs)


@dataclass(frozen=True)
class Principal:
    project: str
    scopes: frozenset[str]
    authenticated: bool = True  # False: a webhook that presented no valid key; only a signature may admit it
    key_id: str = ""  # the key's id (see key_id()) or "" when no key was presented; names its rate-limit bucket

    def allows(self, scope: str) -> bool:
        if scope == OPERATOR:  # workers serve every project: only the operator's admin keys change them
            return "admin" in self.scopes and self.project == defaults.DEFAULT_PROJECT
        return "admin" in self.scopes or scope in self.scopes


ANONYMOUS = Principal(defaults.DEFAULT_PROJECT, frozenset({"admin"}))
SIGNATURE_ONLY = Principal(defaults.DEFAULT_PROJECT, frozenset({"ingest"}), authenticated=False)
# A signed artifact URL needs no key: its handler checks the signature. Exactly this path shape, and no scope.
SIGNED_URL = Principal(defaults.DEFAULT_PROJECT, frozenset(), authenticated=False)
_SIGNED_URL_PATH = re.compile(r"/artifacts/[0-9a-f]{32}/content")
_SLASHES = re.compile(r"/{2,}")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id(key: str) -> str:
    """A key's public id: the first 16 hex characters of its SHA-256 (the key itself is never stored)."""
    return _digest(key)[:KEY_ID_CHARS]


def route_path(path: str) -> str:
    """The path as the router will see it: it collapses repeated slashes and drops a trailing one."""
    return "/" + _SLASHES.sub("/", path).strip("/")


def key_table(settings: Settings) -> dict[str, Principal]:
    """SHA-256 of each configured key -> who it is."""
    table: dict[str, Principal] = {}
    if settings.api_key:
        table[_digest(settings.api_key)] = replace(ANONYMOUS, key_id=key_id(settings.api_key))
    for spec in settings.api_keys:
        table[_digest(spec.key)] = Principal(spec.project, frozenset(spec.scopes), key_id=key_id(spec.key))
    return table


class AuthGate:
    """ASGI middleware in front of the whole app."""

    def __init__(self, app: Any, keys: dict[str, Principal]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.keys:
            if scope["type"] == "http":
                scope[_SCOPE_KEY] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        # The path as the router will see it: it collapses repeated slashes, so must this check.
        path = route_path(scope["path"])
        if path in OPEN_PATHS or path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        presented = _presented_keys(scope["headers"])
        if path in QUERY_KEY_PATHS and scope.get("method") == "GET":
            presented += _query_keys(scope.get("query_string", b""))
        principal = next((self.keys[d] for d in map(_digest, presented) if d in self.keys), None)
        if principal is None and path.startswith("/webhook/"):
            # Whether this delivery may skip the key depends on its source, known only after routing: the
            # webhook handler refuses it (401) unless the source verifies its own signature.
            principal = SIGNATURE_ONLY
        if principal is None and _SIGNED_URL_PATH.fullmatch(path):
            principal = SIGNED_URL
        if principal is None:
            await _unauthorized(send)
            return
        scope[_SCOPE_KEY] = principal
        await self.app(scope, receive, send)


def _presented_keys(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """Every key the request offers (Bearer and X-API-Key, in any order); any one valid key authenticates."""
    keys = []
    for name, value in headers:
        if name == b"authorization":
            text = _text(value)
            if text[:7].lower() == "bearer ":
                keys.append(text[7:].strip())
        elif name == b"x-api-key":
            keys.append(_text(value).strip())
    return [k for k in keys if k]


def _query_keys(query_string: bytes) -> list[str]:
    """Every non-empty ``api_key`` query parameter (for the SSE routes in QUERY_KEY_PATHS only)."""
    return [v.strip() for k, v in parse_qsl(_text(query_string)) if k == "api_key" and v.strip()]


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


async def _unauthorized(send: Any) -> None:
    body = json.dumps({"error": "unauthorized"}).encode()
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


def principal_in(scope: dict) -> Principal | None:
    """Who the gate admitted this ASGI request as; None for an open path behind configured keys."""
    return scope.get(_SCOPE_KEY)


def principal_of(connection: ASGIConnection) -> Principal:
    return connection.scope.get(_SCOPE_KEY, ANONYMOUS)  # type: ignore[return-value]


async def require_scope(request: Request) -> None:
    """Refuse with 403 when the key lacks the route's scope (``opt={"scope": "submit"}``).

    A ``before_request`` hook, not a guard: Litestar hands every guard a ``copy()`` of the route handler on every
    request (7 % of a submit's CPU), and runs a sync guard in a thread pool (a third of submit throughput)."""
    need = request.route_handler.opt.get("scope")
    if need and not principal_of(request).allows(need):
        raise Forbidden()
