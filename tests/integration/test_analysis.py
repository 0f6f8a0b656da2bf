"""Detectors wired to traces on a real Redis: POST /api/traces/{id}/analyze runs the catalogue, stores the
analysis and records incidents; the engine's analyze_trace / scan_trace jobs are queued by the trace store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from config.settings import Settings
from engine.analysis import Analyzer
from engine.store import SyncRunner
from tests.integration.conftest import app_client

pytestmark = pytest.mark.integration

KEY = {"X-API-Key": "k"}
LOOP = [{"type": "tool_call", "payload": {"tool": "search", "args": {"q": "same"}}} for _ in range(4)]


@pytest.fixture()
def client(tmp_path: Path, redis_client: Any, redis_url: str) -> Iterator[TestClient]:
    with app_client(tmp_path, "api_keys: [{key: k}, {key: x, project: other}]\n", redis_url) as c:
        yield c


def engine_jobs(redis_client: Any) -> list[tuple[str, list[str]]]:
    raw = redis_client.hvals("ty:dq:ty.engine.msgs")
    return sorted((m["actor_name"], m["args"]) for m in map(json.loads, raw))


def test_analyze_on_demand_stores_the_result_and_records_an_incident(client: TestClient) -> None:
    trace_id = client.post("/api/traces", json={"name": "loopy", "agent": "bot"}, headers=KEY).json()["id"]
    client.post(f"/api/traces/{trace_id}/events", json=LOOP, headers=KEY)
    assert client.get(f"/api/traces/{trace_id}/analysis", headers=KEY).status_code in (200, 404)
    answer = client.post(f"/api/traces/{trace_id}/analyze", headers=KEY)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["scope"] == "full" and result["events_analyzed"] == 4
    loops = [d for d in result["detections"] if d["failure_class"] == "loop"]
    assert loops and loops[0]["evidence"][:3] == [1, 2, 3]
    assert client.get(f"/api/traces/{trace_id}/analysis", headers=KEY).json()["detections"] == result["detections"]
    incidents = client.get("/api/incidents", headers=KEY).json()
    assert [i["failure_class"] for i in incidents] == ["loop"]
    again = client.post(f"/api/traces/{trace_id}/analyze", headers=KEY).json()
    assert again["detections"] == result["detections"]  # deterministic
    assert client.get("/api/incidents", headers=KEY).json()[0]["count"] == 1  # the same trace counts once
    assert client.post(f"/api/traces/{trace_id}/analyze", headers={"X-API-Key": "x"}).status_code == 404
    assert client.get("/api/traces/nope/analysis", headers=KEY).json() == {"error": "trace not found"}


def test_the_trace_store_queues_the_analysis_jobs(client: TestClient, redis_client: Any) -> None:
    trace_id = client.post("/api/traces", json={"name": "t"}, headers=KEY).json()["id"]
    client.post(f"/api/traces/{trace_id}/events", json={"type": "step"}, headers=KEY)
    client.post(f"/api/traces/{trace_id}/events", json={"type": "step"}, headers=KEY)  # within 2 s: no second scan
    assert engine_jobs(redis_client) == [("scan_trace", [trace_id])]
    client.post(f"/api/traces/{trace_id}/events", json={"type": "session_end"}, headers=KEY)
    assert engine_jobs(redis_client) == [("analyze_trace", [trace_id]), ("scan_trace", [trace_id])]


def test_a_live_scan_flags_a_runaway_agent_and_never_replaces_a_full_analysis(
        client: TestClient, redis_client: Any, redis_url: str) -> None:
    trace_id = client.post("/api/traces", json={"name": "runaway"}, headers=KEY).json()["id"]
    client.post(f"/api/traces/{trace_id}/events", json=LOOP, headers=KEY)
    analyzer = Analyzer(SyncRunner(redis_client), Settings().detectors)
    live = analyzer.analyze(trace_id, final=False)
    assert live is not None and [d.failure_class for d in live.detections] == ["loop"]
    assert client.get(f"/api/traces/{trace_id}/analysis", headers=KEY).json()["scope"] == "live"
    client.post(f"/api/traces/{trace_id}/events", json={"type": "session_end"}, headers=KEY)
    assert analyzer.analyze(trace_id, final=False) is None  # ended: only the full analysis now
    full = analyzer.analyze(trace_id, final=True)
    assert full is not None and full.final
    stored = client.get(f"/api/traces/{trace_id}/analysis", headers=KEY).json()
    assert stored["scope"] == "full"
