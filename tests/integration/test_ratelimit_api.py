"""Rate limiting through the real app on a real Redis: headers on every response of a limited request, 429 with
Retry-After, per-key, per-project and per-source buckets, refill, exactness across two app instances, off by
default, and fail-open when Redis is down."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient, TestClient

from api.app import create_app
from config.loader import load_settings

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
SLOW = "per_second: 0.01"  # a token every 100 s: no refill within a test

CONFIG = f"""
rate_limit: {{burst: 5, {SLOW}}}
project_rate_limits: {{team: {{burst: 3, {SLOW}}}}}
api_keys:
  - {{key: k-default}}
  - {{key: k-own, rate_limit: {{burst: 2, {SLOW}}}}}
  - {{key: k-team-1, project: team}}
  - {{key: k-team-2, project: team}}
sources:
  alerts: {{secret: s3cret, signature_header: X-Signature, delivery_header: X-Delivery,
           rate_limit: {{burst: 2, {SLOW}}}}}
  plain: {{}}
"""


def app_for(tmp_path: Path, text: str, redis_url: str):  # noqa: ANN201 - the ASGI app
    path = tmp_path / "taskyard.yaml"
    path.write_text(text)
    return create_app(load_settings(path, env={}), redis_url=redis_url)


@pytest.fixture()
def client(tmp_path: Path, redis_client, redis_url: str) -> Iterator[TestClient]:
    with TestClient(app=app_for(tmp_path, CONFIG, redis_url)) as c:
        yield c


def key(k: str) -> dict[str, str]:
    return {"X-API-Key": k}


def limits(response) -> tuple[int, int, int]:  # noqa: ANN001
    return tuple(int(response.headers[h]) for h in HEADERS)  # type: ignore[return-value]


def test_every_response_of_a_limited_key_carries_the_headers_then_429_with_retry_after(client: TestClient) -> None:
    ok = client.get("/tasks", headers=key("k-default"))
    assert ok.status_code == 200 and limits(ok)[:2] == (5, 4) and limits(ok)[2] >= 1
    missing = client.get("/task/" + "a" * 32, headers=key("k-default"))  # an error answer is counted and marked
    assert missing.status_code == 404 and limits(missing)[:2] == (5, 3)
    for remaining in (2, 1, 0):
        assert limits(client.get("/tasks", headers=key("k-default")))[1] == remaining
    refused = client.get("/tasks", headers=key("k-default"))
    assert refused.status_code == 429 and refused.json() == {"error": "rate limit exceeded"}
    assert int(refused.headers["Retry-After"]) >= 1 and limits(refused)[:2] == (5, 0)
    # Open paths are never limited and carry no rate-limit headers.
    for path in ("/health", "/metrics"):
        open_answer = client.get(path)
        assert open_answer.status_code == 200 and "X-RateLimit-Limit" not in open_answer.headers
    # Unauthenticated requests are refused by auth first, never counted.
    assert client.get("/tasks").status_code == 401


def test_a_key_limit_overrides_the_global_one_and_keys_do_not_share(client: TestClient) -> None:
    assert [client.get("/tasks", headers=key("k-own")).status_code for _ in range(3)] == [200, 200, 429]
    assert limits(client.get("/tasks", headers=key("k-default")))[:2] == (5, 4)


def test_keys_of_a_project_share_the_project_bucket(client: TestClient) -> None:
    assert client.get("/tasks", headers=key("k-team-1")).status_code == 200
    assert client.get("/tasks", headers=key("k-team-1")).status_code == 200
    third = client.get("/tasks", headers=key("k-team-2"))
    assert third.status_code == 200 and limits(third)[:2] == (3, 0)  # the project's bucket binds, not the key's
    assert client.get("/tasks", headers=key("k-team-2")).status_code == 429
    assert client.get("/tasks", headers=key("k-default")).status_code == 200  # another project


def test_signed_webhook_deliveries_are_limited_by_their_source(client: TestClient) -> None:
    def deliver(n: int, secret: str = "s3cret"):  # noqa: ANN202
        body = b'{"n": %d}' % n
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return client.post("/webhook/alerts", content=body, headers={"X-Signature": signature,
                                                                     "X-Delivery": f"d-{n}"})

    first = deliver(1)
    assert first.status_code == 202 and limits(first)[:2] == (2, 1)
    forged = deliver(2, secret="wrong")  # a bad signature still costs its source a token
    assert forged.status_code == 401 and limits(forged)[:2] == (2, 0)
    refused = deliver(3)
    assert refused.status_code == 429 and refused.json() == {"error": "rate limit exceeded"}
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(client.get("/events", headers=key("k-default")).json()) == 1  # the refused one never got in
    # A source without its own limit, posted to with a key, counts against that key only.
    plain = client.post("/webhook/plain", content=b"{}", headers=key("k-default"))
    assert plain.status_code == 202 and limits(plain)[:2] == (5, 3)


def test_tokens_come_back_after_time(tmp_path: Path, redis_client, redis_url: str) -> None:
    app = app_for(tmp_path, "api_key: k\nrate_limit: {burst: 1, per_second: 10}\n", redis_url)
    with TestClient(app=app) as client:
        assert client.get("/tasks", headers=key("k")).status_code == 200
        refused = client.get("/tasks", headers=key("k"))
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        deadline = time.monotonic() + 5
        while (answer := client.get("/tasks", headers=key("k"))).status_code == 429:
            assert time.monotonic() < deadline, "no token came back within 5 s at 10 tokens/s"
            time.sleep(0.02)
        assert answer.status_code == 200 and limits(answer)[:2] == (1, 0)


def test_exactly_burst_of_a_concurrent_burst_passes_across_two_app_instances(tmp_path: Path, redis_client,
                                                                              redis_url: str) -> None:
    # Given two app instances (two replicas) on one Redis, one key with a burst of 20
    text = f"api_keys: [{{key: k, rate_limit: {{burst: 20, {SLOW}}}}}]\n"
    apps = [app_for(tmp_path, text, redis_url), app_for(tmp_path, text, redis_url)]

    async def go() -> list[int]:
        async with AsyncTestClient(app=apps[0]) as one, AsyncTestClient(app=apps[1]) as two:
            # When 50 requests arrive at once, spread over both
            answers = await asyncio.gather(*((one, two)[i % 2].get("/tasks", headers=key("k")) for i in range(50)))
        return [a.status_code for a in answers]

    codes = asyncio.run(go())
    # Then exactly 20 pass and 30 are refused
    assert codes.count(200) == 20 and codes.count(429) == 30


def test_no_limit_is_applied_unless_configured(tmp_path: Path, redis_client, redis_url: str) -> None:
    with TestClient(app=app_for(tmp_path, "api_key: k\n", redis_url)) as client:
        answers = [client.get("/tasks", headers=key("k")) for _ in range(30)]
    assert all(a.status_code == 200 and "X-RateLimit-Limit" not in a.headers for a in answers)


def test_without_keys_every_request_shares_one_bucket(tmp_path: Path, redis_client, redis_url: str) -> None:
    with TestClient(app=app_for(tmp_path, f"rate_limit: {{burst: 2, {SLOW}}}\n", redis_url)) as client:
        assert [client.get("/tasks").status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/health").status_code == 200


def test_requests_go_through_unlimited_when_redis_is_down(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"  # nothing listens there
    app = app_for(tmp_path, f"api_key: k\nrate_limit: {{burst: 1, {SLOW}}}\n", dead)
    with caplog.at_level(logging.WARNING, logger="taskyard.api"), TestClient(app=app) as client:
        answers = [client.get("/tasks", headers=key("k")) for _ in range(2)]
    # The endpoint itself answers 503; the limiter neither refuses nor marks the request.
    assert [a.status_code for a in answers] == [503, 503]
    assert all("X-RateLimit-Limit" not in a.headers for a in answers)
    assert any(r.getMessage() == "rate limit not checked: store unavailable" for r in caplog.records)


def test_requests_without_a_key_spend_nobody_elses_tokens(tmp_path: Path, redis_client, redis_url: str) -> None:
    text = f"""
rate_limit: {{burst: 100, {SLOW}}}
project_rate_limits: {{default: {{burst: 3, {SLOW}}}}}
api_keys: [{{key: k-a}}]
sources:
  plain: {{rate_limit: {{burst: 2, {SLOW}}}}}
"""
    with TestClient(app=app_for(tmp_path, text, redis_url)) as c:
        forged = "/artifacts/" + "0" * 32 + "/content?expires=1&signature=" + "0" * 64
        for _ in range(5):
            assert c.get(forged).status_code == 403  # a signed-URL path: no key, no bucket
            assert c.post("/webhook/plain", content=b"{}").status_code == 401  # unsigned source, no key
        assert c.get("/tasks", headers=key("k-a")).status_code == 200
        assert limits(c.get("/tasks", headers=key("k-a")))[1] == 1  # the project's 3 tokens, only 2 spent
        assert c.post("/webhook/plain", content=b"{}", headers=key("k-a")).status_code == 202


def test_without_keys_webhooks_share_the_one_bucket_too(tmp_path: Path, redis_client, redis_url: str) -> None:
    text = f"rate_limit: {{burst: 2, {SLOW}}}\nsources:\n  plain: {{}}\n"
    with TestClient(app=app_for(tmp_path, text, redis_url)) as c:
        codes = [c.post("/webhook/plain", content=b"{}").status_code for _ in range(3)]
        assert codes == [202, 202, 429]
        assert c.get("/tasks").status_code == 429
