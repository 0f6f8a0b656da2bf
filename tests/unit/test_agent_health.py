from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import load_settings
from engine.errors import ConfigError
from engine.telemetry import agent_health


def test_default_thresholds_are_meshai_s_two_and_five_minutes() -> None:
    settings = load_settings(None, env={})
    assert (settings.agent_health.degraded_after, settings.agent_health.down_after) == (120.0, 300.0)


def test_thresholds_take_durations(tmp_path: Path) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text("agent_health: {degraded_after: 30s, down_after: 2m}\n")
    health = load_settings(path, env={}).agent_health
    assert (health.degraded_after, health.down_after) == (30.0, 120.0)


@pytest.mark.parametrize(("text", "reason"), [
    ("agent_health: {degraded_after: 5m, down_after: 2m}", "down_after must be longer than degraded_after"),
    ("agent_health: {degraded_after: 500ms}", "must be at least 1s"),
    ("agent_health: {down_after: soon}", "is not a duration"),
    ("agent_health: {stale_after: 1m}", "agent_health.stale_after"),
])
def test_bad_thresholds_are_config_errors(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=reason):
        load_settings(path, env={})


def test_health_by_heartbeat_age() -> None:
    def status(age: int | None) -> str:
        return agent_health(None if age is None else 1_000_000 - age, 1_000_000, degraded_after_ms=120_000,
                            down_after_ms=300_000)

    assert [status(a) for a in (None, -5, 0, 119_999, 120_000, 299_999, 300_000)] == [
        "unknown", "healthy", "healthy", "healthy", "degraded", "degraded", "down"]
