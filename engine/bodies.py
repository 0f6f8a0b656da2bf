"""Shared checks on request bodies, with the API's message for each problem."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from engine.errors import InvalidBody, ValidationFailed

__all__ = ["object_body"]


def object_body(body: Any, allowed: Set[str]) -> dict[str, Any]:
    """``body`` when it is a JSON object naming only ``allowed`` fields, else ValidationFailed: ``invalid request
    body`` (not an object) or ``invalid request body: unknown field 'x'``."""
    if not isinstance(body, dict):
        raise ValidationFailed("invalid request body")
    unknown = body.keys() - allowed
    if unknown:
        raise InvalidBody(f"unknown field {sorted(unknown)[0]!r}")
    return body
