"""The trace endpoints of the real app on a real Redis: create, batched partial ingest with dedupe and seq rules,
reads, session listing, tokens and cost, project scoping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.answers import reason
from tests.integration.conftest import app_client

pytestmark = pytest.mark.integration

CONFIG = """
api_keys:
  - {key: k-admin}
  - {key: k-other, project: other}
  - {key: k-reader, scopes: [read]}
traces: {max_batch: 50, max_event_bytes: 2000}
pricing:
  - {model: test-model, input_per_million: 1.0, output_per_million: 2.0, effective: 2026-01-01}
"""
ADMIN = {"X-API-Key": "k-admin"}
OTHER = {"X-API-Key": "k-other"}


@pytest.fixture()
def client(tmp_path: Path, redis_client: Any, redis_url: str) -> Iterator[TestClient]:
    with app_client(tmp_path, CONFIG, redis_url) as c:
        yield c


def new_trace(client: TestClient, **body: Any) -> dict[str, Any]:
    answer = client.post("/api/traces", json={"name": "run", **body}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()


def events(client: TestClient, trace_id: str, **params: Any) -> list[dict[str, Any]]:
    answer = client.get(f"/api/traces/{trace_id}/events", params=params, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_create_then_get_and_retry_is_harmless(client: TestClient) -> None:
    trace = new_trace(client, id="run-1", agent="planner", metadata={"branch": "main"}, tags=["nightly"])
    assert trace["id"] == "run-1" and trace["status"] == "running" and trace["event_count"] == 0
    assert trace["agent"] == "planner" and trace["metadata"] == {"branch": "main"} and trace["tags"] == ["nightly"]
    again = client.post("/api/traces", json={"id": "run-1", "name": "run"}, headers=ADMIN)
    assert again.status_code == 200 and again.json()["created_at"] == trace["created_at"]
    taken = client.post("/api/traces", json={"id": "run-1", "name": "x"}, headers=OTHER)
    assert taken.status_code == 409 and taken.json() == {"error": "trace id in use"}
    assert client.get("/api/traces/run-1", headers=OTHER).json() == {"error": "trace not found"}
    generated = new_trace(client)
    assert len(generated["id"]) == 32


@pytest.mark.parametrize("body,message", [
    ({}, "name is required"),
    ({"name": ""}, "name is required"),
    ({"name": "x", "id": "has space"}, "invalid id"),
    ({"name": "x", "agent": "a b"}, "invalid agent"),
    ({"name": "x", "tags": "nightly"}, "invalid tags"),
    ({"name": "x", "metadata": [1]}, "invalid metadata"),
    ({"name": "x", "project": "other"}, "invalid request body: unknown field 'project'"),
])
def test_create_refuses_bad_bodies(client: TestClient, body: dict[str, Any], message: str) -> None:
    answer = client.post("/api/traces", json=body, headers=ADMIN)
    assert answer.status_code == 400 and reason(answer).startswith(message)
    assert client.get("/api/sessions", headers=ADMIN).json() == []


def test_a_batch_with_one_bad_event_accepts_the_others(client: TestClient) -> None:
    trace = new_trace(client)
    batch = {"events": [
        {"seq": 1, "type": "llm_call", "idempotency_key": "a", "payload": {"model": "test-model"}},
        {"seq": 2, "type": "NOT A TYPE", "idempotency_key": "b"},
        {"seq": 3, "type": "tool_call", "idempotency_key": "c", "payload": {"tool": "grep"}},
        "not an object",
        {"seq": 4, "type": "tool_result", "payload": {"text": "x" * 5000}},
    ]}
    answer = client.post(f"/api/traces/{trace['id']}/events", json=batch, headers=ADMIN)
    assert answer.status_code == 200
    body = answer.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0 and body["last_seq"] == 3
    assert [(r["index"], r["idempotency_key"]) for r in body["rejected"]] == [(1, "b"), (3, None), (4, None)]
    assert body["rejected"][0]["reason"].startswith("invalid type")
    assert body["rejected"][2]["reason"].startswith("event too large")
    stored = events(client, trace["id"])
    assert [(e["seq"], e["type"]) for e in stored] == [(1, "llm_call"), (3, "tool_call")]
    assert stored[1]["payload"] == {"tool": "grep"} and stored[1]["idempotency_key"] == "c"


def test_duplicates_conflicts_and_stale_seqs(client: TestClient) -> None:
    trace_id = new_trace(client)["id"]
    url = f"/api/traces/{trace_id}/events"
    first = [{"seq": s, "type": "step", "idempotency_key": f"k{s}"} for s in (1, 2, 5)]
    assert client.post(url, json=first, headers=ADMIN).json()["accepted"] == 3
    retry = client.post(url, json=first, headers=ADMIN).json()
    assert retry == {"accepted": 0, "duplicates": 3, "rejected": [], "last_seq": 5}
    mixed = client.post(url, json={"events": [
        {"seq": 2, "type": "step", "idempotency_key": "other"},  # seq 2 holds k2: conflict
        {"seq": 4, "type": "step", "idempotency_key": "late"},  # below the last stored seq, free: stale
        {"seq": 6, "type": "step", "idempotency_key": "k1"},  # known key: duplicate, whatever its seq
        {"seq": 7, "type": "step", "idempotency_key": "new"},
    ]}, headers=ADMIN).json()
    assert mixed["accepted"] == 1 and mixed["duplicates"] == 1 and mixed["last_seq"] == 7
    reasons = {r["index"]: r["reason"] for r in mixed["rejected"]}
    assert reasons == {0: "conflict: seq 2 already holds another event",
                       1: "seq must grow: the last stored seq is 5"}
    assert [e["seq"] for e in events(client, trace_id)] == [1, 2, 5, 7]


def test_a_shuffled_batch_is_stored_in_seq_order_and_seqless_events_follow(client: TestClient) -> None:
    trace_id = new_trace(client)["id"]
    url = f"/api/traces/{trace_id}/events"
    body = [{"type": "note", "payload": {"n": "a"}}, {"seq": 3, "type": "c"}, {"seq": 1, "type": "a"},
            {"type": "note", "payload": {"n": "b"}}, {"seq": 2, "type": "b"}]
    assert client.post(url, json=body, headers=ADMIN).json()["accepted"] == 5
    stored = events(client, trace_id)
    assert [(e["seq"], e["type"]) for e in stored] == [(1, "a"), (2, "b"), (3, "c"), (4, "note"), (5, "note")]
    assert [e["payload"].get("n") for e in stored[3:]] == ["a", "b"]
    # An identical resend of events with a seq but no key is a duplicate (content key), not an error.
    again = client.post(url, json=[{"seq": 3, "type": "c"}], headers=ADMIN).json()
    assert again["duplicates"] == 1 and again["rejected"] == []
    changed = client.post(url, json=[{"seq": 3, "type": "changed"}], headers=ADMIN).json()
    assert changed["rejected"][0]["reason"].startswith("conflict")
    # paging
    assert [e["seq"] for e in events(client, trace_id, after_seq=2, limit=2)] == [3, 4]


def test_one_event_alone_and_batch_limits(client: TestClient) -> None:
    trace_id = new_trace(client)["id"]
    url = f"/api/traces/{trace_id}/events"
    one = client.post(url, json={"type": "checkpoint", "timestamp": "2026-11-23T10:00:00+01:00"}, headers=ADMIN)
    assert one.json()["accepted"] == 1
    assert events(client, trace_id)[0]["timestamp"] == "2026-11-23T09:00:00.000Z"
    too_many = client.post(url, json=[{"type": "x"}] * 51, headers=ADMIN)
    assert too_many.status_code == 400 and too_many.json() == {"error": "too many events: at most 50 per batch"}
    assert client.post(url, content=b"{nope", headers=ADMIN).json() == {"error": "invalid request body"}
    assert client.post("/api/traces/unknown/events", json={"type": "x"}, headers=ADMIN).status_code == 404
    assert client.post(url, json={"type": "x"}, headers=OTHER).json() == {"error": "trace not found"}
    lone = client.post(url, content=b'[{"type": "x", "payload": {"t": "\\ud800"}}]', headers=ADMIN).json()
    assert lone["accepted"] == 0 and lone["rejected"][0]["reason"] == "event is not valid JSON text"
    assert client.get(f"/api/traces/{trace_id}", headers=ADMIN).json()["event_count"] == 1


def test_tokens_cost_and_session_end(client: TestClient) -> None:
    trace_id = new_trace(client, agent="coder")["id"]
    url = f"/api/traces/{trace_id}/events"
    client.post(url, json=[
        {"type": "llm_call", "payload": {"model": "test-model", "input_tokens": 1_000_000, "output_tokens": 500_000}},
        {"type": "llm_call", "payload": {"model": "mystery", "usage": {"prompt_tokens": 10, "completion_tokens": 5}}},
        {"type": "llm_call", "payload": {"model": "mystery", "cost_usd": 0.25, "tokens_in": 1}},
        {"type": "session_end", "payload": {"status": "crashed", "duration_ms": 1234}},
    ], headers=ADMIN)
    trace = client.get(f"/api/traces/{trace_id}", headers=ADMIN).json()
    assert trace["tokens_in"] == 1_000_011 and trace["tokens_out"] == 500_005
    assert trace["cost_usd"] == pytest.approx(2.25)  # 1.0 in + 1.0 out + 0.25 given; the unknown model costs 0
    assert trace["status"] == "crashed" and trace["duration_ms"] == 1234 and trace["ended_at"]
    bad = client.post(url, json={"type": "session_end", "payload": {"status": "exploded"}}, headers=ADMIN).json()
    assert bad["rejected"][0]["reason"].startswith("invalid session_end status")
    crashed = client.get("/api/sessions", params={"status": "crashed"}, headers=ADMIN).json()
    assert [t["id"] for t in crashed] == [trace_id]
    assert client.get("/api/sessions", params={"status": "running"}, headers=ADMIN).json() == []


def test_sessions_newest_first_with_filters_and_cursor(client: TestClient) -> None:
    ids = [new_trace(client, agent="a" if i % 2 else "b")["id"] for i in range(5)]
    listed = client.get("/api/sessions", headers=ADMIN)
    assert [t["id"] for t in listed.json()] == ids[::-1]
    page = client.get("/api/sessions", params={"limit": 2}, headers=ADMIN)
    assert [t["id"] for t in page.json()] == ids[:2:-1]
    rest = client.get("/api/sessions", params={"limit": 10, "cursor": page.headers["x-next-cursor"]}, headers=ADMIN)
    assert [t["id"] for t in rest.json()] == ids[2::-1]
    by_agent = client.get("/api/sessions", params={"agent": "a"}, headers=ADMIN).json()
    assert [t["id"] for t in by_agent] == [ids[3], ids[1]]
    client.post(f"/api/traces/{ids[1]}/events", json={"type": "session_end"}, headers=ADMIN)
    done = client.get("/api/sessions", params={"agent": "a", "status": "completed"}, headers=ADMIN).json()
    assert [(t["id"], t["status"]) for t in done] == [(ids[1], "completed")]
    assert client.get("/api/sessions", params={"status": "nope"}, headers=ADMIN).status_code == 400
    assert client.get("/api/sessions", headers=OTHER).json() == []


def test_scopes(client: TestClient) -> None:
    reader = {"X-API-Key": "k-reader"}
    assert client.post("/api/traces", json={"name": "x"}, headers=reader).status_code == 403
    assert client.get("/api/sessions", headers=reader).status_code == 200
    assert client.get("/api/sessions").status_code == 401


@pytest.mark.parametrize("raw,reason", [
    (b'[{"type": "x", "payload": {"v": NaN}}]', "event is not valid JSON text"),
    (b'[{"type": "session_end", "payload": {"status": ["failed"]}}]', "invalid session_end status"),
    (b'[{"type": "x", "timestamp": "9999-12-31T23:59:59-01:00"}]', "invalid timestamp"),
    (b'[{"type": "x", "timestamp": "2026-W01-1T10:00:00"}]', "invalid timestamp"),
    (b'[{"type": "x", "payload": ' + b'{"a": ' * 70 + b'1' + b'}' * 70 + b'}]', "payload nested too deeply"),
    (b'[{"type": "x", "payload": {"a": ' + b'[' * 900 + b']' * 900 + b'}}]', "payload nested too deeply"),
    (b'[{"type": "x", "idempotency_key": "a\\u001fb"}]', "invalid idempotency_key"),
])
def test_hostile_events_are_refused_one_by_one(client: TestClient, raw: bytes, reason: str) -> None:
    trace_id = new_trace(client)["id"]
    body = raw[:-1] + b', {"type": "fine"}]'
    answer = client.post(f"/api/traces/{trace_id}/events", content=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["accepted"] == 1 and result["rejected"][0]["reason"].startswith(reason), result
    assert [e["type"] for e in events(client, trace_id)] == ["fine"]


def test_a_body_too_deep_to_parse_is_refused_whole(client: TestClient) -> None:
    trace_id = new_trace(client)["id"]
    raw = b'[{"type": "x", "payload": {"a": ' + b'[' * 5000 + b']' * 5000 + b'}}]'
    answer = client.post(f"/api/traces/{trace_id}/events", content=raw, headers=ADMIN)
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid request body", "detail": "nested too deeply"}
    assert events(client, trace_id) == []


def test_ids_cannot_reach_another_traces_keys(client: TestClient) -> None:
    new_trace(client, id="run-42")
    taken = client.post("/api/traces", json={"id": "run-42:events", "name": "x"}, headers=OTHER)
    assert taken.status_code == 400 and taken.json()["error"].startswith("invalid id")
    assert client.post("/api/traces/run-42/events", json={"type": "x"}, headers=ADMIN).json()["accepted"] == 1


def test_a_cost_only_llm_call_is_a_usage_record(client: TestClient) -> None:
    trace_id = new_trace(client, agent="payer")["id"]
    client.post(f"/api/traces/{trace_id}/events", json={"type": "llm_call", "payload": {"cost_usd": 0.3}},
                headers=ADMIN)
    usage = client.get("/api/usage", params={"group_by": "agent"}, headers=ADMIN).json()
    assert usage["totals"]["cost_usd"] == pytest.approx(0.3)
