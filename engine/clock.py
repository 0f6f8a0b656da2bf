"""The clock seam: every engine time comes from here, in epoch milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from engine.errors import ValidationFailed

__all__ = ["now_ms", "parse_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_MAX_MS_DIGITS = 15  # digits an epoch-milliseconds value may have (year 33658); more is not a time


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def parse_ms(value: str, name: str) -> int:
    """A time given as epoch milliseconds (``1767225600000``) or RFC 3339 (``2026-11-23T09:00:00Z``; no zone means
    UTC), in epoch milliseconds. Anything else -> ValidationFailed naming the parameter ``name``."""
    if value.isascii() and value.isdigit() and len(value) <= _MAX_MS_DIGITS:
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"invalid {name}: epoch milliseconds or an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MS  # exact: float seconds would lose a millisecond now and then
