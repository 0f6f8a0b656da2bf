"""Rate limiting without a server: the settings, which buckets the policy picks, and the bucket arithmetic of
``ratelimit.lua`` on fakeredis (with lupa) and a fixed clock. The real-Redis tier is
tests/integration/test_ratelimit*.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest

from api.auth import key_id
from api.ratelimit import policy_of
from config.base import RateLimitSpec
from config.loader import load_settings
from engine.errors import ConfigError
from engine.ratelimit import Bucket, RateLimitPolicy, check
from engine.store import SyncRunner

T0 = 1_700_000_000_000_000  # epoch microseconds
MS = 1000  # microseconds in a millisecond


def test_the_policy_picks_buckets_by_key_project_and_source() -> None:
    api, own, proj, hook = (RateLimitSpec(burst=b, per_second=1) for b in (100, 5, 50, 7))
    policy = RateLimitPolicy(default=api, keys={"k2": own}, projects={"p": proj, "default": proj},
                             sources={"gh": hook, "plain": hook}, signed_sources=frozenset({"gh"}))

    def names(**kw: Any) -> list[tuple[str, int]]:
        return [(b.name, b.burst) for b in policy.buckets(**kw)]  # type: ignore[arg-type]

    assert names(key_id="k1", project="x") == [("key:k1", 100)]
    assert names(key_id="k2", project="p") == [("key:k2", 5), ("project:p", 50)]
    assert names(key_id="k1", project="x", source="gh") == [("key:k1", 100), ("source:gh", 7)]
    assert names(key_id="", project="x") == [("anon", 100)]  # no key configured: one shared bucket
    assert names(key_id="", project="x", source="gh") == [("anon", 100), ("source:gh", 7)]  # ... webhooks too
    # Without a valid key: a signed delivery counts against its source only; nothing else counts at all.
    assert names(key_id="", project="p", source="gh", authenticated=False) == [("source:gh", 7)]
    assert names(key_id="", project="default", source="plain", authenticated=False) == []  # about to be 401
    assert names(key_id="", project="default", authenticated=False) == []  # a signed artifact URL
    assert names(key_id="", project="p", source="other", authenticated=False) == []
    assert not RateLimitPolicy().enabled and RateLimitPolicy().buckets(key_id="k", project="p") == []


def test_settings_turn_into_a_policy_keyed_by_key_id_never_the_key(tmp_path: Path) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text("""
rate_limit: {burst: 100, per_second: 10}
project_rate_limits: {team: {burst: 1000, per_second: 50}}
api_keys:
  - {key: sekrit, project: team, rate_limit: {burst: 5, per_second: 0.5}}
  - {key: other}
sources:
  github: {secret: s, rate_limit: {burst: 300, per_second: 30}}
  plain: {}
""")
    policy = policy_of(load_settings(path, env={}))
    assert policy.default == RateLimitSpec(burst=100, per_second=10)
    assert list(policy.keys) == [key_id("sekrit")] and len(key_id("sekrit")) == 16
    assert "sekrit" not in repr(policy)
    assert policy.projects["team"].burst == 1000 and list(policy.sources) == ["github"]
    assert not policy_of(load_settings(None, env={})).enabled  # off unless configured


def test_bad_rate_limits_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text("""
rate_limit: {burst: 0, per_second: 10}
project_rate_limits: {"bad name": {burst: 1, per_second: 1}}
sources:
  plain: {rate_limit: {burst: 1, per_second: 0}}
  tiny: {rate_limit: {burst: 1, per_second: 1.0e-320}}
""")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    where = " ".join(i.key for i in info.value.issues)
    assert "rate_limit.burst" in where and "project_rate_limits" in where
    assert "sources.plain.rate_limit.per_second" in where
    assert "sources.tiny.rate_limit.per_second" in where  # a denormal rate would break the script (fail-open)


def test_the_bucket_arithmetic_on_a_fixed_clock() -> None:
    runner = SyncRunner(fakeredis.FakeRedis(decode_responses=True))
    bucket = Bucket("b", burst=3, per_second=4)  # a token every 250 ms
    assert [runner.run(check([bucket], now_us=T0)).remaining for _ in range(3)] == [2, 1, 0]
    refused = runner.run(check([bucket], now_us=T0 + 100 * MS))  # 0.4 token: 150 ms short
    assert (refused.allowed, refused.retry_after_s, refused.reset_s) == (False, 1, 1)
    again = runner.run(check([bucket], now_us=T0 + 600 * MS))  # 2.4 tokens, one taken
    assert again.allowed and again.remaining == 1
    with pytest.raises(ValueError):
        check([])
