"""Reliability drill: soak (issue 8, docs/reliability.md).

    .venv/bin/python scripts/drill_soak.py [--duration S] [--rate N] [--webhook-rate N] [--trace-rate N]
                                           [--retention S] [--workers N]

Starts its own Redis (``redis-server`` on a free port, in memory, so its memory is the drill's alone),
``serve --no-workers`` and worker processes for one worker ``soak`` (the ``echo`` handler), with a GitHub source
whose one rule turns each ``pull_request.opened`` into a task, and retention periods of ``--retention`` seconds
for tasks, events and traces. Then, for ``--duration`` seconds (default 30 minutes), it sends task submits
(default 200/s), signed webhooks (10/s) and external traces (5/s, three requests each) at steady rates (open
loop, ``scripts/soak_load.py``), samples every process's RSS and Redis's memory every 10 s, and at the end waits
for every task to finish.

Passes when:
- nothing is lost: every 202 (submit and webhook) is a task that completed, none failed, no request failed;
- memory is flat: each process's mean RSS over the last 10% of the run is within 10% of its mean over the
  baseline window (10% of the run from 25% on, or from two sweeps past the retention period if that is later:
  once retention deletes steadily), and so is Redis's ``used_memory``;
- Redis is bounded by retention: the task records left at the end are at most what the rate and the retention
  period (plus the sweep's minute) allow;
- latencies are stable: each kind's p99 over the last 10% is at most twice its p99 over the baseline window.
Exit 0 on pass, 1 on fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drill_common import ROOT, Proc, free_port, mib, start_serve, start_worker, stop_all, wait_for  # noqa: E402
from soak_load import KINDS, Load, Rates, percentile  # noqa: E402

SAMPLE_EVERY_S = 10.0  # seconds between two memory samples
SWEEP_EVERY_S = 60.0  # seconds between two retention sweeps (workers/engine_queue.py)
BOUND_SLACK_S = 60.0  # seconds of records past retention + one sweep that may still be stored at the end
MAX_GROWTH = 0.10  # memory growth allowed from the baseline window to the end
MAX_P99_RATIO = 2.0  # p99 at the end over p99 in the baseline window, at most
DRAIN_DEADLINE_S = 180.0  # seconds for the backlog to finish after the load stops
CONCURRENCY = 8  # tasks at once per worker process
SECRET = "soak-secret"
WEBHOOK_BODY = ROOT / "tests" / "fixtures" / "github-webhooks" / "pull_request.opened.json"


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    popen = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp)], stdout=(tmp / "redis.log").open("wb"),
                             stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(up, timeout_s=10, what="the drill's redis-server")
    return popen, url


def write_config(tmp: Path, *, redis_url: str, retention_s: float) -> Path:
    path = tmp / "soak.yaml"
    path.write_text(
        f"redis_url: {redis_url}\nlog_level: info\n"
        f"retention: {{tasks: {retention_s}, events: {retention_s}, traces: {retention_s}}}\n"
        f"sources:\n  github: {{secret: {SECRET}}}\n"
        "workers:\n  - {name: soak, handler: 'workers.builtin:echo', concurrency: "
        f"{CONCURRENCY}, max_queue_depth: 1000000, timeout: 60s}}\n"
        "rules:\n  - {source: github, on: [pull_request.opened], worker: soak, prompt: 'Review #{{.number}}: "
        "{{.title}}'}\n")
    return path


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY_S: the RSS of each process (a serve's children apart, as ``serve/<pid>``) and Redis's
    used memory and key count, with the seconds since the load started."""

    def __init__(self, procs: list[Proc], client: redis.Redis, t0: float) -> None:
        super().__init__(daemon=True)
        self.procs, self.client, self.t0 = procs, client, t0
        self.samples: list[dict[str, object]] = []
        self.stopped = threading.Event()

    def sample(self) -> None:
        rss: dict[str, float] = {}
        for p in self.procs:
            try:
                root = psutil.Process(p.popen.pid)
                rss[p.name] = mib(root.memory_info().rss)
                for i, child in enumerate(sorted(root.children(recursive=True), key=lambda c: c.pid)):
                    rss[f"{p.name}/child{i}"] = mib(child.memory_info().rss)
            except psutil.Error:
                continue
        info = self.client.info("memory")
        self.samples.append({"t": round(time.monotonic() - self.t0, 1), "rss_mib": rss, "load1": os.getloadavg()[0],
                             "redis_used_mib": mib(int(info["used_memory"])), "redis_keys": self.client.dbsize()})

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_EVERY_S):
            self.sample()


def window_mean(samples: list[dict[str, object]], start: float, end: float, pick) -> float:  # type: ignore[no-untyped-def]
    values = [v for s in samples if start <= float(s["t"]) <= end and (v := pick(s)) is not None]  # type: ignore[arg-type]
    return sum(values) / len(values) if values else 0.0


def count_task_records(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter(match="ty:task:*", count=5000, _type="hash"))


SWEEP_LINE = re.compile(r"retention sweep (.*)$")


def sweep_summary(serve_log: Path) -> dict[str, object]:
    """What the serve process's retention sweeps logged: how many ran, how many ran out of their time budget,
    the tasks they deleted and the longest one."""
    runs = [dict(field.split("=", 1) for field in match.group(1).split() if "=" in field)
            for line in serve_log.read_text(errors="replace").splitlines() if (match := SWEEP_LINE.search(line))]
    return {"runs": len(runs), "unfinished": sum(1 for r in runs if r.get("finished") == "False"),
            "deleted_tasks": sum(int(r.get("deleted_tasks", 0)) for r in runs),
            "max_seconds": max((float(r.get("seconds", 0)) for r in runs), default=0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=200.0, help="task submits per second")
    parser.add_argument("--webhook-rate", type=float, default=10.0, help="signed webhooks per second")
    parser.add_argument("--trace-rate", type=float, default=5.0, help="external traces per second")
    parser.add_argument("--retention", type=float, default=120.0,
                        help="seconds tasks, events, traces are kept (at least 60)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    args = parser.parse_args()
    base_start = max(0.25 * args.duration, args.retention + 2 * SWEEP_EVERY_S)  # once retention deletes steadily
    if base_start + 0.1 * args.duration > 0.9 * args.duration:
        parser.error(f"--duration {args.duration:g} is too short for --retention {args.retention:g}: the baseline "
                     "window (from two sweeps past the retention period) must end before the final 10%")
    if shutil.which("redis-server") is None:
        print("soak drill: redis-server is not on PATH", file=sys.stderr)
        return 2

    started_at = datetime.now(UTC)
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="taskyard-soak-") as tmp_name:
        tmp = Path(tmp_name)
        redis_proc, redis_url = start_redis(tmp)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            port = free_port()
            config = write_config(tmp, redis_url=redis_url, retention_s=args.retention)
            procs.append(start_serve("serve", config, tmp=tmp, redis_url=redis_url, port=port, no_workers=True))
            procs.extend(start_worker(f"worker-{i}", config, tmp=tmp, redis_url=redis_url)
                         for i in range(args.workers))
            load = Load(f"http://127.0.0.1:{port}", worker="soak", webhook_body=WEBHOOK_BODY, secret=SECRET,
                        rates=Rates(args.rate, args.webhook_rate, args.trace_rate))
            t0 = time.monotonic()
            sampler = Sampler(procs, client, t0)
            sampler.sample()
            sampler.start()

            async def drive() -> None:
                runner = asyncio.create_task(load.run())
                await asyncio.sleep(args.duration)
                load.stop.set()
                await runner

            asyncio.run(drive())
            load_s = time.monotonic() - t0
            metrics = client.hgetall("ty:metrics")
            expected = (load.recorder.sent["submit"] - load.recorder.errors["submit"]
                        + load.recorder.sent["webhook"] - load.recorder.errors["webhook"])

            def drained() -> dict[str, str] | None:
                m = client.hgetall("ty:metrics")
                finished = sum(int(m.get(f"tasks_{s}", 0)) for s in ("completed", "failed", "cancelled"))
                return m if int(m.get("tasks_created", 0)) >= expected and finished >= expected else None

            try:
                metrics = wait_for(drained, timeout_s=DRAIN_DEADLINE_S, what="the backlog to finish")
            except TimeoutError as exc:
                print(f"soak drill: {exc}", file=sys.stderr)
            drain_s = time.monotonic() - t0 - load_s
            sampler.stopped.set()
            sampler.join()
            sampler.sample()
            task_records = count_task_records(client)
            sweeps = sweep_summary(procs[0].log)
        finally:
            stop_all(procs)
            redis_proc.terminate()
            redis_proc.wait()

    duration = args.duration
    base = (base_start, base_start + 0.1 * duration)
    final = (0.90 * duration, duration)
    samples = sampler.samples
    names = sorted({name for s in samples for name in s["rss_mib"]})  # type: ignore[attr-defined]
    memory: dict[str, dict[str, float]] = {}
    for name in [*names, "redis"]:
        pick = ((lambda s: s["redis_used_mib"]) if name == "redis"
                else (lambda s, name=name: s["rss_mib"].get(name)))  # type: ignore[misc]
        before, after = window_mean(samples, *base, pick), window_mean(samples, *final, pick)
        peak = max((v for s in samples if (v := pick(s)) is not None), default=0.0)
        memory[name] = {"baseline_mib": round(before, 1), "final_mib": round(after, 1), "peak_mib": peak,
                        "growth": round(after / before - 1, 3) if before else 0.0}
    latency: dict[str, dict[str, object]] = {}
    for kind in KINDS:
        b = load.recorder.window(kind, int(base[0] // 60), int(base[1] // 60))
        f = load.recorder.window(kind, int(final[0] // 60), int(final[1] // 60))
        p99_b, p99_f = percentile(b, 0.99), percentile(f, 0.99)
        latency[kind] = {"sent": load.recorder.sent[kind], "errors": load.recorder.errors[kind],
                         "rate_per_s": round(load.recorder.sent[kind] / load_s, 1),
                         "baseline_p99_ms": round(p99_b, 1), "final_p99_ms": round(p99_f, 1),
                         "p99_ratio": round(p99_f / p99_b, 2) if p99_b else 0.0,
                         "per_minute": load.recorder.per_minute(kind)}
    task_rate = args.rate + args.webhook_rate
    record_bound = int(task_rate * (args.retention + SWEEP_EVERY_S + BOUND_SLACK_S))
    created = int(metrics.get("tasks_created", 0))
    completed = int(metrics.get("tasks_completed", 0))
    checks = {
        "nothing lost": created == expected and completed == expected and not any(load.recorder.errors.values()),
        "memory flat": all(m["growth"] < MAX_GROWTH for m in memory.values()),
        "redis bounded by retention": task_records <= record_bound,
        "p99 stable": all(float(v["p99_ratio"]) <= MAX_P99_RATIO for v in latency.values()),  # type: ignore[arg-type]
    }
    figures = {
        "started_at": started_at.isoformat(timespec="seconds"), "machine": f"{os.cpu_count()} cores",
        "duration_s": duration, "load_s": round(load_s, 1), "drain_s": round(drain_s, 1),
        "retention_s": args.retention, "worker_processes": args.workers,
        "accepted": expected, "tasks_created": created, "tasks_completed": completed,
        "tasks_failed": int(metrics.get("tasks_failed", 0)), "events_received": int(metrics.get("events_received", 0)),
        "task_records_at_end": task_records, "task_record_bound": record_bound, "retention_sweeps": sweeps,
        "redis_keys_at_end": samples[-1]["redis_keys"],
        "load_average_1min": {"mean": round(sum(float(s["load1"]) for s in samples) / len(samples), 2),  # type: ignore[arg-type]
                              "max": max(float(s["load1"]) for s in samples)},  # type: ignore[arg-type]
        "memory": memory, "latency": latency,
        "error_samples": load.recorder.error_samples, "checks": checks,
    }
    print(json.dumps(figures, indent=2))
    ok = all(checks.values())
    summary = ", ".join(f"{name}: {'ok' if passed else 'FAILED'}" for name, passed in checks.items())
    print(f"soak drill: {'PASS' if ok else 'FAIL'}: {summary}; {completed}/{expected} completed; submit p99 "
          f"{latency['submit']['baseline_p99_ms']} -> {latency['submit']['final_p99_ms']} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
