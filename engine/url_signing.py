"""Signed URLs: HMAC-SHA256 over ``"<resource id>:<expires epoch s>"`` with a server-wide secret.

The secret lives in Redis (``ty:secret:<name>``), made once with ``SET NX`` by whichever process needs it
first, so every replica signs and verifies with the same key; each process caches it after the first read.
A signature binds the id and the expiry: changing either, or using the URL after its expiry, fails the check,
which compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from engine import keys
from engine.errors import InvalidSignature
from engine.store import AsyncRunner, Op

__all__ = ["SECRET_BYTES", "UrlSigner", "signature"]

SECRET_BYTES = 32  # bytes of randomness in a signing secret (64 hex characters)
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def signature(secret: str, resource_id: str, expires_s: int) -> str:
    """The hex HMAC-SHA256 of ``"<resource_id>:<expires_s>"`` under ``secret``."""
    message = f"{resource_id}:{expires_s}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class UrlSigner:
    """Signs and verifies (id, expiry) pairs with the secret named ``name`` (``ty:secret:<name>``)."""

    def __init__(self, runner: AsyncRunner, name: str) -> None:
        self.runner = runner
        self.key = keys.key("secret", name=name)
        self._secret: str | None = None

    async def secret(self) -> str:
        if self._secret is None:
            fresh = secrets.token_hex(SECRET_BYTES)
            # Two processes racing here both read the winner's value: SET NX keeps the first one.
            self._secret = await self.runner.run(Op(lambda raw: str(raw[1]), commands=(
                ("SET", self.key, fresh, "NX"), ("GET", self.key))))
        return self._secret

    async def sign(self, resource_id: str, expires_s: int) -> str:
        return signature(await self.secret(), resource_id, expires_s)

    async def verify(self, resource_id: str, expires: str | None, given: str | None, *, now_s: int) -> None:
        """Raise InvalidSignature unless ``given`` signs (resource_id, expires) and ``expires`` is not past."""
        if not expires or not given or not _EXPIRES.fullmatch(expires) or not _SIGNATURE.fullmatch(given):
            raise InvalidSignature()
        expected = await self.sign(resource_id, int(expires))
        if not hmac.compare_digest(expected, given) or int(expires) < now_s:
            raise InvalidSignature()
