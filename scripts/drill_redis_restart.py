"""Reliability drill: Redis killed and restarted under a running Taskyard, AOF on (issue 8, docs/reliability.md).

    .venv/bin/python scripts/drill_redis_restart.py [--redis-url URL] [--long N] [--queued N] [--task-seconds S]
                                                    [--rate R] [--outage S] [--stop kill|shutdown] [--deadline S]

The drill starts its own `redis-server` on a free port (`--appendonly yes --appendfsync always --save ""`, data
in a temp dir) as Taskyard's store, and `serve --no-workers` plus two `taskyard worker` processes (2 tasks at
once each, heartbeat every 0.5 s) on it. The drill handler records its side effects in another Redis
(--redis-url, default database 2 of the local server, flushed first), so they are counted whatever happens to
the store.

1. before: 2 long tasks (they run from before the outage until 3 s after it) and 120 tasks of 0.25 s are
   submitted at once (a backlog the workers need seconds for); a client keeps submitting short tasks at a
   steady rate (every request has its own idempotency key).
2. outage: with tasks queued and running, the drill SIGKILLs redis-server (or SHUTDOWN NOSAVE with
   --stop shutdown) and keeps it down for --outage seconds (longer than the 1.5 s liveness window), polling
   /health; the client keeps submitting.
3. after: redis-server starts again on the same port and dir (it reloads the AOF); nothing else is restarted.
   The client goes on for a few seconds after the first 202, then the drill waits for every task to finish.

Passes when: while Redis is away every POST /task answer is 503 JSON {"error": ...} and /health answers 503
"degraded"; the API answers 202 again without a restart; the worker processes are the ones started at first
and still alive, and none of them was counted as gone (no task redelivered); the tasks queued at the kill are
still there after the restart and complete; every task accepted (202) completes and its side effect runs
exactly once. Figures: downtime, time to recover (Redis started again -> first 202; -> /health 200), lost and
duplicate counts, submit latency (p50, p99, max) before, during and after the outage, max RSS.
Exit 0 on pass, 1 on fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/2"  # where the handler records side effects (not the store)
HEARTBEAT_S = 0.5  # seconds between worker heartbeats: a process counts as gone after 1.5 s without one
DRAIN_TIMEOUT_S = 5.0  # seconds a worker stopped at the end gets to finish its tasks
CONCURRENCY = 2  # tasks at once per worker process
WORKERS = 2  # worker processes
BACKLOG_TASK_S = 0.25  # seconds each backlog task sleeps
BEFORE_S = 1.5  # seconds of steady load between the backlog and the kill
LONG_EXTRA_S = 3.0  # seconds a long task runs on after Redis is back (it starts about BEFORE_S before the kill)
AFTER_S = 3.0  # seconds the steady load goes on after the first 202 once Redis is back
HEALTH_EVERY_S = 0.1  # seconds between two /health polls during the outage
REDIS_START_TIMEOUT_S = 30.0  # seconds redis-server gets to load its AOF and answer PING
RECOVERY_TIMEOUT_S = 60.0  # seconds the API gets to answer 202 again once Redis is back
KEY_PREFIX = "redis-restart-"  # idempotency keys: KEY_PREFIX + "q<i>" (backlog) or "s<i>" (steady load)


class RedisServer:
    """A redis-server the drill owns: the same port and data dir on every start, appendfsync always."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.log = tmp / "redis.log"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> tuple[float, float]:
        """Start it; answers the monotonic times it was started and it first answered PING (AOF loaded)."""
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:  # refused, or still loading the AOF
                return False

        wait_for(up, timeout_s=REDIS_START_TIMEOUT_S, what="the drill's redis-server to answer PING")
        client.close()
        return started, time.monotonic()

    def stop(self, how: str) -> tuple[float, float]:
        """Take it away (SIGKILL, or SHUTDOWN NOSAVE); answers the monotonic times it was told and it was gone."""
        assert self.popen is not None
        at = time.monotonic()
        if how == "kill":
            self.popen.send_signal(signal.SIGKILL)
        else:
            try:
                redis.Redis.from_url(self.url).shutdown(nosave=True)
            except redis.ConnectionError:  # the connection closes as the server exits
                pass
        self.popen.wait(timeout=30)
        return at, time.monotonic()

    def close(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def steady_body(i: int) -> dict[str, Any]:
    return {"prompt": f"redis-restart req {i}", "worker": "drill", "idempotency_key": f"{KEY_PREFIX}s{i}"}


def poll_health(http: httpx.Client, seconds: float) -> list[tuple[int, str]]:
    """/health every HEALTH_EVERY_S for ``seconds``: (status, body) pairs, status 0 when no answer came."""
    polls = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            response = http.get("/health")
            polls.append((response.status_code, response.text[:200]))
        except httpx.HTTPError as exc:
            polls.append((0, type(exc).__name__))
        time.sleep(HEALTH_EVERY_S)
    return polls


def first_202_since(load: PacedLoad, since: float) -> float:
    """When the first 202 to a request sent at or after ``since`` arrived (monotonic; 0.0 while none has)."""
    return min((a.sent + a.latency_ms / 1000 for a in list(load.attempts) if a.status == 202 and a.sent >= since),
               default=0.0)


def recovered(when: Callable[[], float], *, what: str) -> float:
    """``when()`` once it is non-zero (a monotonic time), or 0.0 if RECOVERY_TIMEOUT_S passes first."""
    try:
        return wait_for(when, timeout_s=RECOVERY_TIMEOUT_S, what=what)
    except TimeoutError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 0.0


def stored_ids(store: redis.Redis) -> list[str]:
    return [str(i) for i in store.zrange(keys.key("idx_all", project="default"), 0, -1)]


def degraded(status: int, body: str) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return status == 503 and isinstance(payload, dict) and payload.get("status") == "degraded"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis for the side-effect records")
    parser.add_argument("--long", type=int, default=2, help="tasks that run from before the outage to after it")
    parser.add_argument("--queued", type=int, default=120, help="backlog tasks submitted before the outage")
    parser.add_argument("--task-seconds", type=float, default=BACKLOG_TASK_S, help="seconds a backlog task runs")
    parser.add_argument("--rate", type=float, default=10.0, help="steady submits per second")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds Redis stays down")
    parser.add_argument("--stop", choices=("kill", "shutdown"), default="kill", help="how Redis goes away")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds for every task to finish")
    args = parser.parse_args()

    started_at = datetime.now(UTC)
    effects = flush(args.redis_url)
    procs: list[Proc] = []
    health_polls: list[tuple[int, str]] = []
    with tempfile.TemporaryDirectory(prefix="taskyard-drill-") as tmp_name:
        tmp = Path(tmp_name)
        write_handler(tmp)
        server = RedisServer(tmp)
        server.start()
        store = redis.Redis.from_url(server.url, decode_responses=True)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        config = write_config(tmp, redis_url=server.url, concurrency=CONCURRENCY, heartbeat_s=HEARTBEAT_S,
                              drain_timeout_s=DRAIN_TIMEOUT_S, max_queue_depth=100_000, port=port)
        load = PacedLoad(base_url, n=1_000_000, rate_per_s=args.rate, threads=4, body_of=steady_body)
        try:
            procs.append(start_serve("serve", config, tmp=tmp, redis_url=args.redis_url, port=port,
                                     no_workers=True))
            workers = [start_worker(f"worker-{i}", config, tmp=tmp, redis_url=args.redis_url)
                       for i in range(WORKERS)]
            procs.extend(workers)
            with httpx.Client(base_url=base_url, timeout=10) as http:
                long_s = BEFORE_S + args.outage + LONG_EXTRA_S
                backlog = [send(http, i, {"prompt": f"sleep:{long_s if i < args.long else args.task_seconds}",
                                          "worker": "drill", "idempotency_key": f"{KEY_PREFIX}q{i}"})
                           for i in range(args.long + args.queued)]
                load.start()
                time.sleep(BEFORE_S)
                for p in procs:
                    p.sample_rss()
                pending_at_kill = store.zrange(keys.key("idx_state", project="default", state="pending"), 0, -1)
                running_at_kill = store.zrange(keys.key("idx_state", project="default", state="dispatched"), 0, -1)
                down_at, gone_at = server.stop(args.stop)
                health_polls = poll_health(http, args.outage)
                restart_at, back_at = server.start()
                pending_after_restart = store.zrange(keys.key("idx_state", project="default", state="pending"),
                                                     0, -1)
                first_202 = recovered(lambda: first_202_since(load, restart_at), what="a 202 after Redis is back")
                health_back = recovered(lambda: time.monotonic() if http.get("/health").status_code == 200 else 0.0,
                                        what="/health 200 after Redis is back")
                time.sleep(AFTER_S)
                load.stop()
                load.join(timeout_s=30)
                queued_ids = set(pending_at_kill)

                def all_final() -> bool:
                    for p in procs:
                        p.sample_rss()
                    ids = stored_ids(store)
                    states = count_states(task_records(store, ids, ("state",)))
                    return states.get("completed", 0) + states.get("failed", 0) == len(ids)

                try:
                    wait_for(all_final, timeout_s=args.deadline, what="every stored task to finish")
                except TimeoutError as exc:
                    print(f"drill: {exc}", file=sys.stderr)
                time.sleep(POLL_S)
            workers_alive = all(w.alive() for w in workers)
            ids = stored_ids(store)
            records = task_records(store, ids, ("state", "lost", "attempts", "idempotency_key", "error"))
        finally:
            stop_all(procs)
            server.close()
        redis_log = server.log.read_text(errors="replace")

    attempts: list[Attempt] = sorted([*backlog, *load.attempts], key=lambda a: a.sent)
    # Requests sent between the signal and redis-server's exit may still have been served: they count as
    # "before"; requests sent once it was started again may be served before the drill's PING: "after".
    marks = [("before", 0.0), ("during", gone_at), ("after", restart_at)]
    phases: dict[str, list[Attempt]] = {"before": [], "during": [], "after": []}
    for a in load.attempts:
        phases[phase_of(a.sent, marks)].append(a)
    accepted = {a.task_id for a in attempts if a.status == 202 and a.task_id}
    accepted_before = {a.task_id for a in attempts if a.status == 202 and a.task_id and a.sent < down_at}
    during_answers = phases["during"]
    done = effects.smembers(DONE_KEY)
    runs = int(effects.get(RUNS_KEY) or 0)
    states = count_states(records)
    kinds: dict[str, dict[str, int]] = {}
    for name, items in phases.items():
        for a in items:
            kind = f"connection error ({a.error})" if a.status is None else f"{a.status} {a.body[:60]}"
            if a.status == 202:
                kind = "202"
            kinds.setdefault(name, {})[kind] = kinds.setdefault(name, {}).get(kind, 0) + 1
    health_kinds: dict[str, int] = {}
    for status, body in health_polls:
        key = f"{status} {body[:80]}"
        health_kinds[key] = health_kinds.get(key, 0) + 1
    figures: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end",
        "stop": args.stop,
        "long_tasks": args.long,
        "backlog_tasks": args.queued,
        "steady_rate_per_s": args.rate,
        "queued_at_kill": len(pending_at_kill),
        "running_at_kill": len(running_at_kill),
        "downtime_s": round(back_at - down_at, 2),
        "redis_start_to_ping_s": round(back_at - restart_at, 3),
        "redis_start_to_first_202_s": round(first_202 - restart_at, 3),
        "redis_start_to_health_200_s": round(health_back - restart_at, 3),
        "aof_loaded": "DB loaded from append only file" in redis_log or "Reading the remaining AOF" in redis_log,
        "queued_at_kill_pending_after_restart": len(queued_ids & set(pending_after_restart)),
        "answers": kinds,
        "health_during_outage": health_kinds,
        "latency_202": {n: latency_figures([a.latency_ms for a in it if a.status == 202]) for n, it in phases.items()},
        "latency_all": {n: latency_figures([a.latency_ms for a in it]) for n, it in phases.items()},
        "accepted_202": len(accepted),
        "accepted_before_outage": len(accepted_before),
        "stored_tasks": len(records),
        "stored_without_202": len(set(records) - accepted),
        "states": states,
        "lost": len([t for t in accepted if records.get(t, {}).get("state") != "completed"]),
        "tasks_redelivered_after_a_lost_process": sum(1 for r in records.values() if int(r["lost"] or 0) > 0),
        "redelivered": [{"key": r["idempotency_key"], "attempts": r["attempts"], "lost": r["lost"],
                         "running_at_kill": t in running_at_kill}
                        for t, r in records.items() if int(r["lost"] or 0) > 0][:10],
        "distinct_side_effects": len(done),
        "side_effect_runs": runs,
        "duplicate_runs": runs - len(done),
        "max_rss_mib": {p.name: mib(p.peak_rss) for p in procs},
    }
    checks = {
        "while Redis is away, every POST /task answer is 503 JSON {error}": bool(during_answers) and all(
            a.status == 503 and a.json_error() for a in during_answers),
        "while Redis is away, /health answers 503 degraded": bool(health_polls) and all(
            degraded(s, b) for s, b in health_polls),
        "the API answers 202 again without a restart": first_202 > restart_at,
        "the worker processes ran on through the outage (never restarted)": workers_alive,
        "tasks queued at the kill are still stored after the restart": queued_ids <= set(records),
        "every task accepted before the outage completed": all(
            records.get(t, {}).get("state") == "completed" for t in accepted_before),
        "every task accepted completed": figures["lost"] == 0,
        "no live process counted as gone (no task redelivered)": (
            figures["tasks_redelivered_after_a_lost_process"] == 0),
        "every stored task's side effect ran exactly once": done == set(records) and runs == len(done),
    }
    figures["checks"] = checks
    ok = all(checks.values())
    print(json.dumps(figures, indent=2))
    for check, passed in checks.items():
        print(f"  {'ok  ' if passed else 'FAIL'} {check}")
    print(f"redis restart drill: {'PASS' if ok else 'FAIL'}: {sum(checks.values())}/{len(checks)} checks; "
          f"down {figures['downtime_s']} s, first 202 {figures['redis_start_to_first_202_s']} s after Redis "
          f"was started again; {len(accepted)} accepted, {figures['lost']} lost, "
          f"{figures['duplicate_runs']} duplicate runs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
