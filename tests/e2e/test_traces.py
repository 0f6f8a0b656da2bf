"""Traces over real processes: a command worker's events reach its task's trace, and the live stream resumes on
another `serve` replica with Last-Event-ID, losing nothing and repeating nothing."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cluster, wait_final, wait_for

pytestmark = pytest.mark.e2e

KEY = {"X-API-Key": "k-e2e"}

AGENT = """
import json, os, sys
prompt = sys.stdin.read()
with open(os.environ["TASKYARD_TRACE_FILE"], "a") as f:
    f.write(json.dumps({"type": "llm_call", "payload": {"model": "gpt-4o-mini", "input_tokens": 120,
                                                        "output_tokens": 30}}) + "\\n")
    f.write(json.dumps({"type": "tool_call", "payload": {"tool": "ls", "args": {"path": "."}}}) + "\\n")
    f.write(json.dumps({"type": "tool_result", "payload": {"tool": "ls", "output": "a b"}}) + "\\n")
print("answer to " + prompt)
"""


def read_sse(client: httpx.Client, params: dict[str, Any], headers: dict[str, str], *, want: int,
             timeout: float = 15) -> list[tuple[int, dict[str, Any]]]:
    """Open the stream, read ``want`` events, then hang up."""
    got: list[tuple[int, dict[str, Any]]] = []
    with client.stream("GET", "/api/stream", params=params, headers={**KEY, **headers},
                       timeout=httpx.Timeout(timeout)) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        seq, data = None, None
        for line in answer.iter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and seq is not None:
                got.append((seq, data or {}))
                seq, data = None, None
                if len(got) >= want:
                    break
    return got


def post_events(client: httpx.Client, trace_id: str, seqs: range) -> None:
    body = {"events": [{"seq": s, "type": "step", "idempotency_key": f"k{s}", "payload": {"n": s}} for s in seqs]}
    answer = client.post(f"/api/traces/{trace_id}/events", json=body, headers=KEY)
    assert answer.json()["accepted"] == len(seqs), answer.text


def test_command_worker_trace_over_http(cluster: Cluster, redis_url: str, tmp_path) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    cluster.config(f"""
redis_url: {redis_url}
api_key: k-e2e
heartbeat_interval: 0.5s
workers:
  - name: agent
    command: [{sys.executable}, {tmp_path / "agent.py"}]
""")
    api = cluster.serve("--no-workers", headers=KEY)
    cluster.worker("--config", str(tmp_path / "taskyard.yaml"))
    task = api.post("/task", json={"prompt": "life"}).json()
    assert wait_final(api, task["id"])["state"] == "completed"
    trace = wait_for(lambda: api.get(f"/api/traces/{task['id']}").json(), lambda t: t.get("status") == "completed")
    assert trace["task_id"] == task["id"] and trace["worker"] == "agent" and trace["event_count"] == 5
    assert (trace["tokens_in"], trace["tokens_out"]) == (120, 30) and trace["cost_usd"] > 0
    events = api.get(f"/api/traces/{task['id']}/events").json()
    assert [e["type"] for e in events] == ["task_started", "llm_call", "tool_call", "tool_result", "session_end"]
    assert events[-1]["payload"]["status"] == "completed" and events[-1]["payload"]["exit_code"] == 0
    sessions = api.get("/api/sessions", params={"agent": "agent"}).json()
    assert [s["id"] for s in sessions] == [task["id"]]


def test_sse_resumes_on_another_replica_without_gaps_or_repeats(cluster: Cluster, redis_url: str) -> None:
    cluster.config(f"redis_url: {redis_url}\napi_key: k-e2e\n")
    first = cluster.serve("--no-workers")
    second = cluster.serve("--no-workers")
    trace_id = first.post("/api/traces", json={"name": "resume"}, headers=KEY).json()["id"]
    post_events(first, trace_id, range(1, 6))

    seen = read_sse(first, {"trace_id": trace_id, "after_seq": 0}, {}, want=3)
    assert [s for s, _ in seen] == [1, 2, 3] and seen[0][1]["trace_id"] == trace_id
    post_events(second, trace_id, range(6, 9))  # written while the client is away

    # Back on the other replica; events 9..12 are written while it streams (the live path).
    def later() -> None:
        time.sleep(1.0)
        for s in range(9, 13):
            post_events(first, trace_id, range(s, s + 1))

    writer = threading.Thread(target=later)
    writer.start()
    resumed = read_sse(second, {"trace_id": trace_id}, {"Last-Event-ID": str(seen[-1][0])}, want=9)
    writer.join()
    assert [s for s, _ in resumed] == list(range(4, 13))
    assert [d["payload"]["n"] for _, d in resumed] == list(range(4, 13))

    assert second.get("/api/stream", params={"trace_id": "nope"}, headers=KEY).json() == {"error": "trace not found"}
    assert second.get("/api/stream", headers=KEY).json() == {"error": "trace_id is required"}
    assert second.get("/api/stream", params={"trace_id": trace_id}).status_code == 401


def test_telemetry_shapes_round_trip_over_http(cluster: Cluster, redis_url: str) -> None:
    """A partial batch, Mesedi's executions and MeshAI's heartbeat and usage against a real `serve`; the usage of
    a trace's llm_call and of a MeshAI record sum together by model."""
    cluster.config(f"redis_url: {redis_url}\napi_key: k-e2e\n")
    api = cluster.serve("--no-workers", headers=KEY)
    trace_id = api.post("/api/traces", json={"name": "partial", "agent": "planner"}).json()["id"]
    partial = api.post(f"/api/traces/{trace_id}/events", json={"events": [
        {"type": "llm_call", "idempotency_key": "a", "payload": {"model": "gpt-4o", "input_tokens": 1000}},
        {"type": "Bad Type", "idempotency_key": "b"},
        {"type": "tool_call", "idempotency_key": "c", "payload": {"tool": "grep"}}]}).json()
    assert partial["accepted"] == 2 and [r["idempotency_key"] for r in partial["rejected"]] == ["b"]

    assert api.post("/executions", json={"execution_id": "ex-9", "status": "started", "sdk_language": "python",
                                         "sdk_version": "1.2.0"}).status_code == 201
    events = [{"event_id": f"e{i}", "execution_id": "ex-9", "event_type": "tool_call", "sequence": i,
               "timestamp": "2026-11-23T08:00:00Z", "payload": {"i": i}} for i in range(3)]
    assert api.post("/events", json=events).json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert api.post("/events", json=events).json() == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert api.patch("/executions/ex-9", json={"status": "completed", "duration_ms": 900, "total_tokens_in": 50,
                                               "total_tokens_out": 5}).json()["status"] == "completed"
    assert [e["seq"] for e in api.get("/api/traces/ex-9/events").json()] == [1, 2, 3, 4]

    beat = api.post("/heartbeat", json={"agent_id": "planner"}).json()
    assert beat["success"] is True and beat["data"]["status"] == "healthy"
    assert api.post("/telemetry/usage", json={"agent_id": "planner", "model": "gpt-4o", "input_tokens": 500,
                                              "output_tokens": 0}).status_code == 201
    usage = api.get("/api/usage", params={"group_by": "model"}).json()
    gpt = next(g for g in usage["groups"] if g["model"] == "gpt-4o")
    assert gpt["tokens_in"] == 1500 and gpt["count"] == 2 and gpt["cost_usd"] > 0
