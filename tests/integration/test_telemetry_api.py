"""MeshAI-shaped telemetry on the real app and a real Redis: heartbeats and agent health, usage records priced
from the table or as given, partial batch acceptance, usage summaries with windows, scopes and projects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from config.loader import load_settings
from engine import keys
from engine.usage import UsageRecord

ADMIN, INGEST, READ, OTHER = "k-admin", "k-ingest", "k-read", "k-other"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms

CONFIG = """
api_keys:
  - {key: k-admin, project: p1}
  - {key: k-ingest, project: p1, scopes: [ingest]}
  - {key: k-read, project: p1, scopes: [read]}
  - {key: k-other, project: p2}
pricing:
  - {model: house-model, input_per_million: 1, output_per_million: 2, effective: 2025-01-01}
"""


class FakeClock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(T0)
    monkeypatch.setattr("engine.telemetry.now_ms", fake)  # the service's clock, read when the app starts
    return fake


@pytest.fixture()
def client(tmp_path: Path, redis_client: redis.Redis, redis_url: str, clock: FakeClock) -> Iterator[TestClient]:
    path = tmp_path / "taskyard.yaml"
    path.write_text(CONFIG)
    with TestClient(app=create_app(load_settings(path, env={}), redis_url=redis_url)) as c:
        yield c


def key(k: str = ADMIN) -> dict[str, str]:
    return {"X-API-Key": k}


def usage_count(redis_client: redis.Redis, project: str = "p1") -> int:
    return int(redis_client.xlen(keys.key("usage", project=project)))


def test_heartbeat_round_trip_and_agent_listing(client: TestClient) -> None:
    response = client.post("/heartbeat", json={"agent_id": "planner"}, headers=key(INGEST))
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"agent_id": "planner", "status": "healthy",
                                                         "last_heartbeat": "2026-01-01T00:00:00.000Z"}}
    agents = client.get("/api/agents", headers=key(READ)).json()
    assert agents == [{"agent_id": "planner", "status": "healthy", "last_heartbeat": "2026-01-01T00:00:00.000Z",
                       "age_seconds": 0.0}]
    never = client.get("/api/agents/ghost", headers=key(READ)).json()
    assert never["status"] == "unknown" and never["last_heartbeat"] is None


def test_agent_health_follows_heartbeat_age(client: TestClient, clock: FakeClock) -> None:
    # Given three agents whose last heartbeats are 6 min, 3 min and 0 min old
    for agent, at in (("old", T0 - 360_000), ("slow", T0 - 180_000), ("fresh", T0)):
        clock.now = at
        assert client.post("/heartbeat", json={"agent_id": agent}, headers=key()).status_code == 200
    clock.now = T0
    # Then they list newest first, down / degraded / healthy, and filter by status
    listed = client.get("/api/agents", headers=key()).json()
    assert [(a["agent_id"], a["status"]) for a in listed] == [("fresh", "healthy"), ("slow", "degraded"),
                                                              ("old", "down")]
    assert [a["agent_id"] for a in client.get("/api/agents?status=degraded", headers=key()).json()] == ["slow"]
    bad = client.get("/api/agents?status=sleepy", headers=key())
    assert bad.status_code == 400 and bad.json()["error"].startswith("invalid status")


def test_usage_is_priced_from_the_table_unless_a_cost_is_given(client: TestClient) -> None:
    priced = client.post("/telemetry/usage", headers=key(INGEST), json={
        "agent_id": "coder", "model": "gpt-4o-2024-08-06", "input_tokens": 1_000_000, "output_tokens": 100_000,
        "trace_id": "t1", "worker": "w1", "timestamp": "2026-01-01T00:00:00Z"})
    assert priced.status_code == 201
    data = priced.json()["data"]
    assert data["cost_usd"] == pytest.approx(2.5 + 1.0) and data["priced"] is True
    assert (data["agent_id"], data["model"], data["worker"], data["trace_id"]) == ("coder", "gpt-4o-2024-08-06",
                                                                                  "w1", "t1")
    assert data["tokens_in"] == 1_000_000 and data["tokens_out"] == 100_000 and data["id"]

    given = client.post("/telemetry/usage", headers=key(INGEST), json={
        "agent_id": "coder", "model": "gpt-4o", "tokens_in": 10, "tokens_out": 5, "cost_usd": 0.25}).json()["data"]
    assert given["cost_usd"] == 0.25 and given["priced"] is True

    override = client.post("/telemetry/usage", headers=key(INGEST), json={
        "agent_id": "coder", "model": "house-model-v2", "input_tokens": 1_000_000, "output_tokens": 1_000_000})
    assert override.json()["data"]["cost_usd"] == 3.0  # the config's pricing entry, by prefix

    unknown = client.post("/telemetry/usage", headers=key(INGEST), json={
        "agent_id": "coder", "model": "mystery-llm", "input_tokens": 500, "output_tokens": 50}).json()["data"]
    assert unknown["cost_usd"] == 0.0 and unknown["priced"] is False

    summary = client.get("/api/usage?group_by=model", headers=key(READ)).json()
    mystery = next(g for g in summary["groups"] if g["model"] == "mystery-llm")
    assert mystery == {"model": "mystery-llm", "count": 1, "unpriced": 1, "tokens_in": 500, "tokens_out": 50,
                       "cost_usd": 0.0}
    assert summary["totals"]["count"] == 4 and summary["totals"]["unpriced"] == 1
    assert summary["totals"]["cost_usd"] == pytest.approx(3.5 + 0.25 + 3.0)


def test_usage_is_stored_in_the_shared_stream_format(client: TestClient, redis_client: redis.Redis,
                                                     clock: FakeClock) -> None:
    client.post("/telemetry/usage", headers=key(INGEST), json={
        "agent_id": "a", "model": "gemini-1.5-flash", "input_tokens": 1, "output_tokens": 0})
    entries: Any = redis_client.xrange(keys.key("usage", project="p1"))
    ((_, fields),) = entries
    assert fields == {"agent": "a", "model": "gemini-1.5-flash", "worker": "", "trace_id": "", "tokens_in": "1",
                      "tokens_out": "0", "cost_usd": "0.000000075", "priced": "1", "at": str(clock.now)}
    assert list(fields) == ["agent", "model", "worker", "trace_id", "tokens_in", "tokens_out", "cost_usd", "priced",
                            "at"]


def test_a_batch_keeps_valid_items_and_names_the_rejected_ones(client: TestClient,
                                                               redis_client: redis.Redis) -> None:
    items = [
        {"agent_id": "a", "model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 10},
        {"agent_id": "a", "model": "gpt-4o-mini"},
        {"agent_id": "b", "model": "claude-3-5-haiku-20241022", "tokens_in": 7, "tokens_out": 3, "cost_usd": 1},
        "not an object",
        {"agent_id": "c", "model": "o3", "input_tokens": -1, "output_tokens": 0},
    ]
    response = client.post("/telemetry/usages", json={"usages": items}, headers=key(INGEST))
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"index": 1, "reason": "input_tokens is required"},
        {"index": 3, "reason": "expected a JSON object"},
        {"index": 4, "reason": "input_tokens must be a whole number from 0 to 1,000,000,000"},
    ]
    assert [r["agent_id"] for r in body["records"]] == ["a", "b"]
    assert usage_count(redis_client) == 2


def test_a_batch_over_100_items_is_refused_whole(client: TestClient, redis_client: redis.Redis) -> None:
    item = {"agent_id": "a", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1}
    response = client.post("/telemetry/usages", json={"usages": [item] * 101}, headers=key(INGEST))
    assert response.status_code == 400
    assert response.json() == {"error": "invalid request body",
                               "detail": "at most 100 usages per request (got 101)"}
    assert client.post("/telemetry/usages", json={"usages": [item] * 100}, headers=key()).json()["accepted"] == 100
    assert usage_count(redis_client) == 100


@pytest.mark.parametrize(("body", "error"), [
    ({"model": "gpt-4o", "input_tokens": 1, "output_tokens": 1}, "agent_id is required"),
    ({"agent_id": "a", "input_tokens": 1, "output_tokens": 1}, "model is required"),
    ({"agent_id": "a", "model": "gpt-4o", "output_tokens": 1}, "input_tokens is required"),
    ({"agent_id": "a", "model": "gpt-4o", "input_tokens": 1}, "output_tokens is required"),
    ({"agent_id": "a", "model": "gpt-4o", "input_tokens": 1, "tokens_in": 1, "output_tokens": 1},
     "give input_tokens or tokens_in, not both"),
    ({"agent_id": "a", "model": "gpt-4o", "input_tokens": True, "output_tokens": 1},
     "input_tokens must be a whole number from 0 to 1,000,000,000"),
    ({"agent_id": "a", "model": "gpt-4o", "input_tokens": 1.5, "output_tokens": 1},
     "input_tokens must be a whole number from 0 to 1,000,000,000"),
    ({"agent_id": "a", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "cost_usd": -0.5},
     "cost_usd must be a number from 0 to 1e+06"),
    ({"agent_id": "a", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "cost_usd": "0.5"},
     "cost_usd must be a number from 0 to 1e+06"),
    ({"agent_id": "a", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "timestamp": "yesterday"},
     "timestamp must be epoch milliseconds or an RFC 3339 time"),
    ({"agent_id": "a" * 201, "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1},
     "agent_id must be at most 200 characters"),
    ({"agent_id": "a\nb", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1},
     "agent_id must be a non-blank string without control characters"),
    ({"agent_id": 7, "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1},
     "agent_id must be a non-blank string without control characters"),
    (["a list"], "expected a JSON object"),
])
def test_bad_usage_bodies_are_400_and_store_nothing(client: TestClient, redis_client: redis.Redis, body: object,
                                                   error: str) -> None:
    response = client.post("/telemetry/usage", json=body, headers=key(INGEST))
    assert response.status_code == 400
    assert response.json() == {"error": "invalid request body", "detail": error}
    assert usage_count(redis_client) == 0


def test_bad_heartbeats_and_batches_are_400(client: TestClient, redis_client: redis.Redis) -> None:
    cases: list[tuple[Any, str]] = [({}, "agent_id is required"), ({"agent_id": ""}, "agent_id is required"),
                                     ([1], "expected a JSON object")]
    for body, error in cases:
        response = client.post("/heartbeat", json=body, headers=key(INGEST))
        assert response.status_code == 400 and response.json() == {"error": "invalid request body", "detail": error}
    not_json = client.post("/heartbeat", content=b"{nope", headers=key(INGEST))
    assert not_json.status_code == 400 and not_json.json() == {"error": "invalid request body"}
    batches: list[Any] = [{"usages": {"a": 1}}, {}, [1, 2]]
    for body in batches:
        response = client.post("/telemetry/usages", json=body, headers=key(INGEST))
        assert response.json() == {"error": "invalid request body", "detail": "usages must be a list"}
    assert redis_client.exists(keys.key("agents", project="p1")) == 0
    assert usage_count(redis_client) == 0


def seed(redis_client: redis.Redis, project: str, *rows: tuple[int, str, str, str, int, int, float]) -> None:
    """Usage entries at fixed stream times: (ms, agent, model, worker, tokens_in, tokens_out, cost)."""
    for ms, agent, model, worker, tin, tout, cost in rows:
        record = UsageRecord(agent=agent, model=model, worker=worker, tokens_in=tin, tokens_out=tout, cost_usd=cost,
                             priced=True, at_ms=ms)
        redis_client.execute_command("XADD", keys.key("usage", project=project), f"{ms}-0", *record.fields())


def test_usage_summary_groups_by_agent_model_or_worker_with_totals(client: TestClient,
                                                                   redis_client: redis.Redis) -> None:
    seed(redis_client, "p1",
         (T0, "a", "gpt-4o", "w1", 100, 10, 0.5),
         (T0 + 1, "a", "o3", "w2", 200, 20, 0.25),
         (T0 + 2, "b", "gpt-4o", "", 300, 30, 1.0))
    by_agent = client.get("/api/usage", headers=key(READ)).json()  # agent is the default grouping
    assert by_agent["group_by"] == "agent"
    assert by_agent["groups"] == [
        {"agent": "b", "count": 1, "unpriced": 0, "tokens_in": 300, "tokens_out": 30, "cost_usd": 1.0},
        {"agent": "a", "count": 2, "unpriced": 0, "tokens_in": 300, "tokens_out": 30, "cost_usd": 0.75},
    ]
    assert by_agent["totals"] == {"count": 3, "unpriced": 0, "tokens_in": 600, "tokens_out": 60, "cost_usd": 1.75}
    assert by_agent["scanned"] == 3 and by_agent["truncated"] is False
    by_model = client.get("/api/usage?group_by=model", headers=key(READ)).json()
    assert {g["model"]: g["count"] for g in by_model["groups"]} == {"gpt-4o": 2, "o3": 1}
    by_worker = client.get("/api/usage?group_by=worker", headers=key(READ)).json()
    assert {g["worker"]: g["tokens_in"] for g in by_worker["groups"]} == {"w1": 100, "w2": 200, None: 300}
    bad = client.get("/api/usage?group_by=team", headers=key(READ))
    assert bad.status_code == 400 and bad.json() == {"error": "invalid group_by: must be one of agent, model, worker"}


def test_usage_summary_windows_are_from_inclusive_to_exclusive(client: TestClient,
                                                               redis_client: redis.Redis) -> None:
    hour = 3_600_000
    seed(redis_client, "p1",
         (T0 - 1, "early", "m", "", 1, 0, 0.0),
         (T0, "a", "m", "", 10, 0, 0.0),
         (T0 + hour - 1, "a", "m", "", 100, 0, 0.0),
         (T0 + hour, "late", "m", "", 1000, 0, 0.0))

    def window(query: str) -> dict[str, int]:
        body = client.get(f"/api/usage?{query}", headers=key(READ)).json()
        return {g["agent"]: g["tokens_in"] for g in body["groups"]}

    assert window(f"from={T0}&to={T0 + hour}") == {"a": 110}
    assert window("from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z") == {"a": 110}
    assert window("from=2026-01-01T01:00:00%2B01:00&to=2026-01-01T00:00:00.001Z") == {"a": 10}
    assert window(f"from={T0}") == {"a": 110, "late": 1000}
    assert window(f"to={T0}") == {"early": 1}
    body = client.get(f"/api/usage?from={T0}&to={T0 + hour}", headers=key(READ)).json()
    assert (body["from"], body["to"]) == ("2026-01-01T00:00:00.000Z", "2026-01-01T01:00:00.000Z")
    for query, error in (("from=soon", "invalid from: epoch milliseconds or an RFC 3339 time"),
                         ("to=1e9", "invalid to: epoch milliseconds or an RFC 3339 time"),
                         (f"from={T0}&to={T0}", "invalid range: from must be before to")):
        response = client.get(f"/api/usage?{query}", headers=key(READ))
        assert response.status_code == 400 and response.json() == {"error": error}


def test_the_project_comes_from_the_key_never_the_body(client: TestClient, redis_client: redis.Redis) -> None:
    client.post("/telemetry/usage", headers=key(INGEST), json={
        "agent_id": "a", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "project": "p2"})
    client.post("/heartbeat", headers=key(INGEST), json={"agent_id": "a", "project": "p2"})
    assert usage_count(redis_client, "p1") == 1 and usage_count(redis_client, "p2") == 0
    assert client.get("/api/usage", headers=key(OTHER)).json()["totals"]["count"] == 0
    assert client.get("/api/agents", headers=key(OTHER)).json() == []
    assert [a["agent_id"] for a in client.get("/api/agents", headers=key(READ)).json()] == ["a"]


def test_ingest_routes_need_ingest_and_reads_need_read(client: TestClient) -> None:
    item = {"agent_id": "a", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1}
    assert client.post("/heartbeat", json={"agent_id": "a"}, headers=key(READ)).status_code == 403
    assert client.post("/telemetry/usage", json=item, headers=key(READ)).status_code == 403
    assert client.post("/telemetry/usages", json={"usages": [item]}, headers=key(READ)).status_code == 403
    assert client.get("/api/agents", headers=key(INGEST)).status_code == 403
    assert client.get("/api/agents/a", headers=key(INGEST)).status_code == 403
    assert client.get("/api/usage", headers=key(INGEST)).status_code == 403
    assert client.get("/api/usage").status_code == 401


def test_huge_numbers_and_odd_names_are_refused_item_by_item(client: TestClient, redis_client: redis.Redis) -> None:
    good = {"agent_id": "a", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1}
    for bad in ({**good, "cost_usd": 10**400}, {**good, "timestamp": 10**400}, {**good, "agent_id": "a\u0085b"}):
        assert client.post("/telemetry/usage", json=bad, headers=key(INGEST)).status_code == 400
    batch = client.post("/telemetry/usages", json={"usages": [good, {**good, "cost_usd": 10**400}]},
                        headers=key(INGEST)).json()
    assert batch["accepted"] == 1 and [r["index"] for r in batch["rejected"]] == [1]
    assert usage_count(redis_client) == 1


def test_a_window_from_before_1970_starts_at_the_beginning(client: TestClient) -> None:
    client.post("/telemetry/usage", json={"agent_id": "a", "model": "m", "input_tokens": 5, "output_tokens": 0},
                headers=key(INGEST))
    answer = client.get("/api/usage", params={"group_by": "agent", "from": "1960-01-01T00:00:00Z"}, headers=key())
    assert answer.status_code == 200 and answer.json()["totals"]["tokens_in"] == 5


def test_down_agents_are_listed_even_behind_a_thousand_fresh_ones(client: TestClient, redis_client: redis.Redis,
                                                                  clock: FakeClock) -> None:
    zset = keys.key("agents", project="p1")
    redis_client.zadd(zset, {"old-one": T0 - 10 * 60_000})
    redis_client.zadd(zset, {f"fresh-{i}": T0 - 1000 for i in range(1001)})
    down = client.get("/api/agents", params={"status": "down"}, headers=key()).json()
    assert [a["agent_id"] for a in down] == ["old-one"]
    healthy = client.get("/api/agents", params={"status": "healthy"}, headers=key()).json()
    assert len(healthy) == 1000 and all(a["status"] == "healthy" for a in healthy)
