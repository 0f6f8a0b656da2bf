"""Reading the API's error answers in tests."""

from __future__ import annotations

from typing import Any


def reason(answer: Any) -> str:
    """An error answer's whole reason: ``error`` (mecha's exact message) and, when there is one, ``: <detail>``."""
    body = answer.json()
    return body["error"] + (f": {body['detail']}" if body.get("detail") else "")
