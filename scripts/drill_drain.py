"""Reliability drill: graceful drain on SIGTERM, of a worker process and of serve (issue 8, docs/reliability.md).

    .venv/bin/python scripts/drill_drain.py [--redis-url URL] [--tasks N] [--long-tasks N] [--drain-timeout S]
                                            [--deadline S]

Flushes its Redis database (default: database 9 of the local server) first. Three phases:

1. worker, short tasks: `serve --no-workers` and two `taskyard worker` processes (2 tasks at once each) work
   through tasks of 1 s; one worker process gets SIGTERM while it runs tasks. Its running tasks should finish
   there (1 s < drain timeout) and it should exit within the drain timeout.
2. worker, long tasks: the same with tasks of 3 x the drain timeout: the stopping process should abort them at
   the drain timeout and requeue them, and they should complete on the other process.
3. serve: `serve` with its in-process workers gets SIGTERM while a client keeps submitting. The issue asks for
   503 `{"error": "server draining"}` to new submits while running tasks finish within the drain timeout. The
   drill records every answer after the signal (status and body, or the connection error), the time serve
   takes to exit, and, after a fresh worker process has drained the queue, that every 202 is a completed task
   and that nothing else was stored.

In every phase the handler records its id in a set and bumps a run counter, so a task run twice shows.
Passes when no task is lost (every accepted task completes), no side effect runs twice, each process exits
within drain timeout + DRAIN_SLACK_S, and serve answers new submits during its drain with 503 `server draining`.
Exit 0 on pass, 1 on fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drill_common import (  # noqa: E402
    DEFAULT_REDIS_URL,
    DONE_KEY,
    RUNS_KEY,
    Proc,
    count_states,
    flush,
    free_port,
    held_by,
    keys,
    mib,
    start_serve,
    start_worker,
    stop_all,
    task_records,
    wait_for,
    write_config,
    write_handler,
)

HEARTBEAT_S = 0.5  # seconds between worker heartbeats
CONCURRENCY = 2  # tasks at once per worker process
SHORT_TASK_S = 1.0  # seconds a task of phase 1 sleeps: shorter than the drain timeout
DRAIN_SLACK_S = 5.0  # seconds past the drain timeout a stopping process may take to exit (interpreter, Redis)
SUBMIT_INTERVAL_S = 0.02  # seconds between two submits of phase 3's client (about 50/s)
SUBMITS_BEFORE_STOP = 50  # tasks accepted (202) before serve gets SIGTERM
SUBMIT_AFTER_EXIT_S = 1.0  # seconds the client keeps submitting after serve has exited
PHASE3_TASK_S = 0.5  # seconds a task of phase 3 sleeps


def submit(http: httpx.Client, prompt: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        response = http.post("/task", json={"prompt": prompt, "worker": "drill"})
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def sigterm_and_time(proc: Proc) -> float:
    """SIGTERM ``proc``, wait for it to exit, return the seconds it took."""
    t0 = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    proc.popen.wait(timeout=300)
    proc.exit_code = proc.popen.returncode
    return round(time.monotonic() - t0, 2)


def worker_phase(name: str, *, client, http: httpx.Client, config: Path, tmp: Path, redis_url: str,
                 prompt: str, n: int, deadline_s: float) -> dict[str, object]:
    """Two worker processes; SIGTERM one while it runs tasks; wait for every task to finish."""
    victim = start_worker(f"{name}-stopped", config, tmp=tmp, redis_url=redis_url)
    other = start_worker(f"{name}-other", config, tmp=tmp, redis_url=redis_url)
    ids = submit(http, prompt, n)
    held = sorted(wait_for(lambda: held_by(client, victim.proc_id), timeout_s=30,
                           what=f"{victim.name} to run a task"))
    victim.sample_rss()
    exit_s = sigterm_and_time(victim)
    at_exit = task_records(client, held, ("state", "owner", "lost"))

    def all_final() -> bool:
        other.sample_rss()
        states = count_states(task_records(client, ids, ("state",)))
        return states.get("completed", 0) + states.get("failed", 0) == len(ids)

    try:
        wait_for(all_final, timeout_s=deadline_s, what=f"{name}: every task to finish")
    except TimeoutError as exc:
        print(f"drill: {exc}", file=sys.stderr)
    stop_all([other])
    final = task_records(client, ids, ("state", "owner", "lost"))
    held_final = {t: final[t] for t in held}
    return {
        "tasks": len(ids),
        "task_s": prompt.split(":", 1)[1],
        "held_at_sigterm": len(held),
        "held_finished_by_stopping_process": sum(1 for r in at_exit.values()
                                                 if r["state"] == "completed" and r["owner"] == victim.proc_id),
        "held_requeued": sum(1 for r in at_exit.values() if r["state"] == "pending"),
        "held_still_dispatched_at_exit": sum(1 for r in at_exit.values() if r["state"] == "dispatched"),
        "held_completed_elsewhere": sum(1 for r in held_final.values()
                                        if r["state"] == "completed" and r["owner"] != victim.proc_id),
        "held_counted_as_lost_delivery": sum(1 for r in held_final.values() if int(r["lost"] or 0) > 0),
        "exit_s": exit_s,
        "exit_code": victim.exit_code,
        "states": count_states(final),
        "lost": len(ids) - count_states(final).get("completed", 0),
        "_procs": [victim, other],
        "_ids": ids,
    }


def serve_phase(*, client, config: Path, tmp: Path, redis_url: str, port: int,
                deadline_s: float) -> dict[str, object]:
    """serve with in-process workers gets SIGTERM while a client keeps submitting."""
    stored_before = client.zcard(keys.key("idx_all", project="default"))
    serve = start_serve("serve-inprocess", config, tmp=tmp, redis_url=redis_url, port=port, no_workers=False)
    answers: list[dict[str, object]] = []  # one per submit: t (s, relative to SIGTERM), status, body or error
    accepted: list[str] = []
    sigterm_at: list[float] = []  # monotonic time of the SIGTERM, once sent
    exited = threading.Event()

    def submitter() -> None:
        exit_seen_at: float | None = None
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while exit_seen_at is None or time.monotonic() - exit_seen_at < SUBMIT_AFTER_EXIT_S:
                if exited.is_set() and exit_seen_at is None:
                    exit_seen_at = time.monotonic()
                sent = time.monotonic()
                answer: dict[str, object] = {"t": round(sent - sigterm_at[0], 3) if sigterm_at else None}
                try:
                    response = http.post("/task", json={"prompt": f"sleep:{PHASE3_TASK_S}", "worker": "drill"})
                    answer["status"] = response.status_code
                    answer["body"] = response.text[:200]
                    if response.status_code == 202:
                        accepted.append(response.json()["id"])
                except httpx.HTTPError as exc:
                    answer["error"] = type(exc).__name__
                answers.append(answer)
                time.sleep(max(0.0, SUBMIT_INTERVAL_S - (time.monotonic() - sent)))

    thread = threading.Thread(target=submitter, daemon=True)
    thread.start()
    wait_for(lambda: len(accepted) >= SUBMITS_BEFORE_STOP, timeout_s=30,
             what="submits before the stop")
    procs = client.zrange(keys.key("worker_procs", worker="drill"), 0, -1)
    held = sorted(set().union(*(held_by(client, p) for p in procs)))
    serve.sample_rss()
    sigterm_at.append(time.monotonic())
    exit_s = sigterm_and_time(serve)
    exited.set()
    thread.join(timeout=60)
    at_exit = task_records(client, held, ("state",))
    after = [a for a in answers if a["t"] is not None]
    # What answered during the drain: group by status (or error class) and body.
    kinds: dict[str, int] = {}
    for a in after:
        if "status" not in a:
            kind = f"connection error ({a['error']})"
        else:
            kind = "202" if a["status"] == 202 else f"{a['status']} {a['body']}"
        kinds[kind] = kinds.get(kind, 0) + 1
    first_refusal = next((a["t"] for a in after if a.get("status") != 202), None)
    last_202 = max((a["t"] for a in after if a.get("status") == 202), default=None)
    # Drain what is still queued with a fresh worker process, then check every 202 completed.
    drainer = start_worker("drainer", config, tmp=tmp, redis_url=redis_url)

    def all_final() -> bool:
        states = count_states(task_records(client, accepted, ("state",)))
        return states.get("completed", 0) + states.get("failed", 0) == len(accepted)

    try:
        wait_for(all_final, timeout_s=deadline_s, what="every accepted submit to finish")
    except TimeoutError as exc:
        print(f"drill: {exc}", file=sys.stderr)
    stop_all([drainer])
    final = count_states(task_records(client, accepted, ("state",)))
    stored = client.zcard(keys.key("idx_all", project="default")) - stored_before
    return {
        "submits": len(answers),
        "accepted_202": len(accepted),
        "running_at_sigterm": len(held),
        "running_at_sigterm_states_at_exit": count_states(at_exit),
        "answers_after_sigterm": kinds,
        "first_non_202_after_sigterm_s": first_refusal,
        "last_202_after_sigterm_s": last_202,
        "draining_503": sum(1 for a in after if a.get("status") == 503 and "server draining" in str(a.get("body"))),
        "exit_s": exit_s,
        "exit_code": serve.exit_code,
        "accepted_states_after_drainer": final,
        "lost": len(accepted) - final.get("completed", 0),
        "stored_tasks": stored,
        "stored_but_not_202": stored - len(accepted),
        "_procs": [serve, drainer],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--tasks", type=int, default=12, help="tasks in phase 1 (short tasks)")
    parser.add_argument("--long-tasks", type=int, default=4, help="tasks in phase 2 (long tasks)")
    parser.add_argument("--drain-timeout", type=float, default=2.0, help="drain_timeout in seconds")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds for a phase's tasks to finish")
    args = parser.parse_args()

    started_at = datetime.now(UTC)
    drain = args.drain_timeout
    figures: dict[str, object] = {"started_at": started_at.isoformat(timespec="seconds"),
                                  "machine": f"{os.cpu_count()} cores", "drain_timeout_s": drain}
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="taskyard-drill-") as tmp_name:
        tmp = Path(tmp_name)
        write_handler(tmp)
        client = flush(args.redis_url)
        port = free_port()
        config = write_config(tmp, redis_url=args.redis_url, concurrency=CONCURRENCY, heartbeat_s=HEARTBEAT_S,
                              drain_timeout_s=drain, max_queue_depth=100_000, port=port)
        try:
            api = start_serve("serve", config, tmp=tmp, redis_url=args.redis_url, port=port, no_workers=True)
            procs.append(api)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                for name, prompt, n in (("worker_short", f"sleep:{SHORT_TASK_S}", args.tasks),
                                        ("worker_long", f"sleep:{3 * drain}", args.long_tasks)):
                    phase = worker_phase(name, client=client, http=http, config=config, tmp=tmp,
                                         redis_url=args.redis_url, prompt=prompt, n=n,
                                         deadline_s=args.deadline)
                    procs.extend(phase.pop("_procs"))  # type: ignore[arg-type]
                    phase.pop("_ids")
                    figures[name] = phase
            stop_all([api])
            figures["serve"] = serve_phase(client=client, config=config, tmp=tmp, redis_url=args.redis_url,
                                           port=port, deadline_s=args.deadline)
            procs.extend(figures["serve"].pop("_procs"))  # type: ignore[union-attr]
        finally:
            stop_all(procs)
        distinct = client.scard(DONE_KEY)
        runs = int(client.get(RUNS_KEY) or 0)
        figures["distinct_side_effects"] = distinct
        figures["side_effect_runs"] = runs
        figures["duplicate_runs"] = runs - distinct
        figures["max_rss_mib"] = {p.name: mib(p.peak_rss) for p in procs}

    checks = {}
    for name in ("worker_short", "worker_long"):
        phase: dict = figures[name]  # type: ignore[assignment]
        checks[f"{name}: none lost"] = phase["lost"] == 0
        checks[f"{name}: exit within drain timeout + {DRAIN_SLACK_S:g} s"] = phase["exit_s"] <= drain + DRAIN_SLACK_S
        checks[f"{name}: clean exit"] = phase["exit_code"] == 0
    short: dict = figures["worker_short"]  # type: ignore[assignment]
    checks["worker_short: running tasks finished in the stopping process"] = (
        short["held_finished_by_stopping_process"] == short["held_at_sigterm"])
    long: dict = figures["worker_long"]  # type: ignore[assignment]
    checks["worker_long: running tasks requeued and completed elsewhere"] = (
        long["held_completed_elsewhere"] == long["held_at_sigterm"])
    serve: dict = figures["serve"]  # type: ignore[assignment]
    checks["serve: none lost (every 202 completed)"] = serve["lost"] == 0
    checks["serve: nothing stored that was not answered 202"] = serve["stored_but_not_202"] == 0
    checks[f"serve: exit within drain timeout + {DRAIN_SLACK_S:g} s"] = serve["exit_s"] <= drain + DRAIN_SLACK_S
    checks["serve: running tasks finished by the exit"] = (
        serve["running_at_sigterm_states_at_exit"].get("dispatched", 0) == 0)
    checks["serve: new submits during the drain get 503 server draining"] = serve["draining_503"] > 0
    checks["no duplicate side effects"] = figures["duplicate_runs"] == 0
    figures["checks"] = checks
    ok = all(checks.values())
    print(json.dumps(figures, indent=2))
    for check, passed in checks.items():
        print(f"  {'ok  ' if passed else 'FAIL'} {check}")
    print(f"drain drill: {'PASS' if ok else 'FAIL'}: {sum(checks.values())}/{len(checks)} checks")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
