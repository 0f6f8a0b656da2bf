"""The parsed form of one webhook delivery, and the checks every source type shares (HMAC, JSON body).

Kept apart from the source modules so ``github`` and ``generic`` both build the same :class:`InboundEvent`
without importing each other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import WebhookInvalid

__all__ = ["InboundEvent", "header", "json_body", "verify_hmac"]

_SHA256_PREFIX = "sha256="


@dataclass(frozen=True)
class InboundEvent:
    """One verified delivery. ``type`` is what rules match on (``pull_request.opened``, ``push``, ``webhook``)."""

    source: str
    type: str
    delivery_id: str | None  # the sender's delivery id, for deduplicating redeliveries
    actor: str | None  # who caused it (GitHub: the sender's login)
    subject: str | None  # what it is about: "octo/repo#12", "octo/repo@main"
    attrs: dict[str, Any]  # flat, JSON-able attributes for rule filters and prompt templates
    payload: Any  # the parsed JSON body
    ping: bool = False  # a GitHub ping: answer 200 and create no work


def header(headers: Mapping[str, str], name: str | None) -> str | None:
    """The value of header ``name`` (``headers`` has lowercase keys), stripped; None when absent or blank."""
    if not name:
        return None
    value = headers.get(name.lower())
    if value is None or not value.strip():
        return None
    return value.strip()


def verify_hmac(secret: str, body: bytes, given: str | None, header_name: str, *, prefix_required: bool) -> None:
    """Check ``given`` against HMAC-SHA256(secret, body) in constant time.

    ``given`` is ``sha256=<hex>`` (GitHub always sends the prefix, so ``prefix_required``) or bare hex.
    """
    if given is None:
        raise WebhookInvalid(f"missing {header_name}")
    value = given.strip()
    if value[: len(_SHA256_PREFIX)].lower() == _SHA256_PREFIX:
        value = value[len(_SHA256_PREFIX):]
    elif prefix_required:
        raise WebhookInvalid(f"malformed {header_name} (expected sha256=<hex>)")
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    # Both sides as bytes: compare_digest refuses non-ASCII str, and a header may hold anything.
    if not hmac.compare_digest(expected.encode("ascii"), value.lower().encode("utf-8", "replace")):
        raise WebhookInvalid("signature mismatch")


def json_body(body: bytes) -> Any:
    """The body as JSON: UTF-8 text holding one JSON value, else :class:`WebhookInvalid`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookInvalid("body is not UTF-8") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise WebhookInvalid("body is not JSON") from None
