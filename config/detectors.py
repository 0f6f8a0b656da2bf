"""Detector thresholds (``detectors:``): budgets, loop and cost-spike limits, with per-worker and per-project
overrides.

```yaml
detectors:
  max_steps: 200          # llm_call + tool_call events per run
  max_duration: 30m       # wall time of a run
  max_tokens: 1000000     # tokens in + out per run
  loop_repeats: 3         # identical calls in a row that make a loop
  loop_cycles: 2          # full A-B-A-B cycles that make an oscillation
  cost_spike_factor: 5    # x the worker's recent median cost
  cost_spike_min_runs: 5  # recent runs needed before judging
  cost_spike_min_usd: 0.10
  projects: {research: {max_tokens: 5000000}}
  workers: {deep-researcher: {max_steps: 1000, max_duration: 2h}}
```

A worker's override wins over its project's, which wins over the top-level values. The engine receives the
resolved :class:`Thresholds` for one run (:meth:`DetectorSettings.for_run`), never the settings object.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from config import defaults
from config.base import WORKER_NAME_RE, Strict, at_least, parse_duration

__all__ = ["DetectorSettings", "ThresholdOverride", "Thresholds"]

_Seconds = Annotated[float, BeforeValidator(parse_duration), at_least(1.0)]  # seconds, at least 1 s


class _Limits(Strict):
    """The limits detectors apply, every value set (units in ``config/defaults.py``)."""

    max_steps: int = Field(default=defaults.DETECTOR_MAX_STEPS, ge=1)  # llm_call + tool_call events
    max_duration: _Seconds = defaults.DETECTOR_MAX_DURATION_S  # seconds
    max_tokens: int = Field(default=defaults.DETECTOR_MAX_TOKENS, ge=1)  # tokens in + out
    loop_repeats: int = Field(default=defaults.DETECTOR_LOOP_REPEATS, ge=2, le=1000)  # identical calls in a row
    loop_cycles: int = Field(default=defaults.DETECTOR_LOOP_CYCLES, ge=2, le=1000)  # full cycles of A-B(-C)
    cost_spike_factor: float = Field(default=defaults.DETECTOR_COST_SPIKE_FACTOR, gt=1.0)  # x recent median
    cost_spike_min_runs: int = Field(default=defaults.DETECTOR_COST_SPIKE_MIN_RUNS, ge=1)  # recent runs
    cost_spike_min_usd: float = Field(default=defaults.DETECTOR_COST_SPIKE_MIN_USD, ge=0.0)  # USD


class Thresholds(_Limits):
    """The limits for one run, resolved by :meth:`DetectorSettings.for_run` (what the detectors take)."""


class ThresholdOverride(Strict):
    """Some of :class:`Thresholds` for one worker or project; what is left out comes from the level above."""

    max_steps: int | None = Field(default=None, ge=1)
    max_duration: _Seconds | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    loop_repeats: int | None = Field(default=None, ge=2, le=1000)
    loop_cycles: int | None = Field(default=None, ge=2, le=1000)
    cost_spike_factor: float | None = Field(default=None, gt=1.0)
    cost_spike_min_runs: int | None = Field(default=None, ge=1)
    cost_spike_min_usd: float | None = Field(default=None, ge=0.0)


class DetectorSettings(_Limits):
    """``detectors:``: the default thresholds plus overrides by project and by worker name."""

    # overrides by project name
    projects: dict[str, ThresholdOverride] = Field(default_factory=dict)
    # overrides by worker name (win over the project's)
    workers: dict[str, ThresholdOverride] = Field(default_factory=dict)

    @field_validator("projects", "workers")
    @classmethod
    def _names(cls, value: dict[str, ThresholdOverride]) -> dict[str, ThresholdOverride]:
        for name in value:
            if not WORKER_NAME_RE.fullmatch(name) or len(name) > 100:
                raise ValueError(f"{name!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 100 characters)")
        return value

    def for_run(self, *, worker: str = "", project: str = "") -> Thresholds:
        """The thresholds for a run of ``worker`` in ``project``: the worker's override over the project's over
        the defaults."""
        values = {name: getattr(self, name) for name in _Limits.model_fields}
        for override in (self.projects.get(project), self.workers.get(worker)):
            if override is not None:
                values.update(override.model_dump(exclude_none=True))
        return Thresholds(**values)
