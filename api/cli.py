"""``taskyard``: the entry point. The server commands (and the composition root that reads settings and wires
the parts) are in :mod:`api.cli_server`, imported only when one of them runs:

    taskyard serve [--config F] [--host H] [--port P] [--no-workers]
    taskyard worker [--config F] [NAME ...] | --name N (--command C | --endpoint URL | --handler mod:fn)
    taskyard config check [--config F]

Exit codes: 0 ok, 1 runtime failure (Redis unreachable, a backend that cannot load), 2 bad usage or config.

The commands that talk to a running server over HTTP (``task``, ``tasks``, ``workers``, ``events``, ``trace``,
``incidents``, ``fix``, ``replay``...) are in :mod:`api.cli_client`, with their own exit codes (docs/cli.md).
"""

from __future__ import annotations

import sys

from api.cli_client import CLIENT_COMMANDS, run_client

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CLIENT_COMMANDS:
        return run_client(argv)  # HTTP to a running server: no settings, no Redis, no server imports
    from api.cli_server import main as server_main  # serve, worker, config: the whole server side

    return server_main(argv)


if __name__ == "__main__":
    sys.exit(main())
