"""The server side of ``taskyard``: ``serve``, ``worker`` and ``config check``. The composition root: reads
settings (the only place they are read) and wires the parts. :mod:`api.cli` imports it only for those commands,
so the HTTP client commands start without loading the server (0.35 s instead of 1 s a command).

Exit codes: 0 ok, 1 runtime failure (Redis unreachable, a backend that cannot load), 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from api.cli_client import add_client_commands
from api.engine_process import EngineProcess, build_rules
from config.loader import find_config_file, load_settings
from config.settings import Settings
from engine import registry
from engine.connect import sync_client
from engine.embedded import resolve_redis
from engine.errors import ConfigError, TaskyardError
from engine.reaper import Reaper
from engine.rules import RuleBook
from engine.store import SyncRunner
from workers.cli import add_worker_arguments, reaper_options, run_worker, runtime_options, startup_error
from workers.liveness import ReaperLoop
from workers.logs import setup_logging
from workers.runtime import WorkerRuntime

__all__ = ["main"]

logger = logging.getLogger("taskyard")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskyard", description="Taskyard: a control plane for AI-agent workers",
        epilog="serve, worker and config exit 0 ok, 1 on a runtime failure, 2 on bad usage or config; the commands "
               "that talk to a server have their own exit codes (taskyard tasks --help, docs/cli.md)")
    sub = parser.add_subparsers(dest="command_name", required=True)

    serve = sub.add_parser("serve", help="run the API (and, unless --no-workers, the configured workers)")
    serve.add_argument("--config", help="config file (default: ./taskyard.yaml or $TASKYARD_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-workers", action="store_true", help="run no configured workers in this process")

    worker = sub.add_parser("worker", help="run a worker process")
    worker.add_argument("--config", help="config file (default: ./taskyard.yaml or $TASKYARD_CONFIG)")
    add_worker_arguments(worker)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config without starting anything")
    check.add_argument("--config", help="config file (default: ./taskyard.yaml or $TASKYARD_CONFIG)")
    add_client_commands(sub)
    return parser


def main(argv: list[str]) -> int:
    """``serve``, ``worker`` and ``config`` (and ``--help``): everything but the HTTP client commands."""
    args = _parser().parse_args(argv)
    # Handlers are imported by module path from the project the command runs in, as `python -m` would.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    overrides: dict[str, Any] = {}
    if args.command_name == "serve":
        overrides = {"host": args.host, "port": args.port}
    try:
        settings = load_settings(args.config, env=os.environ, overrides=overrides)
    except ConfigError as exc:
        print(f"taskyard: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    if args.command_name == "worker":
        return run_worker(settings, args)
    file = find_config_file(args.config, os.environ)
    try:
        default_file = str(file) if file else "taskyard.yaml"
        rules, schedules = build_rules(settings, default_file)
    except ConfigError as exc:
        print(f"taskyard: {exc}", file=sys.stderr)
        return 2
    if args.command_name == "config":
        names = ", ".join(w.name for w in settings.workers) or "none"
        print(f"config ok: {file or 'no file, defaults'}: {len(settings.workers)} worker(s): {names}; "
              f"{len(settings.sources)} source(s); {len(rules) - len(schedules)} rule(s); {len(schedules)} schedule(s)")
        return 0
    return _serve(settings, rules, default_file, no_workers=args.no_workers)


def _serve(settings: Settings, rules: RuleBook, default_file: str, *, no_workers: bool) -> int:
    import uvicorn

    from api.app import create_app
    from api.drain import DrainGate, DrainingServer

    embedded = None
    runtime: WorkerRuntime | None = None
    reaper: ReaperLoop | None = None
    engines: list[EngineProcess] = []
    runner: SyncRunner | None = None
    for name, source in settings.sources.items():
        if not source.verifies_signature:
            logger.warning("webhook source has no secret: deliveries need an API key" if settings.auth_enabled
                           else "webhook source has no secret and no API key is set: anyone can post to it",
                           extra={"source": name})
    try:
        url, embedded = resolve_redis(settings.redis_url, settings.data_dir)
        runner = SyncRunner(sync_client(url))
        for spec in settings.workers:
            runner.run(registry.register(spec, source="config"))
        for n in range(settings.engine_processes):
            engines.append(EngineProcess(settings, url, default_file, scheduler=n == 0))
            engines[-1].start()
        if no_workers or not settings.workers:
            reaper = ReaperLoop(Reaper(runner, reaper_options(settings), owner=f"serve-{os.getpid()}"))
            reaper.start()
        else:
            runtime = WorkerRuntime(settings.workers, runtime_options(settings, url, source="config"))
            runtime.start()
    except TaskyardError as exc:
        print(startup_error("serve", settings, exc), file=sys.stderr)
        # Undo what did start: a running engine process would otherwise keep serve from exiting.
        for engine in engines:
            engine.stop()
        if reaper is not None:
            reaper.stop()
        if runner is not None:
            runner.client.close()
        if embedded is not None:
            embedded.close()
        return 1
    gate = DrainGate(create_app(settings, redis_url=url, rules=rules))

    def serving(port: int) -> None:  # logged once the port accepts connections: the ready line scripts wait for
        logger.info("taskyard serving", extra={"url": f"http://{settings.host}:{port}",
                                               "redis": "embedded" if embedded else "external",
                                               "workers": "none" if runtime is None else len(settings.workers)})

    server = DrainingServer(uvicorn.Config(gate, host=settings.host, port=settings.port, log_config=None,
                                           access_log=False, lifespan="on"), gate,
                            runtime.stop if runtime is not None else None, on_started=serving)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; a Python-level handler makes that re-raise
    # harmless, so the drain below runs before the process exits.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits this way when it cannot bind
        print(f"taskyard serve: cannot listen on {settings.host}:{settings.port} (exit {exc.code})",
              file=sys.stderr)
        server.started = False
    finally:
        for engine in engines:
            engine.stop()
        if runtime is not None:
            runtime.stop()
        if reaper is not None:
            reaper.stop()
            reaper.join(timeout=2)
        runner.client.close()
        if embedded is not None:
            embedded.close()
    return 0 if server.started else 1
