"""``taskyard worker``: a worker process for configured workers, or for one defined on the command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from pydantic import ValidationError

from config.settings import Settings, WorkerSpec
from engine.connect import safe_url
from engine.embedded import resolve_redis
from engine.errors import StoreUnavailable, TaskyardError
from engine.pricing import PriceBook
from engine.reaper import ReaperOptions
from workers.runtime import RuntimeOptions, WorkerRuntime

__all__ = ["add_worker_arguments", "reaper_options", "run_worker", "runtime_options", "startup_error"]

logger = logging.getLogger(__name__)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="configured workers to serve (default: all)")
    parser.add_argument("--name", help="define a worker here instead of in the config")
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument("--command", help='shell command, e.g. "python agent.py" (prompt on stdin)')
    backend.add_argument("--endpoint", help="HTTP endpoint implementing mecha's worker contract")
    backend.add_argument("--handler", help="Python function as package.module:function")
    parser.add_argument("--concurrency", type=int, default=None, help="tasks at once in this process")
    parser.add_argument("--timeout", default=None, help="task timeout (30s, 10m, 1h)")
    parser.add_argument("--max-queue-depth", type=int, default=None)
    parser.add_argument("--max-retries", type=int, default=None)
    parser.add_argument("--pool", action="append", default=None, help="pool to join (repeatable)")
    parser.add_argument("--cwd", default=None)


def _cli_spec(args: argparse.Namespace) -> WorkerSpec:
    fields: dict[str, Any] = {"name": args.name, "command": args.command, "endpoint": args.endpoint,
                              "handler": args.handler, "concurrency": args.concurrency, "timeout": args.timeout,
                              "max_queue_depth": args.max_queue_depth, "max_retries": args.max_retries,
                              "pools": args.pool, "cwd": args.cwd}
    return WorkerSpec.model_validate({k: v for k, v in fields.items() if v is not None})


def reaper_options(settings: Settings) -> ReaperOptions:
    return ReaperOptions(offline_after_ms=int(settings.offline_after_s * 1000),
                         task_expiry_ms=int(settings.task_expiry * 1000), max_lost=settings.max_lost_deliveries,
                         default_bound=settings.max_queue_depth)


def runtime_options(settings: Settings, redis_url: str, *, source: str) -> RuntimeOptions:
    return RuntimeOptions(
        redis_url=redis_url, heartbeat_interval_s=settings.heartbeat_interval,
        offline_after_s=settings.offline_after_s, drain_timeout_s=settings.drain_timeout,
        poll_timeout_s=settings.poll_timeout, max_lost=settings.max_lost_deliveries, source=source,
        reaper=reaper_options(settings), traces=settings.traces, prices=PriceBook.build(settings.pricing))


def startup_error(command: str, settings: Settings, exc: TaskyardError) -> str:
    """One line for a process that could not start; a Redis URL is shown without its password."""
    if isinstance(exc, StoreUnavailable):
        where = safe_url(settings.redis_url) if settings.redis_url else f"the embedded Redis in {settings.data_dir}"
        return f"taskyard {command}: cannot reach Redis at {where} ({exc.message})"
    return f"taskyard {command}: {exc.message}"


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Serve workers until SIGTERM/SIGINT, then drain. Returns the exit code."""
    if args.name:
        if args.names:
            print("taskyard worker: give configured worker names or --name, not both", file=sys.stderr)
            return 2
        try:
            specs = [_cli_spec(args)]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "worker"
            print(f"taskyard worker: {where}: {first['msg'].removeprefix('Value error, ')}", file=sys.stderr)
            return 2
        source = "process"
    else:
        flags = [f"--{n.replace('_', '-')}" for n in ("command", "endpoint", "handler", "concurrency", "timeout",
                                                       "max_queue_depth", "max_retries", "pool", "cwd")
                 if getattr(args, n) is not None]
        if flags:
            print(f"taskyard worker: {', '.join(flags)} define a worker and need --name (configured workers "
                  "take their settings from the config)", file=sys.stderr)
            return 2
        specs = [w for w in settings.workers if not args.names or w.name in args.names]
        unknown = set(args.names) - {w.name for w in settings.workers}
        if unknown:
            print(f"taskyard worker: not in the config: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        source = "config"
    embedded = None
    try:
        url, embedded = resolve_redis(settings.redis_url, settings.data_dir)
        runtime = WorkerRuntime(specs, runtime_options(settings, url, source=source), base_env=os.environ)
        runtime.start()
    except TaskyardError as exc:
        print(startup_error("worker", settings, exc), file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"taskyard worker: serving {', '.join(s.name for s in specs)} (process {runtime.proc_id})",
          file=sys.stderr, flush=True)
    stop.wait()
    runtime.stop()
    if embedded is not None:
        embedded.close()
    return 0
