"""Reliability drill: graceful drain on SIGTERM, of a worker process and of serve (issue 8, docs/reliability.md).

    .venv/bin/python scripts/drill_drain.py [--redis-url URL] [--tasks N] [--long-tasks N] [--drain-timeout S]
                                            [--deadline S] [--load-rate R]

Flushes its Redis database (default: database 9 of the local server) first. Three phases:

1. worker, short tasks: `serve --no-workers` and two `taskyard worker` processes (2 tasks at once each) work
   through tasks of 1 s; one worker process gets SIGTERM while it runs tasks. Its running tasks should finish
   there (1 s < drain timeout) and it should exit within the drain timeout.
2. worker, long tasks: the same with tasks of 3 x the drain timeout: the stopping process should abort them at
   the drain timeout and requeue them, and they should complete on the other process.
   In phases 1 and 2 a background load (scripts/drill_load.py, --load-rate short tasks per second) runs from
   LOAD_BEFORE_S before the phase's tasks are submitted until LOAD_AFTER_S after the stopping process exited;
   its submit latency is reported before the SIGTERM, during the drain and after the exit, and its tasks are
   checked like the phase's own.
3. serve: `serve` with its in-process workers gets SIGTERM while a client keeps submitting. The issue asks for
   503 `{"error": "server draining"}` to new submits while running tasks finish within the drain timeout. The
   drill records every answer after the signal (status and body, or the connection error), the time serve
   takes to exit, and, after a fresh worker process has drained the queue, that every 202 is a completed task
   and that nothing else was stored. Between serve's exit and the drainer, serve starts again and gets
   AFTER_RESTART_S of submits at the same rate: submit latency is reported before the SIGTERM, during the
   drain (the 503s) and after (the restarted serve).

In every phase the handler records its id in a set and bumps a run counter, so a task run twice shows.
Passes when no task is lost (every accepted task completes), every background submit and every submit to the
restarted serve got 202, no side effect runs twice, each process exits within drain timeout + DRAIN_SLACK_S,
and serve answers new submits during its drain with 503 `server draining`.
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
from drill_load import PacedLoad, latency_by_phase  # noqa: E402

HEARTBEAT_S = 0.5  # seconds between worker heartbeats
CONCURRENCY = 2  # tasks at once per worker process
SHORT_TASK_S = 1.0  # seconds a task of phase 1 sleeps: shorter than the drain timeout
DRAIN_SLACK_S = 5.0  # seconds past the drain timeout a stopping process may take to exit (interpreter, Redis)
SUBMIT_INTERVAL_S = 0.02  # seconds between two submits of phase 3's client (about 50/s)
SUBMITS_BEFORE_STOP = 50  # tasks accepted (202) before serve gets SIGTERM
SUBMIT_AFTER_EXIT_S = 1.0  # seconds the client keeps submitting after serve has exited
PHASE3_TASK_S = 0.5  # seconds a task of phase 3 sleeps
AFTER_RESTART_S = 3.0  # seconds of submits to the restarted serve of phase 3
LOAD_THREADS = 2  # client threads of a background load
LOAD_BEFORE_S = 2.0  # seconds a worker phase's background load runs before the phase's tasks are submitted
LOAD_AFTER_S = 2.0  # seconds it runs on after the stopping process exited
LOAD_MAX_S = 300.0  # bound on a background load's length


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
                 prompt: str, n: int, deadline_s: float, load_rate: float) -> dict[str, object]:
    """Two worker processes and a background load; SIGTERM one while it runs tasks; wait for every task to
    finish."""
    victim = start_worker(f"{name}-stopped", config, tmp=tmp, redis_url=redis_url)
    other = start_worker(f"{name}-other", config, tmp=tmp, redis_url=redis_url)
    load = PacedLoad(str(http.base_url).rstrip("/"), n=int(load_rate * LOAD_MAX_S), rate_per_s=load_rate,
                     threads=LOAD_THREADS, body_of=lambda i: {"prompt": f"{name} load {i}", "worker": "drill"})
    load.start()
    load_started = time.monotonic()
    try:
        time.sleep(LOAD_BEFORE_S)
        ids = submit(http, prompt, n)
        phase_ids = set(ids)
        # SIGTERM once the victim runs CONCURRENCY of the phase's tasks (a load task may hold a slot briefly).
        held = sorted(wait_for(lambda: len(h := held_by(client, victim.proc_id) & phase_ids) >= CONCURRENCY and h,
                               timeout_s=30, what=f"{victim.name} to run {CONCURRENCY} of the phase's tasks"))
        victim.sample_rss()
        sigterm_at = time.monotonic()
        exit_s = sigterm_and_time(victim)
        exited_at = time.monotonic()
        at_exit = task_records(client, held, ("state", "owner", "lost"))
        time.sleep(LOAD_AFTER_S)
    finally:
        load.stop()
    load.join(timeout_s=30)
    load_ids = [a.task_id for a in load.attempts if a.task_id]
    ids += load_ids

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
    marks = [("before", load_started), ("during", sigterm_at), ("after", exited_at)]
    return {
        "tasks": n,
        "task_s": prompt.split(":", 1)[1],
        "load_tasks": len(load_ids),
        "load_not_202": len(load.attempts) - len(load_ids),
        "load_submit_latency_202": latency_by_phase(load.attempts, marks),
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
                answer["sent"] = sent
                try:
                    response = http.post("/task", json={"prompt": f"sleep:{PHASE3_TASK_S}", "worker": "drill"})
                    answer["status"] = response.status_code
                    answer["body"] = response.text[:200]
                    if response.status_code == 202:
                        accepted.append(response.json()["id"])
                except httpx.HTTPError as exc:
                    answer["error"] = type(exc).__name__
                answer["ms"] = (time.monotonic() - sent) * 1000
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
    exited_at = sigterm_at[0] + exit_s
    during = [a for a in after if a["sent"] <= exited_at]  # type: ignore[operator]
    # After: serve starts again (in-process workers, as before) and gets AFTER_RESTART_S of submits.
    restart_at = time.monotonic()
    restarted = start_serve("serve-restarted", config, tmp=tmp, redis_url=redis_url, port=port, no_workers=False)
    restart_s = round(time.monotonic() - restart_at, 2)
    load = PacedLoad(f"http://127.0.0.1:{port}", n=int(AFTER_RESTART_S / SUBMIT_INTERVAL_S),
                     rate_per_s=1 / SUBMIT_INTERVAL_S, threads=LOAD_THREADS,
                     body_of=lambda i: {"prompt": f"sleep:{PHASE3_TASK_S}", "worker": "drill"})
    load.start()
    load.join(timeout_s=AFTER_RESTART_S + 60)
    restarted.sample_rss()
    stop_all([restarted])
    accepted += [a.task_id for a in load.attempts if a.task_id]
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
        "submit_latency": {
            "before_sigterm_202": latency_figures([a["ms"] for a in answers  # type: ignore[misc]
                                                   if a["t"] is None and a.get("status") == 202]),
            "during_drain_all": latency_figures([a["ms"] for a in during]),  # type: ignore[misc]
            "during_drain_503": latency_figures([a["ms"] for a in during  # type: ignore[misc]
                                                 if a.get("status") == 503]),
            "after_exit_down": latency_figures([a["ms"] for a in after  # type: ignore[misc]
                                                if a["sent"] > exited_at]),  # type: ignore[operator]
            "after_restart_202": latency_by_phase(load.attempts, [("after", 0.0)])["after"],
        },
        "restarted_serve_ready_s": restart_s,
        "after_restart_submits": len(load.attempts),
        "after_restart_not_202": sum(1 for a in load.attempts if a.status != 202),
        "accepted_states_after_drainer": final,
        "lost": len(accepted) - final.get("completed", 0),
        "stored_tasks": stored,
        "stored_but_not_202": stored - len(accepted),
        "_procs": [serve, restarted, drainer],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--tasks", type=int, default=12, help="tasks in phase 1 (short tasks)")
    parser.add_argument("--long-tasks", type=int, default=4, help="tasks in phase 2 (long tasks)")
    parser.add_argument("--drain-timeout", type=float, default=2.0, help="drain_timeout in seconds")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds for a phase's tasks to finish")
    parser.add_argument("--load-rate", type=float, default=10.0, help="background submits/s in phases 1-2")
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
                                         deadline_s=args.deadline, load_rate=args.load_rate)
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
        checks[f"{name}: every background submit got 202"] = phase["load_not_202"] == 0
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
    checks["serve: every submit to the restarted serve got 202"] = serve["after_restart_not_202"] == 0
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
