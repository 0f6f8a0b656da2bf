"""Reliability drill: `taskyard serve` SIGKILLed while submits are in flight, then restarted (issue 8).

    .venv/bin/python scripts/drill_api_crash.py [--redis-url URL] [--requests N] [--rate R] [--clients N]
                                                [--kill-after N] [--workers N] [--deadline S]

`serve --no-workers` and two `taskyard worker` processes share one Redis database (default: database 2 of the
local server), which the drill flushes first. Client threads send N submits at a steady rate, request i with
prompt "api-crash req <i>" and idempotency key "api-crash-<i>", one attempt each. Once --kill-after requests
are answered (and one is in flight, if that comes within a second), the drill SIGKILLs serve's whole process
group (serve and its engine process) and starts serve again on the same port at once; the workers run on.
Requests sent while serve is down fail (a connection error is no answer, not an error answer); after one
second of them the load holds until the restarted serve answers /health 200, then goes on to the end.

Then every request that got no answer is retried once with its idempotency key: a request whose task was
stored before the kill (its answer lost on the wire) gets that task back (202 with X-Idempotent-Replay), the
others are stored now. The drill waits for every stored task to finish and checks:

- every 202 is a stored task that completed, and its side effect ran exactly once;
- no request answered with an error status stored a task; each request stored at most one task;
- every error answer is JSON {"error": ...} and none is a 500;
- every request sent after the restarted serve answered /health 200 got a 202;
- the retry with the same key found every task stored before the kill (no request stored twice).

Figures: time to recover (kill -> restarted serve answers /health 200), submit latency (p50, p99, max) of the
requests sent before the kill, during the outage and after recovery, answers lost at the kill, max RSS.
Exit 0 on pass, 1 on fail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drill_common import (  # noqa: E402
    DONE_KEY,
    POLL_S,
    RUNS_KEY,
    Proc,
    count_states,
    flush,
    free_port,
    keys,
    kill_group,
    latency_figures,
    mib,
    start_serve,
    start_worker,
    stop_all,
    task_records,
    wait_for,
    write_config,
    write_handler,
)
from drill_load import Attempt, PacedLoad, phase_of, send  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/2"
HEARTBEAT_S = 0.5  # seconds between worker heartbeats
DRAIN_TIMEOUT_S = 5.0  # seconds a worker stopped at the end gets to finish its tasks
CONCURRENCY = 4  # tasks at once per worker process
DOWN_LOAD_S = 1.0  # seconds the load goes on against the dead serve before it holds until serve is back
IN_FLIGHT_WAIT_S = 1.0  # seconds the drill waits for a request to be in flight before it kills serve
RECOVERY_TIMEOUT_S = 60.0  # seconds the restarted serve gets to answer /health 200
RSS_EVERY_S = 0.25  # seconds between two RSS samples of the drill's processes
KEY_PREFIX = "api-crash-"  # idempotency key of request i: KEY_PREFIX + str(i)


def body_of(i: int) -> dict[str, Any]:
    return {"prompt": f"api-crash req {i}", "worker": "drill", "idempotency_key": f"{KEY_PREFIX}{i}"}


class RssSampler(threading.Thread):
    """Samples the peak RSS of every process in ``procs`` (a list the drill appends to) until stopped."""

    def __init__(self, procs: list[Proc]) -> None:
        super().__init__(name="rss", daemon=True)
        self.procs = procs
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(RSS_EVERY_S):
            for proc in list(self.procs):
                if proc.alive():
                    proc.sample_rss()


def stored_by_request(client: redis.Redis) -> tuple[dict[int, list[str]], dict[str, dict[str, str | None]]]:
    """Every stored task of the drill (request number from its idempotency key) and the task records."""
    ids = [str(i) for i in client.zrange(keys.key("idx_all", project="default"), 0, -1)]
    records = task_records(client, ids, ("state", "prompt", "idempotency_key"))
    by_request: dict[int, list[str]] = {}
    for task_id, record in records.items():
        key = record["idempotency_key"] or ""
        n = int(key.removeprefix(KEY_PREFIX)) if key.startswith(KEY_PREFIX) else -1
        by_request.setdefault(n, []).append(task_id)
    return by_request, records


def health_status(http: httpx.Client) -> int:
    """The status /health answers, 0 when no answer comes (serve not listening yet)."""
    try:
        return http.get("/health").status_code
    except httpx.HTTPError:
        return 0


def answers_by_kind(attempts: list[Attempt]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for a in attempts:
        kind = f"connection error ({a.error})" if a.status is None else str(a.status)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--requests", type=int, default=500, help="submits, one attempt each")
    parser.add_argument("--rate", type=float, default=40.0, help="submits per second")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--kill-after", type=int, default=120, help="answered submits before the kill")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds for every task to finish")
    args = parser.parse_args()

    started_at = datetime.now(UTC)
    client = flush(args.redis_url)
    procs: list[Proc] = []
    sampler = RssSampler(procs)
    with tempfile.TemporaryDirectory(prefix="taskyard-drill-") as tmp_name:
        tmp = Path(tmp_name)
        write_handler(tmp)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        config = write_config(tmp, redis_url=args.redis_url, concurrency=CONCURRENCY, heartbeat_s=HEARTBEAT_S,
                              drain_timeout_s=DRAIN_TIMEOUT_S, max_queue_depth=args.requests * 4, port=port)
        try:
            serve = start_serve("serve", config, tmp=tmp, redis_url=args.redis_url, port=port, no_workers=True)
            procs.append(serve)
            procs.extend(start_worker(f"worker-{i}", config, tmp=tmp, redis_url=args.redis_url)
                         for i in range(args.workers))
            sampler.start()
            load = PacedLoad(base_url, n=args.requests, rate_per_s=args.rate, threads=args.clients,
                             body_of=body_of)
            load.start()
            wait_for(lambda: load.answered() >= args.kill_after, timeout_s=120, what="submits before the kill")
            deadline = time.monotonic() + IN_FLIGHT_WAIT_S
            while load.in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
            in_flight_at_kill = load.in_flight
            serve.sample_rss()
            killed_at = time.monotonic()
            kill_group(serve)
            # Requests go on for DOWN_LOAD_S against the dead port, then hold until serve is back, so the
            # figures after recovery do not depend on how long the restart takes.
            holder = threading.Timer(DOWN_LOAD_S, load.hold)
            holder.start()
            restarted = start_serve("serve-restarted", config, tmp=tmp, redis_url=args.redis_url, port=port,
                                    no_workers=True)
            procs.append(restarted)
            ready_s = time.monotonic() - killed_at
            with httpx.Client(base_url=base_url, timeout=5) as http:
                wait_for(lambda: health_status(http) == 200, timeout_s=RECOVERY_TIMEOUT_S,
                         what="the restarted serve to answer /health 200")
            recovered_at = time.monotonic()
            holder.join()
            load.release()
            load.join(timeout_s=args.requests / args.rate + 60)
            first = sorted(load.attempts, key=lambda a: a.n)
            stored_before_retry, _ = stored_by_request(client)
            # Retry every request that got no answer, once, with its idempotency key.
            with httpx.Client(base_url=base_url, timeout=10) as http:
                retries = {a.n: send(http, a.n, body_of(a.n)) for a in first if a.status is None}

            def all_final() -> bool:
                _, records = stored_by_request(client)
                states = count_states(records)
                return states.get("completed", 0) + states.get("failed", 0) == len(records)

            try:
                wait_for(all_final, timeout_s=args.deadline, what="every stored task to finish")
            except TimeoutError as exc:
                print(f"drill: {exc}", file=sys.stderr)
            time.sleep(POLL_S)
        finally:
            sampler.stopped.set()
            stop_all(procs)

    by_request, records = stored_by_request(client)
    done = client.smembers(DONE_KEY)
    runs = int(client.get(RUNS_KEY) or 0)
    marks = [("before", 0.0), ("during", killed_at), ("after", recovered_at)]
    phases: dict[str, list[Attempt]] = {"before": [], "during": [], "after": []}
    for a in first:
        phases[phase_of(a.sent, marks)].append(a)
    accepted = {a.n: a.task_id for a in first if a.status == 202}
    no_answer = [a for a in first if a.status is None]
    error_answers = [a for a in [*first, *retries.values()] if a.status is not None and a.status != 202]
    # A task stored for a request that never heard back: its answer was lost when serve died.
    answer_lost = [a.n for a in no_answer if stored_before_retry.get(a.n)]
    stored_after_error = [a.n for a in first if a.status not in (None, 202) and by_request.get(a.n)]
    accepted_ids = [t for t in accepted.values() if t]
    figures: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end",
        "redis_url": args.redis_url,
        "requests": args.requests,
        "rate_per_s": args.rate,
        "client_threads": args.clients,
        "worker_processes": args.workers,
        "in_flight_at_kill": in_flight_at_kill,
        "restarted_serve_ready_s": round(ready_s, 2),
        "time_to_recover_s": round(recovered_at - killed_at, 2),
        "answers": {name: answers_by_kind(items) for name, items in phases.items()},
        "latency_202": {name: latency_figures([a.latency_ms for a in items if a.status == 202])
                        for name, items in phases.items()},
        "latency_all": {name: latency_figures([a.latency_ms for a in items]) for name, items in phases.items()},
        "accepted_202": len(accepted),
        "no_answer": len(no_answer),
        "answer_lost_stored_before_kill": len(answer_lost),
        "answer_lost_requests": answer_lost[:20],
        "error_answers": answers_by_kind(error_answers),
        "stored_after_error_answer": len(stored_after_error),
        "retries": len(retries),
        "retries_202_replay": sum(1 for r in retries.values() if r.status == 202 and r.replay),
        "retries_202_new": sum(1 for r in retries.values() if r.status == 202 and not r.replay),
        "stored_tasks": len(records),
        "states": count_states(records),
        "distinct_side_effects": len(done),
        "side_effect_runs": runs,
        "duplicate_runs": runs - len(done),
        "max_rss_mib": {p.name: mib(p.peak_rss) for p in procs},
    }
    retry_ok = all(
        r.status == 202 and (r.task_id in by_request.get(n, []))
        and (r.replay == (n in answer_lost)) for n, r in retries.items())
    checks = {
        "every 202 is a stored task that completed": all(
            records.get(t, {}).get("state") == "completed" for t in accepted_ids),
        "every 202's side effect ran": all(t in done for t in accepted_ids),
        "every stored task completed exactly once": (
            all(r["state"] == "completed" for r in records.values()) and done == set(records)
            and runs == len(done)),
        "a 202 names the one task stored for its request": all(
            by_request.get(n) == [t] for n, t in accepted.items()),
        "no request stored twice": all(len(ids) <= 1 for n, ids in by_request.items() if n >= 0),
        "no task stored for an error answer": not stored_after_error,
        "error answers are JSON {error}, none is 500": all(
            a.json_error() and a.status != 500 for a in error_answers),
        "every request sent after recovery got 202": all(a.status == 202 for a in phases["after"]),
        "the retry with the same key found the stored task or stored it once": retry_ok,
        "nothing stored outside the drill's requests": -1 not in by_request,
    }
    figures["checks"] = checks
    ok = all(checks.values())
    print(json.dumps(figures, indent=2))
    for check, passed in checks.items():
        print(f"  {'ok  ' if passed else 'FAIL'} {check}")
    print(f"api crash drill: {'PASS' if ok else 'FAIL'}: {sum(checks.values())}/{len(checks)} checks; "
          f"{len(accepted)} x 202 of {args.requests}, {len(no_answer)} without an answer "
          f"({len(answer_lost)} answers lost at the kill), recover {figures['time_to_recover_s']} s, "
          f"{len(records)} stored / {len(done)} done / {runs} runs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
