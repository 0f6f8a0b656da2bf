"""The pieces every settings model shares: the strict base model, durations, the name shape."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = ["WORKER_NAME_RE", "Duration", "PositiveDuration", "RateLimitSpec", "Strict", "at_least", "parse_duration"]

WORKER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}



def parse_duration(value: Any) -> float:
    """Seconds from ``30``, ``"30s"``, ``"10m"``, ``"1h"``, ``"500ms"``; raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m or 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration (use 30s, 10m, 1h)")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def at_least(minimum: float) -> Any:
    def check(value: float) -> float:
        if value < minimum:
            shown = f"{minimum * 1000:g}ms" if minimum < 1 else f"{minimum:g}s"
            raise ValueError(f"must be at least {shown}")
        return value

    return AfterValidator(check)


PositiveDuration = Annotated[float, BeforeValidator(parse_duration), at_least(0.001)]  # seconds, >= 1 ms


class Strict(BaseModel):
    """Unknown keys are errors; parsed settings never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimitSpec(Strict):
    """A token bucket: up to ``burst`` requests at once, refilled at ``per_second`` requests a second."""

    burst: int = Field(ge=1, le=1_000_000_000)  # tokens (requests) the bucket holds when full
    # tokens added a second; at least one a day (a smaller rate overflows the script's arithmetic, and a
    # failing check lets every request through)
    per_second: float = Field(ge=1 / 86_400, le=1_000_000_000)
