"""The token buckets of ``ratelimit.lua`` on a real Redis: the arithmetic (with a fixed clock), all-or-nothing
across buckets, expiry, the server clock, and exactness when many callers race."""

from __future__ import annotations

import asyncio

import pytest

from engine import keys
from engine.connect import async_client
from engine.ratelimit import Bucket, Verdict, check
from engine.store import AsyncRunner, SyncRunner

T0 = 1_700_000_000_000_000  # an arbitrary epoch time, microseconds
S = 1_000_000  # microseconds in a second


@pytest.fixture()
def runner(redis_client) -> SyncRunner:
    return SyncRunner(redis_client)


def take(runner: SyncRunner, *buckets: Bucket, at: int) -> Verdict:
    return runner.run(check(buckets, now_us=at))


def test_a_new_bucket_starts_full_and_refuses_the_request_after_burst(runner: SyncRunner) -> None:
    bucket = Bucket("t", burst=5, per_second=2)
    verdicts = [take(runner, bucket, at=T0) for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert [v.remaining for v in verdicts] == [4, 3, 2, 1, 0, 0]
    assert all(v.limit == 5 for v in verdicts)
    # Empty at 2 tokens/s: full again in 2.5 s (rounded up to 3), the next token in 0.5 s (Retry-After 1).
    refused = verdicts[-1]
    assert (refused.reset_s, refused.retry_after_s, refused.bucket) == (3, 1, "t")
    assert verdicts[0].retry_after_s == 0 and verdicts[0].reset_s == 1  # one token short: full in 0.5 s


def test_tokens_come_back_at_per_second_and_never_pass_burst(runner: SyncRunner) -> None:
    bucket = Bucket("t", burst=5, per_second=2)
    for _ in range(5):
        take(runner, bucket, at=T0)
    assert take(runner, bucket, at=T0 + S // 4).allowed is False  # half a token
    after = take(runner, bucket, at=T0 + 3 * S // 2)  # 3 tokens back, one taken
    assert after.allowed and after.remaining == 2
    assert take(runner, bucket, at=T0 + 3600 * S).remaining == 4  # an hour later: full (5), one taken


def test_a_slow_bucket_reports_a_long_retry_after(runner: SyncRunner) -> None:
    bucket = Bucket("slow", burst=1, per_second=0.1)
    assert take(runner, bucket, at=T0).allowed
    refused = take(runner, bucket, at=T0 + S)  # 0.1 token back, 0.9 missing at 0.1/s: 9 s
    assert not refused.allowed and refused.retry_after_s == 9 and refused.reset_s == 9


def test_several_buckets_pass_only_together_and_a_refusal_takes_nothing(runner: SyncRunner, redis_client) -> None:
    key, project = Bucket("key:a", burst=10, per_second=1), Bucket("project:p", burst=2, per_second=1)
    assert take(runner, key, project, at=T0).allowed
    second = take(runner, key, project, at=T0)
    assert second.allowed and second.bucket == "project:p" and second.remaining == 0  # the tighter bucket speaks
    third = take(runner, key, project, at=T0)
    assert not third.allowed and third.bucket == "project:p" and third.limit == 2
    # The key's bucket lost nothing to the refused request: 8 left, so 7 after the next one.
    assert take(runner, key, at=T0).remaining == 7
    assert float(redis_client.hget(keys.key("ratelimit", bucket="project:p"), "tokens")) == 0


def test_a_bucket_key_expires_when_it_would_be_full_again(runner: SyncRunner, redis_client) -> None:
    take(runner, Bucket("t", burst=10, per_second=4), at=T0)  # one token missing at 4/s: full in 250 ms
    ttl_ms = redis_client.pttl(keys.key("ratelimit", bucket="t"))
    assert 200 <= ttl_ms <= 251
    take(runner, Bucket("refused", burst=1, per_second=1), at=T0)
    take(runner, Bucket("refused", burst=1, per_second=1), at=T0)
    assert 0 < redis_client.pttl(keys.key("ratelimit", bucket="refused")) <= 1001


def test_a_clock_that_steps_back_refills_nothing(runner: SyncRunner) -> None:
    bucket = Bucket("t", burst=2, per_second=1)
    take(runner, bucket, at=T0)
    take(runner, bucket, at=T0)
    assert not take(runner, bucket, at=T0 - 10 * S).allowed  # another replica's Redis clock, 10 s behind
    assert not take(runner, bucket, at=T0 + S // 2).allowed  # no refill until time passes T0 again
    assert take(runner, bucket, at=T0 + S).allowed


def test_the_redis_server_clock_is_used_by_default(runner: SyncRunner) -> None:
    bucket = Bucket("server-clock", burst=3, per_second=0.001)
    verdicts = [runner.run(check([bucket])) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].retry_after_s > 900  # a token every 1,000 s


def test_exactly_burst_of_many_racing_callers_on_two_clients_pass(redis_client, redis_url: str) -> None:
    # Given two API replicas (two clients, two auto-pipelines) and one bucket of 20
    bucket = Bucket("race", burst=20, per_second=0.01)

    async def go() -> list[Verdict]:
        clients = [async_client(redis_url), async_client(redis_url)]
        runners = [AsyncRunner(c) for c in clients]
        try:
            # When 100 requests hit it at once, half on each replica
            return await asyncio.wait_for(asyncio.gather(
                *(runners[i % 2].run(check([bucket])) for i in range(100))), timeout=10)
        finally:
            for c in clients:
                await c.aclose()

    verdicts = asyncio.run(go())
    # Then exactly 20 pass, and each remaining count is handed out once
    passed = [v for v in verdicts if v.allowed]
    assert len(passed) == 20
    assert sorted(v.remaining for v in passed) == list(range(20))

