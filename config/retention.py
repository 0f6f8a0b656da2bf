"""Settings for retention (``retention:``): how long finished records stay in Redis before the sweep deletes them.

Each period is a duration (``7d``, ``12h``, ``30m``, or seconds); ``0`` or ``null`` keeps that kind forever.
Incidents, fix runs and regression runs are always kept.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from config import defaults
from config.base import Strict, parse_duration

__all__ = ["RetentionSettings"]


def _period(value: Any) -> float | None:
    """``None`` or ``0`` keeps forever; otherwise seconds, at least ``RETENTION_MIN_S``."""
    if value is None:
        return None
    seconds = parse_duration(value)
    return None if seconds == 0 else seconds


def _long_enough(value: float | None) -> float | None:
    if value is not None and value < defaults.RETENTION_MIN_S:
        raise ValueError(f"must be 0 (keep forever) or at least {defaults.RETENTION_MIN_S:g}s; "
                         "give a unit (7d, 12h, 30m): a bare number is seconds")
    return value


Period = Annotated[float | None, BeforeValidator(_period), AfterValidator(_long_enough)]  # seconds, None = forever


class RetentionSettings(Strict):
    """How long each kind of finished record is kept; ``0`` or ``null`` keeps it forever."""

    # seconds (default 7 days) a completed, failed or cancelled task is kept after it ended, with its trace
    tasks: Period = defaults.RETENTION_TASKS_S
    # seconds (default 7 days) a webhook event in a final state (completed, failed, skipped, write_back_failed,
    # or matched: only auto: false rules matched) is kept after its last change, with its raw payload
    events: Period = defaults.RETENTION_EVENTS_S
    # seconds (default 7 days) an ended trace of an external agent (or of a task already deleted) is kept after
    # its last change; a task's own trace goes with its task
    traces: Period = defaults.RETENTION_TRACES_S
    # seconds (default 30 days) a usage record (per-project usage stream entry) is kept
    usage: Period = defaults.RETENTION_USAGE_S
