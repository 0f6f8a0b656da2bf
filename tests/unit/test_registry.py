from __future__ import annotations

import json

from config.settings import WorkerSpec
from engine.keys import TEMPLATES, key, lua_preamble
from engine.registry import REDACTED, ProcessInfo, WorkerStatus, health_of, redact, register


def test_health_follows_heartbeat_age() -> None:
    now = 1_000_000_000
    assert health_of(None, now) == "unknown"
    assert health_of(now - 119_000, now) == "healthy"
    assert health_of(now - 121_000, now) == "degraded"
    assert health_of(now - 301_000, now) == "down"


def test_worker_health_never_reads_better_than_its_state() -> None:
    now = 1_000_000_000
    spec = WorkerSpec.model_validate({"name": "w", "handler": "m:f"})

    def status(processes: list[ProcessInfo], last: int | None) -> WorkerStatus:
        return WorkerStatus(spec=spec, source="config", depth=0, running=0, last_heartbeat_ms=last,
                            processes=processes)

    live, broken = ProcessInfo("p1", 1, ""), ProcessInfo("p2", 1, "import failed")
    assert status([live], now - 5_000).health(now) == "healthy"
    assert status([], now - 5_000).health(now) == "down"  # just stopped or killed: offline, so down
    assert status([], None).health(now) == "unknown"
    assert status([broken], now - 5_000).health(now) == "degraded"
    assert status([broken], now - 301_000).health(now) == "down"


def test_redaction_hides_env_headers_url_credentials_and_bearer_strings() -> None:
    out = redact({"env": {"GH_PAT": "t0k", "HOME": "/root"}, "headers": {"X-Custom": "abc"},
                  "endpoint": "http://user:pw@h:1", "cwd": "/srv", "api_token": "s",
                  "command": ["curl", "-H", "Authorization: Bearer xyz", "postgres://u:p@db/x"]})
    assert out["env"] == {"GH_PAT": REDACTED, "HOME": REDACTED}
    assert out["headers"] == {"X-Custom": REDACTED}
    assert out["endpoint"] == f"http://{REDACTED}@h:1" and out["cwd"] == "/srv"
    assert out["api_token"] == REDACTED
    assert "xyz" not in str(out["command"]) and ":p@" not in str(out["command"])


def test_redaction_hides_a_token_used_as_the_url_user_and_secret_query_parameters() -> None:
    out = redact({"endpoint": "https://ghp_abc123@git.example/x?api_key=k1&page=2&access_token=t2#frag"})
    assert out["endpoint"] == f"https://{REDACTED}@git.example/x?api_key={REDACTED}&page=2&access_token={REDACTED}#frag"
    assert redact("http://h:1/path?q=1") == "http://h:1/path?q=1"  # nothing secret: unchanged


def test_every_key_template_is_a_lua_function_with_the_same_spelling() -> None:
    preamble = lua_preamble()
    for name in TEMPLATES:
        assert f"local function k_{name}(" in preamble
    assert key("task", id="ab") == "ty:task:ab"
    assert 'return "ty:p:" .. tostring(project) .. ":tasks:s:" .. tostring(state)' in preamble


def test_redis_urls_in_messages_hide_the_password() -> None:
    from engine.connect import safe_url

    assert safe_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert safe_url("rediss://user:p@ss@h/0") == "rediss://user:***@h/0"
    assert safe_url("redis://h:6379/0") == "redis://h:6379/0"


def _stored(spec: WorkerSpec) -> str:
    """The JSON ``register`` writes to Redis for ``spec``."""
    commands = register(spec, source="config").commands
    assert commands is not None
    return str(commands[0][2])


def test_a_stored_definition_holds_no_secret() -> None:
    spec = WorkerSpec(name="remote", endpoint="https://bot:pw-1@agents.example", headers={"Authorization": "t0k-2"})
    command = WorkerSpec(name="local", command=["agent"], env={"GH_PAT": "t0k-3"})
    stored = [_stored(spec), _stored(command)]
    assert not any(secret in text for text in stored for secret in ("pw-1", "t0k-2", "t0k-3"))
    assert json.loads(stored[0])["spec"]["headers"] == {"Authorization": REDACTED}
    assert json.loads(stored[1])["spec"]["env"] == {"GH_PAT": REDACTED}
