"""Shared parts of the reliability drills (scripts/drill_*.py): processes, config, the drill handler, polling.

Every drill runs against one Redis database (default: database 9 of the local server) that it flushes first.
The drill handler records its side effects in that database: ``SADD drill:done <task id>`` (idempotent) and
``INCR drill:runs`` (counts every run), so a task that ran twice shows as runs > distinct ids.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import keys  # noqa: E402

PY = sys.executable
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
POLL_S = 0.05  # seconds between two looks at a condition
READY_TIMEOUT_S = 30.0  # seconds a process gets to print its ready line
STOP_TIMEOUT_S = 60.0  # seconds a process gets to exit after SIGTERM before it is SIGKILLed
DONE_KEY = "drill:done"  # set: ids of tasks whose side effect ran (idempotent)
RUNS_KEY = "drill:runs"  # counter: every run of the side effect, duplicates included
WORKER_READY = "taskyard worker: serving"
SERVE_READY = "taskyard serving"

# The handler the drills run: sleeps the time in its prompt ("sleep:0.1") or 50-200 ms, then records itself.
HANDLER_SOURCE = '''"""Drill handler: sleep, then record the run in Redis (written by scripts/drill_common.py)."""
import os
import random
import time

import redis

_client = redis.Redis.from_url(os.environ["DRILL_REDIS_URL"])


def run(ctx):
    prompt = ctx.prompt
    seconds = float(prompt.split(":", 1)[1]) if prompt.startswith("sleep:") else random.uniform(0.05, 0.2)
    time.sleep(seconds)
    pipe = _client.pipeline()
    pipe.sadd("drill:done", ctx.id)
    pipe.incr("drill:runs")
    pipe.execute()
    return "ok"
'''

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], T], *, timeout_s: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; raise ``TimeoutError`` naming ``what`` after
    ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def flush(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    return client


def write_handler(tmp: Path) -> None:
    (tmp / "drill_handler.py").write_text(HANDLER_SOURCE)


def write_config(tmp: Path, *, redis_url: str, concurrency: int, heartbeat_s: float, drain_timeout_s: float,
                 max_queue_depth: int, port: int = 8080) -> Path:
    path = tmp / "drill.yaml"
    path.write_text(
        f"redis_url: {redis_url}\nlog_level: info\nport: {port}\nheartbeat_interval: {heartbeat_s}\n"
        f"drain_timeout: {drain_timeout_s}\n"
        f"workers:\n  - {{name: drill, handler: 'drill_handler:run', concurrency: {concurrency}, "
        f"max_queue_depth: {max_queue_depth}, timeout: 60s}}\n")
    return path


@dataclass
class Proc:
    """A Taskyard process the drill started, in its own session, with its output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    peak_rss: int = 0  # bytes, the highest resident set size seen (process and its children)
    proc_id: str | None = None  # a worker process's id in Redis, read from its ready line
    exit_code: int | None = field(default=None)

    def sample_rss(self) -> None:
        try:
            root = psutil.Process(self.popen.pid)
            total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except psutil.Error:
            return
        self.peak_rss = max(self.peak_rss, total)

    def alive(self) -> bool:
        return self.popen.poll() is None


def start(name: str, args: list[str], *, tmp: Path, redis_url: str, ready: str) -> Proc:
    log = tmp / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}", "DRILL_REDIS_URL": redis_url}
    with log.open("wb") as out:
        popen = subprocess.Popen(args, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    proc = Proc(name=name, popen=popen, log=log)

    def is_ready() -> bool:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {popen.returncode} before it was ready:\n{log.read_text()}")
        return ready in log.read_text(errors="replace")

    try:
        wait_for(is_ready, timeout_s=READY_TIMEOUT_S, what=f"{name} to print {ready!r}")
    except BaseException:  # never leave a process behind that the drill does not know of
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
        raise
    match = re.search(r"\(process (\w+)\)", log.read_text(errors="replace"))
    proc.proc_id = match.group(1) if match else None
    proc.sample_rss()
    return proc


def start_worker(name: str, config: Path, *, tmp: Path, redis_url: str, workers: Iterable[str] = ()) -> Proc:
    """A ``taskyard worker`` process serving ``workers`` of the config (default: all of them)."""
    return start(name, [PY, "-m", "api.cli", "worker", "--config", str(config), *workers], tmp=tmp,
                 redis_url=redis_url, ready=WORKER_READY)


def start_serve(name: str, config: Path, *, tmp: Path, redis_url: str, port: int, no_workers: bool) -> Proc:
    args = [PY, "-m", "api.cli", "serve", "--config", str(config), "--port", str(port)]
    return start(name, [*args, "--no-workers"] if no_workers else args, tmp=tmp, redis_url=redis_url,
                 ready=SERVE_READY)


def stop_all(procs: Iterable[Proc]) -> None:
    """SIGTERM what still runs, wait, SIGKILL the process group of anything that would not stop."""
    live = [p for p in procs if p.alive()]
    for p in live:
        p.popen.send_signal(signal.SIGTERM)
    for p in live:
        try:
            p.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait()


def task_records(client: redis.Redis, ids: list[str], fields: tuple[str, ...]) -> dict[str, dict[str, str | None]]:
    """The named fields of each task record (one pipeline)."""
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hmget(keys.key("task", id=task_id), list(fields))
    return {task_id: dict(zip(fields, values, strict=True)) for task_id, values in zip(ids, pipe.execute(),
                                                                                        strict=True)}


def count_states(records: dict[str, dict[str, str | None]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records.values():
        state = record.get("state") or "missing"
        counts[state] = counts.get(state, 0) + 1
    return counts


def held_by(client: redis.Redis, proc_id: str) -> set[str]:
    """Ids of the tasks Redis says the worker process ``proc_id`` is running."""
    return set(client.smembers(keys.key("proc_tasks", proc=proc_id)))


def mib(n_bytes: int) -> float:
    return round(n_bytes / 2**20, 1)


def kill_group(proc: Proc) -> None:
    """SIGKILL ``proc`` and everything in its process group (serve's engine process too), and reap it."""
    os.killpg(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait()
    proc.exit_code = proc.popen.returncode


def latency_figures(values_ms: list[float]) -> dict[str, float]:
    """Count, p50, p99 and max of latencies in milliseconds (nearest rank; zeros when there are none)."""
    ordered = sorted(values_ms)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else 0.0

    return {"n": len(ordered), "p50_ms": rank(0.5), "p99_ms": rank(0.99), "max_ms": rank(1.0)}


def completion_ms(client: redis.Redis, ids: list[str]) -> dict[str, float]:
    """Milliseconds from creation to completion (``completed_at - created_at``) of each completed task."""
    records = task_records(client, ids, ("created_at", "completed_at"))
    return {t: float(int(r["completed_at"]) - int(r["created_at"]))  # type: ignore[arg-type]
            for t, r in records.items() if r["created_at"] and r["completed_at"]}
