"""Retention at scale: list endpoints with a million stored tasks, and one sweep deleting 100,000 expired ones.

    .venv/bin/python scripts/bench_retention.py [--redis-url redis://127.0.0.1:6379/2] [--tasks 1000000]
        [--expired 100000] [--events 100000] [--requests 300] [--batch 200] [--keep]

1. Fills the Redis database it is given (FLUSHDB first: give it a database of its own) the fast way: pipelined
   HSET + ZADD in the layout admit.lua, fetch_claim.lua and finish.lua leave behind. ``--expired`` tasks ended 10
   days ago, each with a trace (record, a 4-event stream, idempotency keys, its list indexes) as a worker's run
   leaves it; the rest ended (completed or failed) or wait (pending) within the last day, spread over 4 workers.
   Plus ``--events`` final webhook events (a 1 KB payload each) and 1,000 external-agent traces.
2. Starts ``taskyard serve --no-workers`` on that database (retention off, so it deletes nothing by itself) and
   times, over real HTTP with one keep-alive connection, ``GET /tasks?limit=50``, the same filtered by state,
   by worker and state, a cursor page from the middle of the list, ``GET /events?limit=50`` and
   ``GET /api/sessions?limit=50``: p50, p99 and max of ``--requests`` requests each after 20 warm-up ones.
3. Runs one retention sweep with no time budget (``--batch`` records per script call, default 200 as the engine)
   and times it: records deleted, the whole sweep, each script call as the client saw it, and Redis's own
   latency histogram of EVALSHA over the sweep (how long Redis was held at once). Meanwhile another process keeps
   timing ``GET /tasks?limit=50``: the latency a client sees during a sweep.

Prints a JSON report; figures go in docs/benchmarks.md by hand. Flushes the database at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import keys  # noqa: E402
from engine.retention import SWEEP_BATCH, RetentionPolicy, RetentionSweep, sweep_batch  # noqa: E402
from engine.store import Op, SyncRunner  # noqa: E402
from scripts.bench import free_port, process, wait_http  # noqa: E402

PY = sys.executable
DAY_MS = 86_400_000
PIPELINE = 2_000  # records written per pipeline round trip
WORKERS = ("alpha", "beta", "gamma", "delta")
WARMUP = 20  # requests before timing each endpoint
EXTERNAL_TRACES = 1_000  # traces of an external agent (what GET /api/sessions lists)
PROMPT = "Review the pull request and summarise the risky changes. " * 2  # ~110 characters
RESULT = "Looks good overall; two functions lack tests and one query misses an index. " * 3  # ~230 characters
DECISION = json.dumps({"policy": "round_robin", "candidates": list(WORKERS), "skipped": [], "chosen": "alpha"})


def fill(client: redis.Redis, *, n_tasks: int, n_expired: int, n_events: int) -> dict[str, Any]:
    """Write the records; answers how long it took and Redis's memory afterwards."""
    client.flushdb(asynchronous=True)  # (a synchronous flush of gigabytes would hold the shared server for seconds)
    t0 = time.monotonic()
    now = int(time.time() * 1000)
    project = "default"
    pipe = client.pipeline(transaction=False)
    trace_seq = 0
    for i in range(n_tasks):
        seq = i + 1
        task_id = f"{seq:032x}"
        worker = WORKERS[i % len(WORKERS)]
        if i < n_expired:
            created, state = now - 10 * DAY_MS + i, "completed"
        else:
            created = now - DAY_MS + int((i - n_expired) * DAY_MS / max(1, n_tasks - n_expired))
            state = "pending" if i % 50 == 0 else "failed" if i % 12 == 0 else "completed"
        fields = {"id": task_id, "project": project, "worker_name": worker, "created_at": created, "seq": seq,
                  "attempts": 0 if state == "pending" else 1, "lost": 0, "dispatch": DECISION, "state": state,
                  "msg": f"{task_id}-0", "max_retries": 1, "timeout": 600.0, "prompt": PROMPT, "context": "",
                  "pool": "", "idempotency_key": ""}
        if state != "pending":
            fields.update(owner="f" * 32, dispatched_at=created + 2, completed_at=created + 1500,
                          **({"result": RESULT} if state == "completed" else {"error": "exit status 1"}))
        pipe.hset(keys.key("task", id=task_id), mapping=fields)
        pipe.zadd(keys.key("idx_all", project=project), {task_id: seq})
        pipe.zadd(keys.key("idx_worker", project=project, worker=worker), {task_id: seq})
        pipe.zadd(keys.key("idx_state", project=project, state=state), {task_id: seq})
        pipe.zadd(keys.key("idx_worker_state", project=project, worker=worker, state=state), {task_id: seq})
        if i < n_expired:
            trace_seq += 1
            _trace(pipe, task_id, project, worker, created, trace_seq, task=True)
        if seq % PIPELINE == 0:
            pipe.execute()
    for j in range(EXTERNAL_TRACES):
        trace_seq += 1
        _trace(pipe, f"{n_tasks + j + 1:032x}", project, "", now - DAY_MS + j, trace_seq, task=False)
    pipe.set(keys.key("task_seq"), n_tasks)
    pipe.set(keys.key("trace_seq"), trace_seq)
    pipe.execute()
    payload = json.dumps({"action": "opened", "number": 1, "body": "x" * 900})
    for k in range(n_events):
        seq = k + 1
        event_id = f"{seq:032x}"
        state = "completed" if k % 10 else "skipped"
        at = now - DAY_MS + k
        pipe.hset(keys.key("event", id=event_id), mapping={
            "id": event_id, "project": project, "source": "github", "state": state, "delivery_id": event_id,
            "created_at": at, "updated_at": at + 3000, "seq": seq, "type": "pull_request.opened", "actor": "octocat",
            "subject": "octo/repo#1", "attrs": json.dumps({"number": 1, "labels": ["bug"]}), "payload": payload,
            "matches": json.dumps([{"rule": "review", "status": "dispatched", "task_id": "0" * 32}])})
        pipe.rpush(keys.key("event_history", id=event_id), json.dumps({"state": "received", "at": at}),
                   json.dumps({"state": state, "at": at + 3000}))
        pipe.zadd(keys.key("ev_all", project=project), {event_id: seq})
        pipe.zadd(keys.key("ev_state", project=project, state=state), {event_id: seq})
        pipe.zadd(keys.key("ev_source", project=project, source="github"), {event_id: seq})
        pipe.zadd(keys.key("ev_source_state", project=project, source="github", state=state), {event_id: seq})
        if seq % PIPELINE == 0:
            pipe.execute()
    pipe.set(keys.key("event_seq"), n_events)
    pipe.sadd(keys.key("projects"), project)
    pipe.execute()
    memory = client.info("memory")["used_memory"]
    return {"seconds": round(time.monotonic() - t0, 1), "redis_used_memory_mib": round(memory / 2**20),
            "keys": client.dbsize()}


def _trace(pipe: Any, trace_id: str, project: str, worker: str, at: int, seq: int, *, task: bool) -> None:
    agent = worker or "agent-x"
    pipe.hset(keys.key("trace", id=trace_id), mapping={
        "id": trace_id, "project": project, "name": agent, "agent": agent, "worker": worker,
        "task_id": trace_id if task else "", "source": "worker" if task else "api", "metadata": "{}", "tags": "[]",
        "status": "completed", "created_at": at, "updated_at": at + 1500, "ended_at": at + 1500, "seq": seq,
        "events": 4, "last_seq": 4, "tokens_in": 1200, "tokens_out": 300, "cost_usd": 0.0061, "duration_ms": 1500})
    for n, kind in enumerate(("task_started", "llm_call", "tool_call", "session_end"), start=1):
        pipe.xadd(keys.key("trace_events", id=trace_id), {"d": json.dumps({"type": kind, "payload": {"n": n}})},
                  id=f"{n}-0")
        pipe.hset(keys.key("trace_keys", id=trace_id), f"{trace_id}:{n}", n)
    pipe.zadd(keys.key("tr_all", project=project), {trace_id: seq})
    pipe.zadd(keys.key("tr_status", project=project, status="completed"), {trace_id: seq})
    pipe.zadd(keys.key("tr_agent", project=project, agent=agent), {trace_id: seq})
    pipe.zadd(keys.key("tr_agent_status", project=project, agent=agent, status="completed"), {trace_id: seq})


def timed(http: httpx.Client, path: str, n: int) -> dict[str, float]:
    for _ in range(WARMUP):
        http.get(path).raise_for_status()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = http.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return summary(samples) | {"items": len(r.json())}


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[max(0, int(len(samples) * 0.99) - 1)], 2), "max_ms": round(samples[-1], 2),
            "n": len(samples)}


class TimingRunner:
    """A SyncRunner that records how long each op took (ms)."""

    def __init__(self, runner: SyncRunner) -> None:
        self.runner = runner
        self.times: list[float] = []

    def run(self, op: Op[Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return self.runner.run(op)
        finally:
            self.times.append((time.perf_counter() - t0) * 1000)


def list_meanwhile(base: str, started: Any, done: Any, out: Any) -> None:
    """In its own process (no shared interpreter lock with the sweep): time GET /tasks until ``done`` is set;
    ``started`` is set once the connection is warm (after the first requests, which are not counted)."""
    samples = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(WARMUP):
            http.get("/tasks?limit=50").raise_for_status()
        started.set()
        while not done.is_set():
            t0 = time.perf_counter()
            http.get("/tasks?limit=50").raise_for_status()
            samples.append((time.perf_counter() - t0) * 1000)
    out.put(samples)


def sweep(client: redis.Redis, base: str, n_expired: int, batch: int) -> dict[str, Any]:
    """One sweep with no time budget, timed, while another process keeps listing tasks."""
    runner = TimingRunner(SyncRunner(client))
    week = 7 * DAY_MS
    sweeper = RetentionSweep(runner, RetentionPolicy(tasks_ms=week, events_ms=week, traces_ms=week),
                             budget_s=3600.0, batch=batch)
    runner.run(sweep_batch(kind="events", project="-", state="failed", cutoff_ms=0))  # loads the script
    runner.times.clear()
    context = multiprocessing.get_context("fork")
    started, done, out = context.Event(), context.Event(), context.Queue()
    lister = context.Process(target=list_meanwhile, args=(base, started, done, out))
    lister.start()
    if not started.wait(timeout=30):
        raise SystemExit("the listing process did not start")
    before, histogram_before = _evalsha(client), _histogram(client)
    t0 = time.monotonic()
    report = sweeper.sweep()
    elapsed = time.monotonic() - t0
    after, histogram_after = _evalsha(client), _histogram(client)
    done.set()
    during = out.get(timeout=30)
    lister.join()
    left = client.zcard(keys.key("tr_all", project="default"))
    calls = sorted(runner.times)
    t1 = time.monotonic()
    idle = sweeper.sweep()  # the steady state: nothing left to delete among a million stored records
    idle_s = time.monotonic() - t1
    return {"deleted": report.deleted, "expected_tasks": n_expired, "batch": batch, "script_calls": report.calls,
            "seconds": round(elapsed, 2), "tasks_per_s": round(report.deleted["tasks"] / elapsed),
            "redis_us_per_script_call": round((after[1] - before[1]) / max(1, after[0] - before[0])),
            "call_ms_client_p50_p99_max": [round(statistics.median(calls), 1),
                                           round(calls[int(len(calls) * 0.99) - 1], 1), round(calls[-1], 1)],
            "redis_evalsha_calls_by_ms": _buckets(histogram_before, histogram_after),
            "traces_left": left, "list_tasks_during_sweep": summary(during) if during else None,
            "next_sweep_with_nothing_to_delete": {"ms": round(idle_s * 1000, 1), "script_calls": idle.calls,
                                                  "deleted": idle.total}}


def _histogram(client: redis.Redis) -> dict[int, int]:
    """Redis's own cumulative latency histogram of EVALSHA (upper bound in microseconds -> calls at or under it),
    server-wide: other clients' scripts in the window count too (they are mostly well under a millisecond)."""
    raw = client.execute_command("LATENCY", "HISTOGRAM", "evalsha")
    return {int(k): int(v) for k, v in raw.get("evalsha", {}).get("histogram_usec", {}).items()}


def _buckets(before: dict[int, int], after: dict[int, int]) -> dict[str, int]:
    """Calls in the window per latency bucket: "<1" ms, then "1-2", "2-4", ... (Redis's power-of-two buckets)."""
    out: dict[str, int] = {}
    previous_bound, previous_count = 0, 0
    for bound in sorted(after):
        count = after[bound] - before.get(bound, 0)
        if bound >= 1000:
            label = "<1" if previous_bound < 1000 else f"{previous_bound // 1000}-{bound // 1000}"
            if count - (0 if label == "<1" else previous_count):
                out[label] = count - (0 if label == "<1" else previous_count)
        previous_bound, previous_count = bound, count
    return out


def _evalsha(client: redis.Redis) -> tuple[int, int]:
    """(calls, microseconds) Redis spent in EVALSHA so far (server-wide, from INFO commandstats)."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(stats["calls"]), int(stats["usec"])


@contextmanager
def serving(tmp: Path, *, redis_url: str, log_level: str, retention: str) -> Iterator[str]:
    """``taskyard serve --no-workers`` on ``redis_url`` with ``retention``, its log in ``tmp/serve.log``;
    yields its base URL once /health answers."""
    config = tmp / "serve.yaml"
    config.write_text(f"redis_url: {redis_url}\nlog_level: {log_level}\ndata_dir: {tmp / 'data'}\n"
                      f"retention: {retention}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with process([PY, "-m", "api.cli", "serve", "--no-workers", "--config", str(config), "--port", str(port)],
                 log=tmp / "serve.log"):
        wait_http(f"{base}/health")
        yield base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--expired", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batch", type=int, default=SWEEP_BATCH, help="records per sweep script call")
    parser.add_argument("--keep", action="store_true", help="leave the data in Redis")
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    report: dict[str, Any] = {"fill": fill(client, n_tasks=args.tasks, n_expired=args.expired,
                                           n_events=args.events)}
    middle = str(args.tasks // 2)
    paths = {"tasks": "/tasks?limit=50", "tasks_completed": "/tasks?state=completed&limit=50",
             "tasks_worker_failed": "/tasks?worker=alpha&state=failed&limit=50",
             "tasks_deep_cursor": f"/tasks?limit=50&cursor={middle}",
             "tasks_oldest_page": f"/tasks?limit=50&cursor={args.expired + 51}",
             "events": "/events?limit=50", "sessions": "/api/sessions?limit=50"}
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-retention-") as tmp_name:
        tmp = Path(tmp_name)
        with serving(tmp, redis_url=args.redis_url, log_level="warning",
                     retention="{tasks: 0, events: 0, traces: 0, usage: 0}") as base:
            with httpx.Client(base_url=base, timeout=30) as http:
                report["list"] = {name: timed(http, path, args.requests) for name, path in paths.items()}
            report["sweep"] = sweep(client, base, args.expired, args.batch)
            with httpx.Client(base_url=base, timeout=30) as http:
                report["list_after_sweep"] = {"tasks": timed(http, paths["tasks"], args.requests)}
    print(json.dumps(report, indent=2), flush=True)
    if not args.keep:
        client.flushdb(asynchronous=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
