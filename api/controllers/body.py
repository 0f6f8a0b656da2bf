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
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("invalid request body") from None
