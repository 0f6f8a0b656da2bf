"""The ``retention:`` settings: defaults, durations, "keep forever", and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import load_settings
from engine.errors import ConfigError
from engine.retention import RetentionPolicy

DAY_S = 86_400.0


def load(tmp_path: Path, text: str):  # noqa: ANN201 - the Settings
    path = tmp_path / "taskyard.yaml"
    path.write_text(text)
    return load_settings(path, env={})


def issues_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return [str(i) for i in info.value.issues]


def test_the_defaults_keep_tasks_events_and_traces_a_week_and_usage_thirty_days() -> None:
    retention = load_settings(None, env={}).retention
    assert (retention.tasks, retention.events, retention.traces, retention.usage) == (
        7 * DAY_S, 7 * DAY_S, 7 * DAY_S, 30 * DAY_S)


def test_periods_take_durations_with_units(tmp_path: Path) -> None:
    retention = load(tmp_path, "retention: {tasks: 2d, events: 12h, traces: 90m, usage: 3600}\n").retention
    assert (retention.tasks, retention.events, retention.traces, retention.usage) == (
        2 * DAY_S, 12 * 3600.0, 90 * 60.0, 3600.0)


def test_zero_or_null_keeps_a_kind_forever(tmp_path: Path) -> None:
    retention = load(tmp_path, "retention: {tasks: 0, events: null, traces: 0s}\n").retention
    assert (retention.tasks, retention.events, retention.traces) == (None, None, None)
    assert retention.usage == 30 * DAY_S  # keys left out keep their default
    policy = RetentionPolicy.from_settings(retention)
    assert policy == RetentionPolicy(usage_ms=30 * 86_400_000)


def test_a_bare_small_number_is_refused_as_a_likely_unit_mistake(tmp_path: Path) -> None:
    [issue] = issues_of(tmp_path, "retention: {tasks: 7}\n")
    assert "retention.tasks" in issue and "at least 60s" in issue and "7d" in issue


@pytest.mark.parametrize("value", ["-1d", "seven days", "true", "[1]"])
def test_values_that_are_not_durations_are_refused(tmp_path: Path, value: str) -> None:
    [issue] = issues_of(tmp_path, f"retention: {{events: {value}}}\n")
    assert "retention.events" in issue


def test_unknown_retention_keys_are_errors(tmp_path: Path) -> None:
    [issue] = issues_of(tmp_path, "retention: {incidents: 7d}\n")
    assert "retention.incidents" in issue
