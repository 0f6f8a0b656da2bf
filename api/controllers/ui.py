"""The dashboard (``/ui``): static files shipped as package data (``api/ui/static``), no build step.

The page and its assets hold no data, so they are open without a key (``api/auth.py``); the page asks for the key
and sends it with every API call. Every response carries a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline script or style, no third party.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from litestar import Controller, Request, get
from litestar.params import FromPath
from litestar.response import Response

from engine.errors import NotFound

__all__ = ["CSP", "UIController"]

CSP = "default-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'"
_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
          ".png": "image/png"}  # Litestar adds "; charset=utf-8" to the text types
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}  # no-cache: revalidated with the ETag


@dataclass(frozen=True)
class _File:
    body: bytes
    media_type: str
    etag: str


def _walk(folder: Traversable, prefix: str = "") -> dict[str, _File]:
    files: dict[str, _File] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            files.update(_walk(entry, name + "/"))
            continue
        suffix = "." + entry.name.rpartition(".")[2]
        if suffix in _TYPES:
            body = entry.read_bytes()
            files[name] = _File(body, _TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return files


@cache
def _static() -> dict[str, _File]:
    """Every servable file by its path under ``static/`` (read once): the only names the routes answer."""
    return _walk(resources.files("api") / "ui" / "static")


def _serve(request: Request, name: str) -> Response[bytes]:
    file = _static().get(name)
    if file is None:
        raise NotFound()
    headers = {**_HEADERS, "ETag": file.etag}
    if request.headers.get("if-none-match") == file.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


class UIController(Controller):
    path = "/ui"
    include_in_schema = False

    @get("/", summary="The dashboard")
    async def index(self, request: Request) -> Response[bytes]:
        return _serve(request, "index.html")

    @get("/static/{name:path}", summary="The dashboard's scripts and styles")
    async def asset(self, request: Request, name: FromPath[str]) -> Response[bytes]:
        return _serve(request, name.lstrip("/"))
