"""A JSON document decoded only when first read.

An engine job reads each event with its raw payload (GitHub's are 5-30 KB), but most rules decide on the
attributes the source extracted at receive time; decoding the payload was a tenth of the engine's CPU per
event. Filters (dotted payload paths) and templates (``payload.*``) resolve it when they need it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["LazyJSON", "resolved"]

_UNSET = object()


class LazyJSON:
    """``value`` is the decoded document, decoded on first use and kept."""

    __slots__ = ("_raw", "_value")

    def __init__(self, raw: str) -> None:
        self._raw = raw
        self._value: Any = _UNSET

    @property
    def decoded(self) -> bool:
        return self._value is not _UNSET

    @property
    def value(self) -> Any:
        if self._value is _UNSET:
            self._value = json.loads(self._raw)
        return self._value


def resolved(value: Any) -> Any:
    """The document itself for a LazyJSON, anything else unchanged."""
    return value.value if isinstance(value, LazyJSON) else value
