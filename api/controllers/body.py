"""Reading request bodies: JSON with mecha's error for anything that is not JSON, and size-limited reads."""

from __future__ import annotations

import json
from typing import Any

from litestar import Request
from litestar.di import NamedDependency

from engine.errors import PayloadTooLarge, ValidationFailed
from engine.service import TaskService

__all__ = ["Service", "int_param", "json_body", "parse_json", "read_limited"]

Service = NamedDependency[TaskService]  # the app's TaskService, injected by name ("service")


async def json_body(request: Request) -> Any:
    """The parsed body. Not JSON, nested too deep, or text Redis cannot store (lone surrogates written as
    ``\\ud800`` escapes) -> 400, before anything is stored."""
    raw = await request.body()
    try:
        body = json.loads(raw)
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed("invalid request body: text is not valid UTF-8") from None
    except RecursionError:
        raise ValidationFailed("invalid request body: nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("invalid request body") from None
    return body


def parse_json(raw: bytes) -> Any:
    """The parsed body (text checks happen per event, so one bad string rejects one event, not the batch)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValidationFailed("invalid request body: nested too deeply") from None
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
