"""Mesedi-shaped requests round-trip onto traces: executions, their events (idempotent on event_id, accepted
item by item) and the schema-version policy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.integration.conftest import app_client

pytestmark = pytest.mark.integration

KEY = {"X-API-Key": "k-m"}


@pytest.fixture()
def client(tmp_path: Path, redis_client: Any, redis_url: str) -> Iterator[TestClient]:
    with app_client(tmp_path, "api_keys: [{key: k-m, project: agents}, {key: k-x, project: elsewhere}]\n",
                    redis_url) as c:
        yield c


def mesedi_event(n: int, execution: str = "exec-1", **over: Any) -> dict[str, Any]:
    return {"event_id": f"ev-{execution}-{n}", "execution_id": execution, "event_type": "tool_call",
            "sequence": n, "timestamp": "2026-11-23T08:00:00.000Z", "payload": {"n": n}, **over}


def test_execution_round_trip(client: TestClient) -> None:
    started = client.post("/executions", json={"execution_id": "exec-1", "status": "started",
                                               "sdk_language": "python", "sdk_version": "0.4.1"}, headers=KEY)
    assert started.status_code == 201 and started.json()["execution_id"] == "exec-1"
    assert client.post("/executions", json={"execution_id": "exec-1", "status": "started"},
                       headers=KEY).status_code == 200  # an SDK retry
    batch = [mesedi_event(0, event_type="LLM_CALL", payload={"model": "gpt-4o", "input_tokens": 10}),
             mesedi_event(1), mesedi_event(2, execution="ghost"), {"event_id": "x"}]
    answer = client.post("/events", json=batch, headers=KEY).json()
    assert answer["accepted"] == 2 and answer["duplicates"] == 0
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(2, "unknown execution_id"),
                                                                      (3, "execution_id is required")]
    retried = client.post("/events", json=batch[:2], headers={**KEY, "X-Mesedi-Schema-Version": "1"}).json()
    assert retried == {"accepted": 0, "duplicates": 2, "rejected": []}  # a retried batch is not an error
    ended = client.patch("/executions/exec-1", json={"status": "crashed", "duration_ms": 4200,
                                                     "total_tokens_in": 900, "total_tokens_out": 80,
                                                     "crash_signature": "KeyError: 'x'"}, headers=KEY)
    assert ended.status_code == 200
    assert ended.json()["status"] == "crashed" and ended.json()["total_tokens_in"] == 900
    trace = client.get("/api/traces/exec-1", headers=KEY).json()
    assert (trace["status"], trace["duration_ms"], trace["source"]) == ("crashed", 4200, "mesedi")
    assert (trace["tokens_in"], trace["tokens_out"]) == (900, 80)
    assert trace["metadata"] == {"sdk_language": "python", "sdk_version": "0.4.1"}
    events = client.get("/api/traces/exec-1/events", headers=KEY).json()
    assert [(e["seq"], e["type"], e.get("idempotency_key")) for e in events] == [
        (1, "llm_call", "ev-exec-1-0"), (2, "tool_call", "ev-exec-1-1"), (3, "session_end", "mesedi.end.crashed")]
    assert events[-1]["payload"]["crash_signature"] == "KeyError: 'x'"
    again = client.patch("/executions/exec-1", json={"status": "crashed"}, headers=KEY)
    assert again.status_code == 200 and len(client.get("/api/traces/exec-1/events", headers=KEY).json()) == 3
    assert client.get("/api/sessions", params={"status": "crashed"}, headers=KEY).json()[0]["id"] == "exec-1"


@pytest.mark.parametrize("method,path,body", [
    ("post", "/executions", {"execution_id": "e2", "status": "started"}),
    ("patch", "/executions/exec-1", {"status": "completed"}),
    ("post", "/events", []),
])
def test_schema_version_policy(client: TestClient, method: str, path: str, body: Any) -> None:
    answer = getattr(client, method)(path, json=body, headers={**KEY, "X-Mesedi-Schema-Version": "2"})
    assert answer.status_code == 400
    assert answer.json() == {"error": "unsupported X-Mesedi-Schema-Version '2': supported versions are 1"}
    assert client.get("/api/sessions", headers=KEY).json() == []


def test_bad_requests_store_nothing(client: TestClient) -> None:
    assert client.post("/executions", json={"status": "started"}, headers=KEY).status_code == 400
    assert client.post("/executions", json={"execution_id": "e", "status": "done"}, headers=KEY).status_code == 400
    assert client.post("/events", json={"event_id": "x"}, headers=KEY).status_code == 400
    assert client.patch("/executions/none", json={"status": "completed"}, headers=KEY).json() == {
        "error": "execution not found"}
    client.post("/executions", json={"execution_id": "e3"}, headers=KEY)
    assert client.patch("/executions/e3", json={"status": "exploded"}, headers=KEY).status_code == 400
    assert client.patch("/executions/e3", json={"status": "completed"},
                        headers={"X-API-Key": "k-x"}).json() == {"error": "execution not found"}
    assert client.get("/api/traces/e3", headers=KEY).json()["status"] == "running"


def test_odd_agent_names_and_statuses(client: TestClient) -> None:
    started = client.post("/executions", json={"execution_id": "e9", "agent_name": "Support Bot"}, headers=KEY)
    assert started.status_code == 201
    trace = client.get("/api/traces/e9", headers=KEY).json()
    assert trace["name"] == "Support Bot" and trace["agent"] is None
    assert client.patch("/executions/e9", json={"status": {"a": 1}}, headers=KEY).status_code == 400
    bad = [{"event_id": "x1", "execution_id": "e9", "event_type": "session_end", "sequence": 0,
            "payload": {"status": []}}]
    assert client.post("/events", json=bad, headers=KEY).json()["rejected"][0]["reason"].startswith(
        "invalid session_end status")
