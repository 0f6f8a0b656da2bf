"""Identifiers: 32 lowercase hex characters (DESIGN section 3)."""

from __future__ import annotations

import os
import re

__all__ = ["is_id", "new_id"]

_ID_RE = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    """A fresh random id (128 random bits; os.urandom directly costs a third of uuid4().hex)."""
    return os.urandom(16).hex()


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of a Taskyard id."""
    return bool(_ID_RE.fullmatch(value))
