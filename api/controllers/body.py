"""Reading request bodies: JSON with mecha's error for anything that is not JSON, and size-limited reads."""

from __future__ import annotations

import json
import math
from typing import Any

from litestar import Request
from litestar.di import NamedDependency

from engine.errors import InvalidBody, PayloadTooLarge, ValidationFailed
from engine.service import TaskService

__all__ = ["Service", "decode_json", "int_param", "json_body", "parse_json", "read_limited"]

Service = NamedDependency[TaskService]  # the app's TaskService, injected by name ("service")


async def json_body(request: Request) -> Any:
    """The parsed body (see :func:`decode_json`); reads the body, which can be read only once."""
    return decode_json(await _body(request))


def decode_json(raw: bytes) -> Any:
    """A JSON body. Not JSON, nested too deep, or text Redis cannot store (lone surrogates written as
    ``\\ud800`` escapes) -> 400, before anything is stored."""
    try:
        body = json.loads(raw)
        if b"\\u" in raw or b"\xed" in raw:  # only an escape or raw UTF-8 bytes can carry a lone surrogate
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidBody("text is not valid UTF-8") from None
    except RecursionError:
        raise InvalidBody("nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("invalid request body") from None
    return body


async def _body(request: Request) -> bytes:
    """The whole body, read straight from the ASGI channel within the route's size limit (Litestar's
    ``request.body()`` builds a full header map first: 5 % of a submit's CPU). Over the limit -> 413.
    The channel gives the body once: a handler that reads it another way must not call this too."""
    limit = request.route_handler.resolve_request_max_body_size() or math.inf
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise InvalidBody("bad Content-Length")
            if int(value) > limit:
                raise PayloadTooLarge()
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect: the client went away mid-body
            raise InvalidBody("the client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """The parsed body (text checks happen per event, so one bad string rejects one event, not the batch)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidBody("nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("invalid request body") from None


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def int_param(value: str | None, name: str, *, digits: int = 9) -> int | None:
    """A non-negative integer query parameter (None when absent or empty); anything else -> 400 naming it."""
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= digits):  # int() would take "١" or "1_0"
        raise ValidationFailed(f"invalid {name}: must be an integer")
    return int(value)
