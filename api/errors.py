"""The one place engine errors become HTTP responses: ``{"error": "<message>", ...}``, never HTML."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from engine.errors import (
    AdmissionRefused,
    Conflict,
    Forbidden,
    NoOnlineWorkers,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    RateLimited,
    StoreUnavailable,
    TaskyardError,
    Unauthorized,
    Unprocessable,
    UnsupportedContentType,
    ValidationFailed,
    WebhookInvalid,
)
from engine.ids import new_id

__all__ = ["EXCEPTION_HANDLERS", "error_response", "send_error"]

logger = logging.getLogger("taskyard.api")

STATUS: list[tuple[type[TaskyardError], int]] = [
    (WebhookInvalid, 401),
    (PayloadTooLarge, 413),
    (UnsupportedContentType, 415),
    (Unprocessable, 422),
    (ValidationFailed, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (QueueFull, 429),
    (RateLimited, 429),
    (NoOnlineWorkers, 503),
    (StoreUnavailable, 503),
]


def error_response(status: int, message: str, **extra: object) -> Response:
    return Response({"error": message, **extra}, status_code=status, media_type="application/json")


def _taskyard(request: Request, exc: TaskyardError) -> Response:
    status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
    extra: dict[str, object] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, AdmissionRefused) and exc.decision:
        extra["dispatch"] = exc.decision
    if isinstance(exc, (QueueFull, RateLimited)):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, ValidationFailed) and exc.detail:
        extra["detail"] = exc.detail
    if isinstance(exc, StoreUnavailable):
        logger.warning("store unavailable", extra={"path": request.url.path})
        return Response({"error": "store unavailable"}, status_code=503, headers={"Retry-After": "1"})
    if status == 500:
        return _internal(request, exc)
    return Response({"error": exc.message, **extra}, status_code=status, headers=headers)


async def send_error(send: Any, exc: TaskyardError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """The same error answer from an ASGI middleware in front of the app (no Litestar request there yet)."""
    status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
    detail = {"detail": exc.detail} if isinstance(exc, ValidationFailed) and exc.detail else {}
    body = json.dumps({"error": exc.message, **detail}).encode()
    extra = [(b"retry-after", str(exc.retry_after).encode())] if isinstance(exc, RateLimited) else []
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra, *headers]})
    await send({"type": "http.response.body", "body": body})


def _http(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500:
        return _internal(request, exc)
    if isinstance(exc, ValidationException):
        return error_response(400, "invalid request body")
    if isinstance(exc, NotFoundException):
        return error_response(404, "not found")
    message = {405: "method not allowed", 413: "request body too large"}.get(status, str(exc.detail).lower())
    return Response({"error": message}, status_code=status, headers=exc.headers or {})


def _internal(request: Request, exc: Exception) -> Response:
    request_id = new_id()[:16]
    logger.error("unhandled error", exc_info=exc, extra={"request_id": request_id, "path": request.url.path})
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal error", request_id=request_id)


EXCEPTION_HANDLERS = {TaskyardError: _taskyard, HTTPException: _http, Exception: _internal}
