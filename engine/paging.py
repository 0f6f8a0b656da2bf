"""Validating list parameters shared by every listing (tasks, events): state, limit and cursor."""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.errors import ValidationFailed

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "page_request"]

MAX_PAGE = 500  # records per page at most
DEFAULT_PAGE = 50  # records per page when no limit is given


def page_request(*, state: str | None, states: Sequence[str], limit: int | None,
                 cursor: str | None) -> tuple[int, int | None]:
    """(page size, seq to list below) for the given parameters, or ValidationFailed naming the bad one."""
    if state is not None and state not in states:
        raise ValidationFailed(f"invalid state: must be one of {', '.join(states)}")
    size = DEFAULT_PAGE if limit is None else limit
    if not 1 <= size <= MAX_PAGE:
        raise ValidationFailed(f"invalid limit: must be between 1 and {MAX_PAGE}")
    if not cursor:
        return size, None
    if not re.fullmatch(r"[0-9]{1,18}", cursor):
        raise ValidationFailed("invalid cursor")
    return size, int(cursor)
