"""Settings for external agents' telemetry (MeshAI shapes): when a silent agent counts as degraded or down."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, model_validator

from config import defaults
from config.base import Strict, at_least, parse_duration

__all__ = ["AgentHealthSpec"]

_Threshold = Annotated[float, BeforeValidator(parse_duration), at_least(1.0)]  # seconds, at least 1 s


class AgentHealthSpec(Strict):
    """Heartbeat age thresholds, in seconds (``2m``, ``300s``): younger than ``degraded_after`` is healthy,
    from ``degraded_after`` until ``down_after`` degraded, from ``down_after`` on down."""

    # heartbeat age (seconds) after which an agent is degraded
    degraded_after: _Threshold = defaults.AGENT_DEGRADED_AFTER_S
    # heartbeat age (seconds) after which an agent is down
    down_after: _Threshold = defaults.AGENT_DOWN_AFTER_S

    @model_validator(mode="after")
    def _ordered(self) -> AgentHealthSpec:
        if self.down_after <= self.degraded_after:
            raise ValueError("down_after must be longer than degraded_after")
        return self
