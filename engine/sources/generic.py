"""Generic webhook sources: ``hmac`` (the body signed with HMAC-SHA256) and ``plain`` (unsigned).

The body must be JSON. The event type is the ``event_header`` value when one is configured and sent, else the
body's ``type`` field when it is a string, else ``webhook``. Attributes are the body's top-level fields (when it
is an object); ``actor`` and ``subject`` come from its ``actor``/``sender`` and ``subject`` string fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from config.settings import SourceSpec
from engine.sources.event import InboundEvent, header, json_body, verify_hmac

__all__ = ["DEFAULT_EVENT_TYPE", "parse"]

DEFAULT_EVENT_TYPE = "webhook"


def parse(name: str, spec: SourceSpec, headers: Mapping[str, str], body: bytes) -> InboundEvent:
    """Verify (hmac sources) and parse one delivery. ``headers`` has lowercase keys."""
    if spec.kind == "hmac" and spec.secret:
        sig_header = spec.signature_header or "X-Signature"
        verify_hmac(spec.secret, body, header(headers, sig_header), sig_header, prefix_required=False)
    payload = json_body(body)
    fields: Mapping[str, Any] = payload if isinstance(payload, dict) else {}
    event_type = header(headers, spec.event_header) or _string(fields.get("type")) or DEFAULT_EVENT_TYPE
    return InboundEvent(
        source=name,
        type=event_type,
        delivery_id=header(headers, spec.delivery_header),
        actor=_string(fields.get("actor")) or _string(fields.get("sender")),
        subject=_string(fields.get("subject")),
        attrs=_attributes(fields),
        payload=payload,
        ping=False,
    )


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


MAX_ATTRIBUTES = 64  # top-level fields of a generic payload kept as attributes
MAX_ATTRIBUTE_CHARS = 1024  # characters of a string field kept as an attribute; longer ones stay in the payload


def _attributes(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The payload's short scalar top-level fields. Everything stays reachable through the raw payload (filters
    fall back to dotted paths into it, templates see ``payload``); attributes are what listings show."""
    attrs: dict[str, Any] = {}
    for key, value in fields.items():
        if len(attrs) >= MAX_ATTRIBUTES:
            break
        if isinstance(value, str) and len(value) <= MAX_ATTRIBUTE_CHARS or \
                isinstance(value, (int, float, bool)) or value is None:
            attrs[key] = value
    return attrs
