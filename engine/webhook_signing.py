"""Signing outbound alert webhooks so a receiver can verify them and reject replays.

Two signatures over the exact body bytes, both HMAC-SHA256 with one key:

- Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id`` (the delivery id, the same on every
  retry), ``webhook-timestamp`` (epoch seconds of this attempt) and ``webhook-signature: v1,<base64 of
  HMAC(key, "<id>.<timestamp>.<body>")>``. Receivers reject old timestamps and seen ids.
- ``X-Taskyard-Signature: sha256=<hex of HMAC(key, body)>`` for simple receivers.

The key: a secret of the Standard Webhooks form ``whsec_<base64>`` (what Taskyard generates: 24 random bytes)
signs with the decoded bytes, exactly as the Standard Webhooks libraries do; any other secret a subscriber
chose signs with its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = ["SECRET_PREFIX", "key_of", "new_secret", "signature_headers"]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # random bytes of a generated secret (192 bits)


def new_secret() -> str:
    """A fresh secret: ``whsec_`` and the base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key of a secret: the decoded bytes of a ``whsec_<base64>`` secret, else its UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode("utf-8")


def signature_headers(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The signing headers of one attempt."""
    key = key_of(secret)
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    standard = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    simple = hmac.new(key, body, hashlib.sha256).hexdigest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp_s), "webhook-signature": f"v1,{standard}",
            "X-Taskyard-Signature": f"sha256={simple}"}
