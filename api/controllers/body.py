"""Reading JSON bodies with mecha's error for anything that is not JSON."""

from __future__ import annotations

import json
from typing import Any

from litestar import Request
from litestar.di import NamedDependency

from engine.errors import ValidationFailed
from engine.service import TaskService

__all__ = ["Service", "json_body"]

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
