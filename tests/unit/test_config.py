from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import load_settings
from config.settings import parse_duration
from engine.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "taskyard.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def issues_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env or {})
    return [str(i) for i in info.value.issues]


def test_no_config_defines_the_builtin_echo_worker() -> None:
    settings = load_settings(None, env={})
    assert [w.name for w in settings.workers] == ["echo"]
    assert settings.workers[0].handler == "workers.builtin:echo"
    assert settings.redis_url is None and settings.port == 8080


def test_full_example_shape_loads(tmp_path: Path) -> None:
    path = write(tmp_path, """
api_key: ${KEY}
redis_url: redis://127.0.0.1:6379/0
max_queue_depth: 100
rate_limit: {burst: 100, per_second: 10}
outbound: {allow_hosts: [127.0.0.1]}
sources:
  github: {secret: whsec_x, token: ghp_x, api_url: https://api.github.com}
workers:
  - name: pr-reviewer
    command: ["claude", "--print"]
    env: {CLAUDE_MODEL: claude-sonnet-4-6}
    timeout: 30m
    concurrency: 2
    max_queue_depth: 50
    max_retries: 3
    pools: [reviewers]
    repo: {path: /srv/repo, base_ref: main, allowed_paths: [agents/]}
    events:
      - source: github
        on: [pull_request.opened]
        prompt: "Review PR #{{.number}}"
    schedule:
      - cron: "0 9 * * 1-5"
        prompt: Daily triage
""")
    settings = load_settings(path, env={"KEY": "s3cret"})
    worker = settings.workers[0]
    assert settings.api_key == "s3cret"
    assert worker.timeout == 1800.0 and worker.kind == "command" and worker.pools == ["reviewers"]


def test_every_error_names_file_key_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, """
bogus: 1
workers:
  - name: a
    command: "echo hi"
    timeout: forever
  - name: b
    command: x
    handler: mod:fn
""")
    issues = issues_of(path)
    assert f"{path}: bogus: unknown key" in issues
    assert any(i.startswith(f"{path}: workers[0] (a).timeout:") and "not a duration" in i for i in issues)
    assert any("workers[1] (b)" in i and "exactly one of command, endpoint or handler" in i for i in issues)


def test_missing_env_reference_is_an_error_not_an_empty_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "api_key: ${NOT_SET}\n")
    assert issues_of(path) == [f"{path}: api_key: environment variable NOT_SET is not set"]


def test_workers_dir_files_are_merged_and_errors_name_their_file(tmp_path: Path) -> None:
    wdir = tmp_path / "workers"
    wdir.mkdir()
    (wdir / "good.yaml").write_text("name: good\nhandler: workers.builtin:echo\n")
    bad = wdir / "bad.yaml"
    bad.write_text("name: bad\nendpoint: not-a-url\n")
    path = write(tmp_path, "workers_dir: workers\n")
    issues = issues_of(path)
    assert issues == [f"{bad}: endpoint: must be an http:// or https:// URL"]
    bad.unlink()
    assert [w.name for w in load_settings(path, env={}).workers] == ["good"]


def test_duplicate_worker_names_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "workers:\n- {name: a, handler: m:f}\n- {name: a, handler: m:g}\n")
    assert any("defined twice" in i for i in issues_of(path))


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "workers:\n  - name: a\n   bad: [\n")
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}: line ") and "not valid YAML" in issue


def test_env_overrides_top_level_keys(tmp_path: Path) -> None:
    settings = load_settings(None, env={"TASKYARD_PORT": "9000", "TASKYARD_REDIS_URL": "redis://x:1/0"})
    assert settings.port == 9000 and settings.redis_url == "redis://x:1/0"


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("500ms", 0.5), (7, 7)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "-1", True, "5 weeks"])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_mecha_on_key_and_yes_no_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path, """
workers:
  - name: w
    handler: m:f
    events:
      - {source: github, on: [push], filter: {draft: no}, prompt: x}
""")
    event = load_settings(path, env={}).workers[0].events[0]
    assert event.on == ["push"] and event.filter == {"draft": "no"}


def test_an_empty_secret_from_the_environment_is_an_error_not_auth_off(tmp_path: Path) -> None:
    path = write(tmp_path, "api_key: ${KEY}\n")
    (issue,) = issues_of(path, env={"KEY": ""})
    assert issue.startswith(f"{path}: api_key: must be a non-empty key")


@pytest.mark.parametrize(("env", "expected"), [
    ({"TASKYARD_HEARTBEAT_INTERVAL": "0"}, "environment TASKYARD_HEARTBEAT_INTERVAL: heartbeat_interval: must be"),
    ({"TASKYARD_REDIS_URL": "notaurl"}, "environment TASKYARD_REDIS_URL: redis_url: must be a redis://"),
    ({"TASKYARD_PORT": "abc"}, "environment TASKYARD_PORT: port:"),
])
def test_bad_environment_overrides_name_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env=env)
    assert str(info.value.issues[0]).startswith(expected)


def test_zero_timeouts_and_empty_scopes_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "api_keys: [{key: k, scopes: []}]\nworkers: [{name: w, handler: m:f, timeout: 0}]\n")
    issues = issues_of(path)
    assert any("workers[0] (w).timeout: must be at least 1ms" in i for i in issues)
    assert any("api_keys[0].scopes" in i for i in issues)


@pytest.mark.parametrize(("name", "reason"), [("schedule", "reserved"), ("bad name", "must match")])
def test_source_names_are_checked(tmp_path: Path, name: str, reason: str) -> None:
    path = write(tmp_path, f"sources:\n  '{name}': {{}}\n")
    (issue,) = issues_of(path, env={})
    assert reason in issue and "sources" in issue


def test_fix_agent_repos_auto_heal_and_fix_settings_load(tmp_path: Path) -> None:
    path = write(tmp_path, """
repos:
  default: {path: /srv/agents, allowed_paths: ["."]}
fix: {replay_timeout: 10m, max_cases: 3, worktree_dir: /var/tmp/wt}
workers:
  - name: a
    command: x
    repo: {path: /srv/a, allowed_paths: [agents/, taskyard-agent.yaml], worker_file: config/workers/a.yaml}
    auto_heal: {attempts: 2}
""")
    settings = load_settings(path, env={})
    repo = settings.workers[0].repo
    assert repo is not None and repo.agent_config == "taskyard-agent.yaml"
    assert repo.worker_file == "config/workers/a.yaml"
    assert settings.workers[0].auto_heal is not None and settings.workers[0].auto_heal.attempts == 2
    assert settings.repos["default"].base_ref == "main"
    assert settings.fix.replay_timeout == 600.0 and settings.fix.max_cases == 3


def test_repo_settings_that_could_escape_the_repository_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """
workers:
  - name: a
    command: x
    repo: {path: /srv/a, allowed_paths: ["../etc"], agent_config: /etc/passwd, base_ref: "--force"}
  - name: b
    command: x
    repo: {path: /srv/b}
""")
    issues = issues_of(path)
    assert any("workers[0] (a).repo.allowed_paths" in i and "inside the repository" in i for i in issues), issues
    assert any("workers[0] (a).repo.agent_config" in i for i in issues)
    assert any("workers[0] (a).repo.base_ref" in i for i in issues)
    assert any("workers[1] (b).repo.allowed_paths" in i for i in issues)
