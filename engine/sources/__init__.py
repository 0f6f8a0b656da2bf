"""Inbound webhook sources: verify a delivery and turn it into an :class:`InboundEvent`. Pure: no Redis, no HTTP.

``github`` checks ``X-Hub-Signature-256`` and reads GitHub's payloads into flat attributes; ``generic`` serves
the ``hmac`` and ``plain`` source types. Every failure is a :class:`~engine.errors.WebhookInvalid` whose public
message is mecha's ``webhook validation failed`` and whose ``reason`` says which check failed.
"""

from __future__ import annotations

from collections.abc import Mapping

from config.settings import SourceSpec
from engine.errors import WebhookInvalid
from engine.sources import generic, github
from engine.sources.event import InboundEvent

__all__ = ["InboundEvent", "parse_delivery"]


def parse_delivery(name: str, spec: SourceSpec, headers: Mapping[str, str], body: bytes) -> InboundEvent:
    """Verify and parse one delivery to source ``name``. Raises WebhookInvalid; never trusts an unchecked body."""
    if len(body) > spec.max_body_bytes:
        raise WebhookInvalid(f"body is larger than max_body_bytes ({spec.max_body_bytes} bytes)")
    lowered = {key.lower(): value for key, value in headers.items()}
    if spec.kind == "github":
        return github.parse(name, spec, lowered, body)
    return generic.parse(name, spec, lowered, body)
