"""Taskyard benchmarks, each side by side with the bare library on the same machine and settings.

    scripts/bench [--redis-url URL] [--only submit|e2e|latency|webhook|traces|sse] [--duration S] [--tasks N]

1. submit:  POST /task throughput and p50/p99 latency at 32 connections (wrk), vs a bare Litestar route
            that parses the same JSON and answers 202, both on one uvicorn process with the same settings;
            three rounds of alternating runs, reporting the round with the median ratio (and every ratio).
2. e2e:     10,000 no-op tasks drained by one worker process with 8 threads (a `handler` worker), vs a bare
            Dramatiq actor drained by one process with 8 threads on the same Redis. Queues are filled first;
            the clock runs from the worker's ready line to the last task done.
3. latency: submit to handler start (dispatched_at - created_at) at a paced 100 tasks/s.
4. webhook: signed GitHub deliveries with 200 rules loaded (scripts/bench_webhook.py): the 202 rate, p50/p99,
            and the rate of webhook in -> task admitted.
5. traces:  trace ingest, 100-event batches at 16 connections (scripts/bench_traces.py): events/s, p50/p99.
6. sse:     live-stream delivery latency to 100 subscribers of one trace (scripts/bench_traces.py).

Needs `wrk` (Debian: apt-get install wrk) for the submit benchmark. Flushes the Redis database it is given
(default: database 11 of the local server). Prints a summary table; figures go in docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.settings import WorkerSpec  # noqa: E402
from engine import registry  # noqa: E402
from engine.clock import now_ms  # noqa: E402
from engine.store import SyncRunner  # noqa: E402
from scripts.bench_traces import bench_ingest, bench_sse  # noqa: E402
from scripts.bench_webhook import bench_webhook  # noqa: E402

PY = sys.executable
WRK_THREADS = 2
WRK_CONNECTIONS = 32
E2E_THREADS = 8
INGEST_CONNECTIONS = 16  # the trace ingest target is stated at 16 connections


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


@contextmanager
def process(args: list[str], *, env: dict[str, str] | None = None, ready: str | None = None, log: Path):
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if ready:
                deadline = time.monotonic() + 30
                while ready not in log.read_text(errors="replace"):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"{args} did not become ready:\n{log.read_text()}")
                    time.sleep(0.01)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def write_config(tmp: Path, redis_url: str, workers: str) -> Path:
    path = tmp / "bench.yaml"
    path.write_text(f"redis_url: {redis_url}\nlog_level: warning\nworkers:\n{workers}")
    return path


# -- 1. submit throughput ----------------------------------------------------------------------------------
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{"prompt": "benchmark task"}'
wrk.headers["Content-Type"] = "application/json"
"""


def run_wrk(url: str, duration: int, tmp: Path, script: Path | None = None, *,
            connections: int = WRK_CONNECTIONS) -> dict[str, float]:
    if script is None:
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
    out = subprocess.run(["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{duration}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "errors": int(non2xx.group(1)) if non2xx else 0}


SUBMIT_ROUNDS = 3  # alternating Taskyard / bare runs; the round with the median ratio is reported


def bench_submit(redis_url: str, duration: int, tmp: Path) -> dict[str, object]:
    if not shutil.which("wrk"):
        raise SystemExit("the submit benchmark needs wrk: apt-get install wrk")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    spec = WorkerSpec(name="sink", handler="workers.builtin:noop", max_queue_depth=100_000_000)
    runner = SyncRunner(client)
    stop = threading.Event()

    def heartbeat() -> None:  # a worker that is online but consumes nothing: submits only
        while not stop.is_set():
            runner.run(registry.heartbeat(proc_id="bench" * 6 + "ab", specs=[spec], now_ms=now_ms(),
                                          ttl_ms=15_000, host="bench", pid=os.getpid()))
            stop.wait(1)

    threading.Thread(target=heartbeat, daemon=True).start()
    config = write_config(tmp, redis_url, "  - {name: sink, handler: 'workers.builtin:noop', "
                                          "max_queue_depth: 100000000}\n")
    # Both servers run for the whole benchmark and take turns under wrk, round after round: this machine's
    # speed drifts by tens of percent within minutes, so only runs taken side by side compare.
    ty_port, bare_port = free_port(), free_port()
    ty_url, bare_url = f"http://127.0.0.1:{ty_port}/task", f"http://127.0.0.1:{bare_port}/task"
    rounds: list[dict[str, dict[str, float]]] = []
    with process([PY, "-m", "api.cli", "serve", "--no-workers", "--config", str(config), "--port", str(ty_port)],
                 log=tmp / "serve.log"), \
            process([PY, "-m", "uvicorn", "scripts.bench_bare_app:app", "--port", str(bare_port),
                     "--no-access-log", "--log-level", "warning"], log=tmp / "bare.log"):
        wait_http(f"http://127.0.0.1:{ty_port}/health")
        wait_http(f"http://127.0.0.1:{bare_port}/health")
        run_wrk(ty_url, 2, tmp)  # warm-up
        run_wrk(bare_url, 2, tmp)
        for _ in range(SUBMIT_ROUNDS):
            rounds.append({"taskyard POST /task": run_wrk(ty_url, duration, tmp),
                           "bare Litestar POST /task": run_wrk(bare_url, duration, tmp)})
    stop.set()
    ratios = [r["taskyard POST /task"]["rps"] / r["bare Litestar POST /task"]["rps"] for r in rounds]
    middle = rounds[ratios.index(statistics.median_low(ratios))]  # the round with the median ratio
    results: dict[str, object] = dict(middle)
    results["round_ratios"] = [round(x, 2) for x in ratios]
    client.flushdb()
    return results


# -- 2. end-to-end drain -----------------------------------------------------------------------------------
def bench_e2e(redis_url: str, n: int, tmp: Path) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    runner = SyncRunner(client)
    spec = WorkerSpec(name="noop", handler="workers.builtin:noop", concurrency=E2E_THREADS, max_queue_depth=n)
    runner.run(registry.register(spec, source="bench"))
    config = write_config(tmp, redis_url, f"  - {{name: noop, handler: 'workers.builtin:noop', "
                                          f"concurrency: {E2E_THREADS}, max_queue_depth: {n}}}\n")
    # Fill the queue through the real admission path (named worker, offline: tasks wait in its queue).
    import asyncio

    from engine.connect import async_client
    from engine.service import ServiceOptions, TaskService
    from engine.store import AsyncRunner

    async def fill() -> None:
        aclient = async_client(redis_url)
        svc = TaskService(AsyncRunner(aclient), ServiceOptions(default_bound=n, offline_after_ms=15000, max_lost=5))
        for start in range(0, n, 200):
            await asyncio.gather(*(svc.submit("default", {"prompt": "x", "worker": "noop"})
                                   for _ in range(min(200, n - start))))
        await aclient.aclose()

    asyncio.run(fill())
    results = {}
    with process([PY, "-m", "api.cli", "worker", "--config", str(config), "noop"], ready="serving",
                 log=tmp / "worker.log"):
        t0 = time.monotonic()
        while int(client.hget("ty:metrics", "tasks_completed") or 0) < n:
            time.sleep(0.005)
        results["taskyard"] = n / (time.monotonic() - t0)
    client.flushdb()
    # Bare Dramatiq: same Redis, one process, same threads.
    with process([PY, "scripts/bench_dramatiq_worker.py", "enqueue", redis_url, str(n)], log=tmp / "enq.log") as p:
        p.wait()
    with process([PY, "scripts/bench_dramatiq_worker.py", "work", redis_url, str(E2E_THREADS)], ready="ready",
                 log=tmp / "bare-worker.log"):
        t0 = time.monotonic()
        while client.hlen("bench:noop.msgs") > 0:
            time.sleep(0.005)
        results["bare dramatiq"] = n / (time.monotonic() - t0)
    client.flushdb()
    return results


# -- 3. dispatch latency -----------------------------------------------------------------------------------
def bench_latency(redis_url: str, rate: int, seconds: int, tmp: Path) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    config = write_config(tmp, redis_url, "  - {name: lat, handler: 'workers.builtin:noop', concurrency: 4}\n")
    port = free_port()
    ids: list[str] = []
    with process([PY, "-m", "api.cli", "serve", "--no-workers", "--config", str(config), "--port", str(port)],
                 log=tmp / "lat-serve.log"), \
         process([PY, "-m", "api.cli", "worker", "--config", str(config), "lat"], ready="serving",
                 log=tmp / "lat-worker.log"):
        wait_http(f"http://127.0.0.1:{port}/health")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            start = time.monotonic()
            for i in range(rate * seconds):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ids.append(http.post("/task", json={"prompt": "x"}).json()["id"])
            time.sleep(1)
            lat = []
            for task_id in ids:
                t = http.get(f"/task/{task_id}").json()
                lat.append(_ms(t["dispatched_at"]) - _ms(t["created_at"]))
    client.flushdb()
    lat.sort()
    return {"p50_ms": statistics.median(lat), "p99_ms": lat[int(len(lat) * 0.99) - 1], "max_ms": lat[-1],
            "n": len(lat)}


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def serve(config: Path, port: int, log: Path):  # noqa: ANN201
    return process([PY, "-m", "api.cli", "serve", "--no-workers", "--config", str(config), "--port", str(port)],
                   log=log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--only", choices=["submit", "e2e", "latency", "webhook", "traces", "sse"])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--engine-processes", type=int, default=1,
                        help="engine processes of the webhook benchmark's serve (the setting engine_processes)")
    args = parser.parse_args()
    report: dict[str, object] = {"machine": f"{os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.only in (None, "submit"):
            sub = bench_submit(args.redis_url, args.duration, tmp)
            report["submit"] = sub
            report["submit_ratio"] = statistics.median_low(sub["round_ratios"])  # type: ignore[arg-type]
        if args.only in (None, "e2e"):
            e2e = bench_e2e(args.redis_url, args.tasks, tmp)
            report["e2e_tasks_per_s"] = {k: round(v) for k, v in e2e.items()}
            report["e2e_ratio"] = round(e2e["taskyard"] / e2e["bare dramatiq"], 2)
        if args.only in (None, "latency"):
            report["dispatch_latency_at_100_per_s"] = bench_latency(args.redis_url, 100, 10, tmp)
        if args.only in (None, "webhook", "traces") and not shutil.which("wrk"):
            raise SystemExit("the webhook and traces benchmarks need wrk: apt-get install wrk")
        if args.only in (None, "webhook"):
            report["webhook"] = bench_webhook(
                args.redis_url, args.duration, tmp, fixtures=ROOT / "tests" / "fixtures" / "github-webhooks",
                serve=serve, run_wrk=run_wrk, free_port=free_port, wait_http=wait_http,
                engine_processes=args.engine_processes)
        if args.only in (None, "traces"):
            report["trace_ingest"] = bench_ingest(
                args.redis_url, args.duration, tmp, serve=serve, free_port=free_port, wait_http=wait_http,
                run_wrk=lambda url, d, t, script: run_wrk(url, d, t, script, connections=INGEST_CONNECTIONS))
        if args.only in (None, "sse"):
            report["sse"] = bench_sse(args.redis_url, tmp, serve=serve, free_port=free_port, wait_http=wait_http)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
