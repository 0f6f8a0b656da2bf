"""Rate limiting over real HTTP: two `taskyard serve` replicas on one Redis give a burst of concurrent requests
exactly `burst` successes between them, and every limited answer carries the headers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.conftest import Cluster

BURST = 20  # tokens in the key's bucket
REQUESTS = 50  # concurrent requests, more than BURST


def test_the_rate_limiter_gives_exactly_burst_successes_to_a_burst_of_concurrent_requests(
        cluster: Cluster, redis_url: str) -> None:
    # Given two replicas sharing one Redis and a key whose bucket holds 20 and refills once every 100 s
    cluster.config(f"""
redis_url: {redis_url}
api_keys:
  - {{key: k, rate_limit: {{burst: {BURST}, per_second: 0.01}}}}
""")
    replicas = [cluster.serve("--no-workers", headers={"X-API-Key": "k"}) for _ in range(2)]
    clients = [httpx.Client(base_url=str(r.base_url), headers={"X-API-Key": "k"}, timeout=10)
               for r in replicas for _ in range(REQUESTS // 2)]
    start = threading.Barrier(REQUESTS)

    def one(client: httpx.Client) -> httpx.Response:
        start.wait(timeout=10)
        return client.get("/tasks")

    # When 50 requests are sent at the same moment, half to each replica
    try:
        with ThreadPoolExecutor(REQUESTS) as pool:
            answers = list(pool.map(one, clients))
    finally:
        for c in clients:
            c.close()

    # Then exactly 20 pass; the rest are 429 with Retry-After; every answer carries the rate-limit headers
    codes = [a.status_code for a in answers]
    assert codes.count(200) == BURST and codes.count(429) == REQUESTS - BURST
    assert sorted(int(a.headers["X-RateLimit-Remaining"]) for a in answers if a.status_code == 200) == \
        list(range(BURST))
    refused = [a for a in answers if a.status_code == 429]
    assert all(a.json() == {"error": "rate limit exceeded"} and int(a.headers["Retry-After"]) >= 1 for a in refused)
    assert all(a.headers["X-RateLimit-Limit"] == str(BURST) and "X-RateLimit-Reset" in a.headers for a in answers)
    # Open paths stay open.
    assert all(r.get("/health").status_code == 200 for r in replicas)
