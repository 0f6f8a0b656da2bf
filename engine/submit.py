"""Validate a POST /task body into a :class:`SubmitRequest`, with mecha's error messages."""

from __future__ import annotations

from typing import Any

from config import defaults
from config.settings import WORKER_NAME_RE, parse_duration
from engine.bodies import object_body
from engine.errors import InvalidBody, ValidationFailed, WorkerNotFound
from engine.models import SubmitRequest

__all__ = ["parse_submit"]

_FIELDS = {"prompt", "worker", "pool", "context", "timeout", "max_retries", "idempotency_key"}
MAX_IDEMPOTENCY_KEY_CHARS = 256  # characters
# idempotency keys the engine gives its own tasks (rules, the fix agent, regression replay): a client may not take
# one first and have its task adopted in their place
RESERVED_KEY_PREFIXES = ("event:", "fix:", "regression:")
MAX_TIMEOUT_S = 7 * 86400.0  # seconds, longest timeout a task may ask for
MIN_TIMEOUT_S = 0.001  # seconds, shortest


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed("invalid request body")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidBody(f"{name} is not valid UTF-8") from None
    return value or None


def parse_submit(body: Any) -> SubmitRequest:
    """The request, or ValidationFailed with mecha's message (``invalid request body``, ``prompt is required``,
    ``max_retries must be between 1 and 10``)."""
    body = object_body(body, _FIELDS)
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ValidationFailed("invalid request body")
    worker = _opt_str(body, "worker")
    pool = _opt_str(body, "pool")
    key = _opt_str(body, "idempotency_key")
    context = body.get("context")
    if context is not None and not isinstance(context, dict):
        raise ValidationFailed("invalid request body")
    timeout = body.get("timeout")
    if timeout is not None:
        try:
            timeout = parse_duration(timeout)
        except ValueError:
            raise InvalidBody("timeout must be seconds or a duration like 30s") from None
        if not MIN_TIMEOUT_S <= timeout <= MAX_TIMEOUT_S:
            raise InvalidBody("timeout must be between 1ms and 7 days")
    retries = body.get("max_retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
        raise ValidationFailed("invalid request body")
    if not prompt or not prompt.strip():
        raise ValidationFailed("prompt is required")
    try:
        size = len(prompt.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidBody("prompt is not valid UTF-8") from None
    if size > defaults.MAX_PROMPT_BYTES:
        raise InvalidBody(f"prompt is over {defaults.MAX_PROMPT_BYTES} bytes")
    if retries is not None and not 1 <= retries <= 10:
        raise ValidationFailed("max_retries must be between 1 and 10")
    if worker is not None and not WORKER_NAME_RE.fullmatch(worker):
        raise WorkerNotFound()  # no worker can have that name: it names none (mecha's 404, not a 400)
    if worker and pool:
        raise InvalidBody("give worker or pool, not both")
    if key is not None and key.startswith(RESERVED_KEY_PREFIXES):
        raise InvalidBody("idempotency_key may not start with "
                               + ", ".join(RESERVED_KEY_PREFIXES) + " (reserved for the engine's own tasks)")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidBody(f"idempotency_key over {MAX_IDEMPOTENCY_KEY_CHARS} characters")
    return SubmitRequest(prompt=prompt, worker=worker, pool=pool, context=context, timeout=timeout,
                         max_retries=retries, idempotency_key=key)
