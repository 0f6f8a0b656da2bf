"""Reliability drill: a retention backlog larger than one sweep is worked off at once, not a sweep a minute (issue 8).

    .venv/bin/python scripts/drill_retention.py [--redis-url URL] [--expired N] [--young N]

Fills a Redis database (default: database 8 of the local server, flushed first and at the end) with --expired
tasks that completed ten days ago, each with its trace, and --young tasks of the last day (the layout of
``scripts/bench_retention.py``), then starts ``taskyard serve --no-workers`` with ``retention: {tasks: 2d}``.
While serve sweeps, a client times ``GET /tasks?limit=50`` over one keep-alive connection. Checks:

- every expired task is gone, with its trace, and every young one is still there;
- the backlog is gone within a minute of serve being ready, so before the next minute's sweep (one 2 s sweep a
  minute would need a minute per ~60,000 tasks): the sweeps that ran out of budget were followed at once;
- serve logged ``retention caught up`` after more than one sweep;
- every listing during the catch-up answered 200.

Figures: seconds from serve ready to an empty backlog, the sweeps serve logged, list p50/p99/max meanwhile.
Exit 0 on pass, 1 on fail.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import keys  # noqa: E402
from scripts.bench_retention import fill, serving, summary  # noqa: E402

CATCH_UP_LIMIT_S = 60.0  # seconds: the next minute's sweep; a backlog gone before it was caught up at once
POLL_S = 0.2  # seconds between two looks at the task index


def listings(base: str, done: threading.Event, samples: list[float], statuses: list[int]) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:
        while not done.is_set():
            t0 = time.perf_counter()
            status = http.get("/tasks?limit=50").status_code
            samples.append((time.perf_counter() - t0) * 1000)
            statuses.append(status)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--expired", type=int, default=200_000, help="tasks that ended ten days ago")
    parser.add_argument("--young", type=int, default=20_000, help="tasks of the last day")
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    report: dict[str, Any] = {"fill": fill(client, n_tasks=args.expired + args.young, n_expired=args.expired,
                                           n_events=0)}
    index = keys.key("idx_all", project="default")
    expired_ids = [f"{seq:032x}" for seq in range(1, args.expired + 1)]
    samples: list[float] = []
    statuses: list[int] = []
    with tempfile.TemporaryDirectory(prefix="taskyard-drill-retention-") as tmp_name:
        tmp = Path(tmp_name)
        with serving(tmp, redis_url=args.redis_url, log_level="info",
                     retention="{tasks: 2d, events: 0, traces: 0, usage: 0}") as base:
            ready = time.monotonic()
            done = threading.Event()
            lister = threading.Thread(target=listings, args=(base, done, samples, statuses), daemon=True)
            lister.start()
            while client.zcard(index) > args.young and time.monotonic() - ready < 3 * CATCH_UP_LIMIT_S:
                time.sleep(POLL_S)
            cleared_s = time.monotonic() - ready
            time.sleep(1.0)  # the last sweep's log lines
            done.set()
            lister.join(timeout=30)
        text = (tmp / "serve.log").read_text(errors="replace")
    sweeps = [line for line in text.splitlines() if "engine.retention: retention sweep" in line]
    caught_up = re.search(r"retention caught up sweeps=(\d+)", text)
    left = sum(client.exists(keys.key("task", id=t), keys.key("trace", id=t)) for t in expired_ids[::97])
    report |= {
        "expired": args.expired, "young": args.young, "seconds_to_clear": round(cleared_s, 2),
        "tasks_left": client.zcard(index),
        "sweeps_logged": len(sweeps), "sweeps_unfinished": sum("finished=False" in s for s in sweeps),
        "sweep_seconds": [float(m.group(1)) for s in sweeps if (m := re.search(r"seconds=([\d.]+)", s))],
        "list_during_catch_up": summary(samples) if samples else {},
        "list_statuses": sorted(set(statuses)),
    }
    checks = {
        "expired gone, young kept": report["tasks_left"] == args.young and left == 0,
        "cleared before the next minute": cleared_s < CATCH_UP_LIMIT_S,
        "caught up over several sweeps": caught_up is not None and int(caught_up.group(1)) > 1,
        "listings answered": bool(statuses) and set(statuses) == {200},
    }
    report["checks"] = checks
    client.flushdb(asynchronous=True)
    print(json.dumps(report, indent=2))
    verdict = "PASS" if all(checks.values()) else "FAIL"
    print(f"retention drill: {verdict}: " + ", ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in checks.items())
          + f"; {args.expired} expired tasks cleared in {cleared_s:.1f} s")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
