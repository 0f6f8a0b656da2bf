"""Reliability drill: worker processes SIGKILLed while they run tasks (issue 8, docs/reliability.md).

    .venv/bin/python scripts/drill_worker_crash.py [--redis-url URL] [--tasks N] [--workers N] [--kills N]
                                                   [--kill-every S] [--deadline S] [--load-rate R]

`taskyard serve --no-workers` and N `taskyard worker` processes (heartbeat every 0.5 s) share one Redis database,
which the drill flushes first. It submits the tasks over HTTP (each sleeps 50-200 ms, then records its id in a
set and bumps a run counter), SIGKILLs one worker process every few seconds while they run, starting a
replacement at once, and waits for every task to finish. For each kill it measures, from the kill, the time
until every task the killed process held is requeued (back to `pending`: detection by missed heartbeats plus the
reaper) and the time until each is running again elsewhere (its new `dispatched_at`); a requeued task goes to the
back of its queue, so the second includes the wait behind the backlog.

A steady background load (scripts/drill_load.py: --load-rate short tasks per second, one attempt each) runs from
LOAD_LEAD_S before the 1,000 are submitted until LOAD_AFTER_S after the kill phase (first kill to the last
kill's tasks requeued and its replacement ready). Figures: submit latency (p50, p99, max of the 202s) of the
load's requests sent before the first kill, during the kill phase and after it, and the completion latency
(completed_at - created_at) of the load's tasks created in each of those phases.

Passes when every background submit got 202, every task (the 1,000 and the load's) is `completed` by its
record, none is lost, and the set holds every id (distinct side effects == tasks). Runs of the side effect
above that are duplicates (at-least-once), reported, not failed.
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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drill_common import (  # noqa: E402
    DEFAULT_REDIS_URL,
    DONE_KEY,
    POLL_S,
    RUNS_KEY,
    Proc,
    completion_ms,
    count_states,
    flush,
    free_port,
    held_by,
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
from drill_load import PacedLoad, latency_by_phase, phase_of  # noqa: E402

HEARTBEAT_S = 0.5  # seconds between worker heartbeats: a killed process counts as gone after 3 of them
DRAIN_TIMEOUT_S = 10.0  # seconds a worker stopped at the end gets to finish its tasks
CONCURRENCY = 2  # tasks at once per worker process
SUBMIT_THREADS = 8  # concurrent HTTP submitters
RECOVERY_TIMEOUT_S = 60.0  # seconds a killed process's tasks get to run again elsewhere
LOAD_THREADS = 4  # client threads of the background load
LOAD_LEAD_S = 2.0  # seconds the background load runs before the 1,000 tasks are submitted
LOAD_AFTER_S = 5.0  # seconds the background load runs on after the kill phase
LOAD_MAX_S = 600.0  # bound on the load's length (it is stopped LOAD_AFTER_S after the kill phase)


def submit_all(base_url: str, n: int) -> list[str]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        def one(i: int) -> str:
            response = http.post("/task", json={"prompt": f"drill task {i}", "worker": "drill"})
            response.raise_for_status()
            return response.json()["id"]

        with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
            return list(pool.map(one, range(n)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs, one worker process each")
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds for all tasks to finish")
    parser.add_argument("--load-rate", type=float, default=20.0, help="background submits per second")
    args = parser.parse_args()

    client = flush(args.redis_url)
    started_at = datetime.now(UTC)
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="taskyard-drill-") as tmp_name:
        tmp = Path(tmp_name)
        write_handler(tmp)
        port = free_port()
        config = write_config(tmp, redis_url=args.redis_url, concurrency=CONCURRENCY, heartbeat_s=HEARTBEAT_S,
                              drain_timeout_s=DRAIN_TIMEOUT_S, port=port,
                              max_queue_depth=args.tasks * 2 + int(args.load_rate * LOAD_MAX_S))
        load = PacedLoad(f"http://127.0.0.1:{port}", n=int(args.load_rate * LOAD_MAX_S), rate_per_s=args.load_rate,
                         threads=LOAD_THREADS, body_of=lambda i: {"prompt": f"drill load {i}", "worker": "drill"})
        load_stopper = threading.Timer(LOAD_MAX_S, load.stop)  # replaced once the kill phase has ended
        try:
            procs.append(start_serve("serve", config, tmp=tmp, redis_url=args.redis_url, port=port,
                                     no_workers=True))
            workers = [start_worker(f"worker-{i}", config, tmp=tmp, redis_url=args.redis_url)
                       for i in range(args.workers)]
            procs.extend(workers)
            load.start()
            load_started = time.monotonic()
            time.sleep(LOAD_LEAD_S)
            t0 = time.monotonic()
            ids = submit_all(f"http://127.0.0.1:{port}", args.tasks)
            submit_s = time.monotonic() - t0
            kills: list[dict[str, object]] = []
            next_kill = time.monotonic() + args.kill_every
            for k in range(args.kills):
                while time.monotonic() < next_kill:
                    for p in procs:
                        p.sample_rss()
                    time.sleep(POLL_S)
                # Kill a worker process that is running something (the oldest such), so each kill strands work.
                victim = wait_for(lambda: next((w for w in workers if held_by(client, w.proc_id)), None),
                                  timeout_s=10, what="a worker process running a task")
                victim.sample_rss()
                os.kill(victim.popen.pid, signal.SIGKILL)
                next_kill = time.monotonic() + args.kill_every
                if k == 0:
                    first_kill_at = time.monotonic()
                kill_ms = time.time() * 1000
                victim.popen.wait()
                stranded = sorted(held_by(client, victim.proc_id))  # a dead process never clears its set
                workers.remove(victim)
                with ThreadPoolExecutor(1) as starter:  # the replacement starts while the requeue is timed
                    future = starter.submit(start_worker, f"worker-r{k}", config, tmp=tmp,
                                            redis_url=args.redis_url)

                    def requeued(proc_id: str | None = victim.proc_id, stranded: list[str] = stranded) -> bool:
                        recs = task_records(client, stranded, ("state", "owner"))
                        return all(r["state"] != "dispatched" or r["owner"] != proc_id for r in recs.values())

                    wait_for(requeued, timeout_s=RECOVERY_TIMEOUT_S, what=f"tasks of {victim.name} to requeue")
                    requeue_s = round(time.time() - kill_ms / 1000, 2)
                    replacement = future.result()
                workers.append(replacement)
                procs.append(replacement)
                kills.append({"victim": victim.name, "proc": victim.proc_id, "kill_ms": kill_ms,
                              "stranded": stranded, "requeue_s": requeue_s})
            kill_phase_end = time.monotonic()
            load_stopper = threading.Timer(LOAD_AFTER_S, load.stop)
            load_stopper.start()
            # Recovery per kill: every stranded task dispatched again by another process (or completed by it).
            for kill in kills:
                stranded: list[str] = kill["stranded"]  # type: ignore[assignment]

                def rerun(kill: dict[str, object] = kill, stranded: list[str] = stranded) -> dict | None:
                    recs = task_records(client, stranded, ("state", "owner", "dispatched_at"))
                    if all(r["owner"] not in (None, kill["proc"]) and r["state"] in ("dispatched", "completed")
                           for r in recs.values()):
                        return recs
                    return None

                recs = wait_for(rerun, timeout_s=RECOVERY_TIMEOUT_S, what=f"tasks of {kill['victim']} to rerun")
                kill["recover_s"] = round(max(int(r["dispatched_at"]) - kill["kill_ms"]  # type: ignore[operator]
                                              for r in recs.values()) / 1000, 2) if recs else 0.0
            load_stopper.join()
            load.join(timeout_s=30)
            load_ids = [a.task_id for a in load.attempts if a.task_id]
            all_ids = ids + load_ids

            def all_final() -> bool:
                for p in procs:
                    p.sample_rss()
                states = count_states(task_records(client, all_ids, ("state",)))
                return states.get("completed", 0) + states.get("failed", 0) == len(all_ids)

            try:
                wait_for(all_final, timeout_s=args.deadline, what="every task to finish")
            except TimeoutError as exc:
                print(f"drill: {exc}", file=sys.stderr)
            total_s = time.monotonic() - t0
        finally:
            load_stopper.cancel()
            load.stop()
            stop_all(procs)
        records = task_records(client, ids, ("state", "lost", "attempts"))
        load_records = task_records(client, load_ids, ("state", "lost"))
        load_states = count_states(load_records)
        marks = [("before", load_started), ("during", first_kill_at), ("after", kill_phase_end)]
        done_ms = completion_ms(client, load_ids)
        completion: dict[str, list[float]] = {name: [] for name, _ in marks}
        for a in load.attempts:
            if a.task_id in done_ms:
                completion[phase_of(a.sent, marks)].append(done_ms[a.task_id])
        load_non_202 = [a for a in load.attempts if a.status != 202]
        states = count_states(records)
        distinct = client.scard(DONE_KEY)
        runs = int(client.get(RUNS_KEY) or 0)
        redelivered = sum(1 for r in [*records.values(), *load_records.values()] if int(r["lost"] or 0) > 0)
        figures = {
            "started_at": started_at.isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} cores",
            "tasks": len(ids),
            "worker_processes": args.workers,
            "concurrency_per_process": CONCURRENCY,
            "heartbeat_interval_s": HEARTBEAT_S,
            "submit_s": round(submit_s, 2),
            "total_s": round(total_s, 2),
            "states": states,
            "lost": len(ids) - states.get("completed", 0),
            "distinct_side_effects": distinct,
            "side_effect_runs": runs,
            "duplicate_runs": runs - distinct,
            "tasks_redelivered_after_a_lost_process": redelivered,
            "kills": [{"victim": k["victim"], "stranded_tasks": len(k["stranded"]),  # type: ignore[arg-type]
                       "requeue_s": k["requeue_s"], "rerun_s": k["recover_s"]} for k in kills],
            "max_requeue_s": max((k["requeue_s"] for k in kills), default=0.0),
            "max_rerun_s": max((k["recover_s"] for k in kills), default=0.0),
            "max_rss_mib": {p.name: mib(p.peak_rss) for p in procs},
            "load": {
                "rate_per_s": args.load_rate,
                "submits": len(load.attempts),
                "answered_202": len(load_ids),
                "not_202": sorted({f"{a.status} {a.body}" if a.status else str(a.error) for a in load_non_202}),
                "states": load_states,
                "lost": len(load_ids) - load_states.get("completed", 0),
                "phases_s": {"before": round(first_kill_at - load_started, 2),
                             "during": round(kill_phase_end - first_kill_at, 2),
                             "after": LOAD_AFTER_S},
                "submit_latency_202": latency_by_phase(load.attempts, marks),
                "completion_latency": {name: latency_figures(values) for name, values in completion.items()},
            },
            "all_tasks": len(all_ids),
        }
    all_completed = states.get("completed", 0) + load_states.get("completed", 0)
    ok = not load_non_202 and all_completed == len(all_ids) and distinct == len(all_ids)
    print(json.dumps(figures, indent=2))
    print(f"worker crash drill: {'PASS' if ok else 'FAIL'}: {states.get('completed', 0)}/{len(ids)} completed, "
          f"{figures['lost']} lost; background load {len(load_ids)}/{len(load.attempts)} x 202, "
          f"{load_states.get('completed', 0)} completed; {distinct}/{len(all_ids)} distinct side effects, "
          f"{runs - distinct} duplicate runs, {len(kills)} kills, max requeue {figures['max_requeue_s']} s, "
          f"max rerun {figures['max_rerun_s']} s, total {figures['total_s']} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
