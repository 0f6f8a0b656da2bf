"""The webhook benchmark (run by scripts/bench.py --only webhook): signed GitHub deliveries in, tasks out.

Signed `pull_request.opened` deliveries (a fresh X-GitHub-Delivery each, so none is a duplicate) at 32
connections (wrk) against `serve --no-workers` with 200 rules loaded, one of which matches. Measures the 202
rate with p50/p99, and the rate of the whole path (webhook in -> event matched -> task admitted on the sink
worker's queue) from the first delivery to the last task admitted. The sink worker is online (a heartbeat from
this process) but consumes nothing, so only the webhook path is measured.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from pathlib import Path
from typing import Any

import redis

from config.settings import WorkerSpec
from engine import registry
from engine.clock import now_ms
from engine.store import SyncRunner

SECRET = "bench-secret"
RULES = 200
ENGINE_DRAIN_LIMIT_S = 120  # seconds to wait for the engine to catch up after wrk stops
WRK_SCRIPT = """local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "pull_request"
wrk.headers["X-Hub-Signature-256"] = "{signature}"
wrk.body = io.open("{body}", "rb"):read("*a")
request = function()
  n = n + 1
  -- unique per thread and request: every delivery is new work, none a duplicate
  wrk.headers["X-GitHub-Delivery"] = string.format("%d-%d-%d", os.time(), tid, n)
  return wrk.format()
end
"""


def rules_yaml() -> str:
    """199 rules that do not match a `pull_request.opened` on master (other types, other branches, a negated
    label, another source), then the one that does: every delivery is checked against the whole book."""
    lines = []
    for i in range(RULES - 1):
        if i % 4 == 0:
            lines.append(f"  - {{source: github, on: [issues.opened, push], worker: sink, "
                         f"prompt: 'r{i} {{{{.title}}}}'}}")
        elif i % 4 == 1:
            lines.append(f"  - {{source: github, on: [pull_request.opened], filter: {{base_branch: 'release-{i}'}}, "
                         f"worker: sink, prompt: 'r{i}'}}")
        elif i % 4 == 2:
            lines.append(f"  - {{source: github, on: ['pull_request.*'], filter: {{not: {{labels: bug}}}}, "
                         f"worker: sink, prompt: 'r{i}'}}")
        else:
            lines.append(f"  - {{source: other, on: ['*'], worker: sink, prompt: 'r{i}'}}")
    lines.append("  - {source: github, on: [pull_request.opened], filter: {base_branch: master, "
                 "pull_request.draft: false}, worker: sink, prompt: 'Review #{{.number}}: {{.title}}'}")
    return "\n".join(lines) + "\n"


def bench_webhook(redis_url: str, duration: int, tmp: Path, *, fixtures: Path, serve: Any, run_wrk: Any,
                  free_port: Any, wait_http: Any, engine_processes: int = 1) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    body = (fixtures / "pull_request.opened.json").read_bytes()
    (tmp / "body.json").write_bytes(body)
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    script = tmp / "webhook.lua"
    script.write_text(WRK_SCRIPT.format(signature=signature, body=tmp / "body.json"))
    spec = WorkerSpec(name="sink", handler="workers.builtin:noop", max_queue_depth=100_000_000)
    runner = SyncRunner(client)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            runner.run(registry.heartbeat(proc_id="bench" * 6 + "cd", specs=[spec], now_ms=now_ms(),
                                          ttl_ms=15_000, host="bench", pid=os.getpid()))
            stop.wait(1)

    threading.Thread(target=heartbeat, daemon=True).start()
    config = tmp / "webhook.yaml"
    config.write_text(f"redis_url: {redis_url}\nlog_level: warning\nengine_processes: {engine_processes}\n"
                      f"sources:\n  github: {{secret: {SECRET}}}\n"
                      "workers:\n  - {name: sink, handler: 'workers.builtin:noop', max_queue_depth: 100000000}\n"
                      f"rules:\n{rules_yaml()}")
    port = free_port()
    with serve(config, port, tmp / "webhook-serve.log"):
        wait_http(f"http://127.0.0.1:{port}/health")
        t0 = time.monotonic()
        result = run_wrk(f"http://127.0.0.1:{port}/webhook/github", duration, tmp, script)
        accepted_s = time.monotonic() - t0
        # Read both counters together each time: deliveries in flight when wrk stopped are stored after it.
        while True:
            received, created = (int(v or 0) for v in client.hmget("ty:metrics", "events_received",
                                                                    "tasks_created"))
            if created >= received or time.monotonic() - t0 > duration + ENGINE_DRAIN_LIMIT_S:
                break
            time.sleep(0.01)
        total_s = time.monotonic() - t0
    stop.set()
    client.flushdb()
    return {"accepted_per_s": result["rps"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
            "errors": result["errors"], "events": received, "tasks": created,
            "webhook_to_task_per_s": round(created / total_s, 1), "engine_lag_s": round(total_s - accepted_s, 2),
            "engine_processes": engine_processes}
