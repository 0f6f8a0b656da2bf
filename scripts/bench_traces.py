"""Trace benchmarks (run by scripts/bench.py --only traces|sse).

ingest: POST /api/traces/{id}/events with 100-event batches (llm_call / tool_call / tool_result, about 200 bytes
        each) at 16 connections (wrk) against `serve --no-workers`, spread over 64 traces; events/s accepted,
        p50/p99 per batch. Counts what Redis holds afterwards, so a fast answer that stored nothing cannot pass.
sse:    100 subscribers (asyncio + httpx in this process) follow the same trace on `GET /api/stream`; a writer
        appends one event every 20 ms carrying its send time; delivery latency = receive time - send time,
        over every (event, subscriber) pair, p50/p99/max. Subscribers and writer share this process's core.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import redis

BATCH = 100  # events per request
TRACES = 64  # traces the ingest load is spread over
SUBSCRIBERS = 100
SSE_EVENTS = 250  # events written during the SSE benchmark
SSE_INTERVAL_S = 0.02  # seconds between them
WRK_SCRIPT = """local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}", "rb"):read("*a")
request = function()
  n = n + 1
  return wrk.format(nil, string.format("/api/traces/bench-%d/events", n % {traces}))
end
"""


def _batch() -> bytes:
    events: list[dict[str, Any]] = []
    for i in range(BATCH):
        kind = ("llm_call", "tool_call", "tool_result")[i % 3]
        payload: dict[str, Any] = {"llm_call": {"model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 95,
                                                "latency_ms": 640},
                                   "tool_call": {"tool": "read_file", "args": {"path": f"src/module_{i}.py"}},
                                   "tool_result": {"tool": "read_file", "ok": True, "bytes": 4096}}[kind]
        events.append({"type": kind, "payload": payload})
    return json.dumps({"events": events}).encode()


def bench_ingest(redis_url: str, duration: int, tmp: Path, *, serve: Any, run_wrk: Any, free_port: Any,
                 wait_http: Any) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    config = tmp / "traces.yaml"
    config.write_text(f"redis_url: {redis_url}\nlog_level: warning\n")
    body = tmp / "batch.json"
    body.write_bytes(_batch())
    script = tmp / "ingest.lua"
    script.write_text(WRK_SCRIPT.format(body=body, traces=TRACES))
    port = free_port()
    with serve(config, port, tmp / "traces-serve.log"):
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        with httpx.Client(base_url=base) as http:
            for i in range(TRACES):
                assert http.post("/api/traces", json={"id": f"bench-{i}", "name": "bench"}).status_code == 201
            probe = http.post("/api/traces/bench-0/events", content=body.read_bytes()).json()
            assert probe["accepted"] == BATCH, probe
        result = run_wrk(base, duration, tmp, script)
        stored = sum(int(client.hget(f"ty:trace:bench-{i}", "events") or 0) for i in range(TRACES)) - BATCH
    client.flushdb()
    return {"batches_per_s": result["rps"], "events_per_s": round(result["rps"] * BATCH),
            "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "errors": result["errors"],
            "events_stored": stored}


async def _sse(base: str) -> dict[str, Any]:
    latencies: list[float] = []
    ready = asyncio.Event()
    connected = 0
    done = asyncio.Event()

    async def subscriber(http: httpx.AsyncClient) -> None:
        nonlocal connected
        got = 0
        async with http.stream("GET", "/api/stream", params={"trace_id": "sse", "after_seq": 0}) as answer:
            connected += 1
            if connected == SUBSCRIBERS:
                ready.set()
            async for line in answer.aiter_lines():
                if line.startswith("data: "):
                    sent = json.loads(line[6:])["payload"]["sent"]
                    latencies.append((time.time() - sent) * 1000)
                    got += 1
                    if got == SSE_EVENTS:
                        return

    limits = httpx.Limits(max_connections=SUBSCRIBERS + 10)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(60)) as http:
        assert (await http.post("/api/traces", json={"id": "sse", "name": "sse"})).status_code == 201
        tasks = [asyncio.create_task(subscriber(http)) for _ in range(SUBSCRIBERS)]
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(1.0)  # every subscriber past its (empty) backlog and watching
        for n in range(SSE_EVENTS):
            answer = await http.post("/api/traces/sse/events", json={"type": "tick", "payload": {
                "n": n, "sent": time.time()}})
            assert answer.json()["accepted"] == 1
            await asyncio.sleep(SSE_INTERVAL_S)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        done.set()
    latencies.sort()
    return {"subscribers": SUBSCRIBERS, "events": SSE_EVENTS, "deliveries": len(latencies),
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1), "max_ms": round(latencies[-1], 1)}


def bench_sse(redis_url: str, tmp: Path, *, serve: Any, free_port: Any, wait_http: Any) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    config = tmp / "sse.yaml"
    config.write_text(f"redis_url: {redis_url}\nlog_level: warning\n")
    port = free_port()
    with serve(config, port, tmp / "sse-serve.log"):
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        result = asyncio.run(_sse(base))
    client.flushdb()
    return result
