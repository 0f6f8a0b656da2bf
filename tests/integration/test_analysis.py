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


def _trace(runner: SyncRunner, trace_id: str, *, worker: str = "w", source: str = "api",
           task_id: str = "") -> None:
    from engine import traces
    from engine.clock import now_ms

    runner.run(traces.create(trace_id=trace_id, project="default", now_ms=now_ms(), name=worker, agent=worker,
                             worker=worker, task_id=task_id, source=source))


def _ingest(runner: SyncRunner, trace_id: str, events: list[dict[str, Any]]) -> None:
    from engine import traces
    from engine.clock import now_ms
    from engine.pricing import PriceBook
    from engine.trace_events import prepare_batch

    ready, rejected = prepare_batch(events, prices=PriceBook.build(), max_event_bytes=100_000, now_ms=now_ms())
    assert not rejected
    runner.run(traces.append(trace_id=trace_id, project="default", now_ms=now_ms(), events=ready))


def test_a_command_workers_nonzero_exit_is_found(redis_client: Any) -> None:
    from config.settings import WorkerSpec
    from engine import registry

    runner = SyncRunner(redis_client)
    runner.run(registry.register(WorkerSpec(name="cmd", command=["false"]), source="test"))
    _trace(runner, "t-exit", worker="cmd", source="task", task_id="t-exit")
    _ingest(runner, "t-exit", [{"type": "task_started"},
                               {"type": "session_end", "payload": {"status": "failed", "exit_code": 3}}])
    result = Analyzer(runner, Settings().detectors).analyze("t-exit")
    assert result is not None and "exit_nonzero" in [d.failure_class for d in result.detections]


def test_a_run_is_never_part_of_its_own_cost_baseline(redis_client: Any) -> None:
    runner = SyncRunner(redis_client)
    analyzer = Analyzer(runner, Settings().detectors)

    def run(trace_id: str, cost: float) -> list[str]:
        _trace(runner, trace_id, worker="spender")
        _ingest(runner, trace_id, [{"type": "llm_call", "payload": {"cost_usd": cost}}, {"type": "session_end"}])
        result = analyzer.analyze(trace_id)
        assert result is not None
        return [d.failure_class for d in result.detections]

    for i in range(4):
        assert run(f"cheap-{i}", 0.01) == []
    assert "cost_spike" not in run("dear", 1.0)  # 4 earlier runs: too few to judge
    again = analyzer.analyze("dear")
    assert again is not None and "cost_spike" not in [d.failure_class for d in again.detections]
    assert redis_client.llen("ty:p:default:costs:spender") == 5  # each run sampled once


def test_a_long_trace_keeps_its_ending_and_says_it_was_cut(redis_client: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import analysis

    monkeypatch.setattr(analysis, "MAX_EVENTS", 10)
    monkeypatch.setattr(analysis, "TAIL_EVENTS", 3)
    runner = SyncRunner(redis_client)
    _trace(runner, "long")
    _ingest(runner, "long", [{"type": "step"}] * 19 + [{"type": "session_end", "payload": {"status": "crashed"}}])
    _trace(runner, "exact")
    _ingest(runner, "exact", [{"type": "step"}] * 9 + [{"type": "session_end"}])
    analyzer = Analyzer(runner, Settings().detectors)
    cut = analyzer.analyze("long")
    assert cut is not None and cut.truncated and cut.events == 10
    assert "crash" in [d.failure_class for d in cut.detections]  # the ending was read
    whole = analyzer.analyze("exact")
    assert whole is not None and not whole.truncated and whole.events == 10


def test_jobs_wait_for_the_task_outcome_and_rescan_a_burst(redis_client: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.event_jobs import Retry

    runner = SyncRunner(redis_client)
    analyzer = Analyzer(runner, Settings().detectors)
    _trace(runner, "task-1", source="task", task_id="task-1")
    redis_client.hset("ty:task:task-1", mapping={"state": "dispatched"})
    _ingest(runner, "task-1", [{"type": "task_started"}, {"type": "session_end"}])
    assert isinstance(analyzer.analyze_job("task-1", 1), Retry)  # the outcome is not recorded yet
    redis_client.hset("ty:task:task-1", mapping={"state": "completed", "result": ""})
    assert analyzer.analyze_job("task-1", 2) is None
    assert redis_client.exists("ty:trace:task-1:analysis")

    _trace(runner, "busy")
    _ingest(runner, "busy", [{"type": "step"}])  # starts a chain: the guard is held, the trace dirty
    step = analyzer.scan_job("busy", 1)
    assert isinstance(step, Retry) and step.attempt == 2
    _ingest(runner, "busy", LOOP)  # the end of a burst, after the first scan, while the chain is alive
    assert engine_jobs(redis_client).count(("scan_trace", ["busy"])) == 1  # no second chain
    step = analyzer.scan_job("busy", 2)
    assert isinstance(step, Retry)  # events arrived: scanned again
    assert [d["failure_class"] for d in json.loads(redis_client.get("ty:trace:busy:analysis"))["detections"]] \
        == ["loop"]
    assert analyzer.scan_job("busy", 3) is None  # nothing new: the chain ends...
    assert not redis_client.exists("ty:trace:busy:scan")  # ...and the next batch starts another
