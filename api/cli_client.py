"""The ``taskyard`` commands that talk to a running server over HTTP, all through :mod:`api.client`.

    taskyard task submit "prompt" [--worker W] [--pool P] [--context JSON] [--timeout T] [--wait]
    taskyard task show ID | taskyard task cancel ID
    taskyard tasks [--state S] [--worker W] [--limit N] [--watch]
    taskyard workers
    taskyard events [--state S] [--source S] [--limit N] [--follow] | taskyard event show ID
    taskyard webhook replay EVENT_ID
    taskyard rules test SOURCE PAYLOAD_FILE [--type T] [--header 'Name: value' ...]
    taskyard incidents [--status S] [--class C] [--worker W] [--limit N] | taskyard incident show ID
    taskyard trace ID
    taskyard fix INCIDENT_ID [--runner R] [--repo PATH] [--base-ref REF] [--wait]
    taskyard replay INCIDENT_ID [--fix-run F] [--before REF] [--after REF] [--case TASK_ID ...] [--wait]

Each takes ``--url`` (``TASKYARD_URL``, default http://127.0.0.1:8080), ``--api-key`` (``TASKYARD_API_KEY``) and
``--json``. Tables on a terminal, JSON with ``--json`` or when stdout is not a terminal. Every error is one line on
stderr, ``taskyard: <message>``; the exit codes are in :data:`EPILOG`. The commands live in
:mod:`api.cli_commands` (``rules test`` in :mod:`api.cli_rules`); this module parses, connects and maps failures
to exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

import httpx

from api import cli_commands as commands
from api import cli_rules
from api.cli_commands import UsageError
from api.cli_render import Output
from api.client import DEFAULT_URL, Client, ClientError, NotFound, ServerUnreachable, Unauthorized

__all__ = ["CLIENT_COMMANDS", "EPILOG", "add_client_commands", "run_client"]

EXIT_USAGE, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_SERVER, EXIT_INTERRUPTED = 2, 3, 4, 5, 130
EPILOG = """exit codes:
  0    ok
  1    the task or run failed (task submit --wait, fix --wait, replay --wait), or no rule matched (rules test)
  2    usage or configuration error (a bad option, --url or --context)
  3    the server said not found (an unknown task, event, incident or run id)
  4    the server refused the request (401, 403, 400, 409, 422, 429 and other 4xx)
  5    the server is unreachable, or answered 5xx
  130  interrupted (Ctrl-C; --watch and --follow exit 0)

environment: TASKYARD_URL, TASKYARD_API_KEY, NO_COLOR"""
_HINTS = {401: " (give an API key with --api-key or TASKYARD_API_KEY)",
          403: " (the API key lacks the scope this needs: read, submit or admin)"}
CLIENT_COMMANDS = frozenset({"task", "tasks", "workers", "events", "event", "webhook", "rules", "incidents",
                             "incident", "trace", "fix", "replay"})


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (``taskyard: <message>``), exit 2, like every other error here."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("taskyard").strip()
        self.exit(EXIT_USAGE, f"taskyard: {command + ': ' if command else ''}{message} (see '{self.prog} --help')\n")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the server (default $TASKYARD_URL, else {DEFAULT_URL})")
    common.add_argument("--api-key", help="the API key (default $TASKYARD_API_KEY)")
    common.add_argument("--json", action="store_true", help="print JSON even on a terminal")
    return common


def add_client_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Register the client commands on ``taskyard``'s sub-command list."""
    common = _common()

    def leaf(parent: argparse._SubParsersAction[Any], name: str, run: commands.Command,
             help: str) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, parents=[common], help=help, description=help, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.set_defaults(client_command=run)
        return parser

    def group(name: str, help: str) -> argparse._SubParsersAction[Any]:
        parser = sub.add_parser(name, help=help, description=help, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")

    task = group("task", "submit, show or cancel a task")
    submit = leaf(task, "submit", commands.task_submit, "submit a task (POST /task)")
    submit.add_argument("prompt")
    submit.add_argument("--worker", help="run it on this worker")
    submit.add_argument("--pool", help="round-robin over this pool's workers")
    submit.add_argument("--context", help="a JSON object handed to the worker")
    submit.add_argument("--timeout", help="run time limit: seconds or a duration (30s, 10m, 1h)")
    submit.add_argument("--max-retries", type=int, help="attempts in all (1-10)")
    submit.add_argument("--idempotency-key", help="the same key again answers the first task")
    submit.add_argument("--wait", action="store_true", help="wait for the result (exit 1 if the task fails)")
    leaf(task, "show", commands.task_show, "show a task with its result or error").add_argument("id")
    leaf(task, "cancel", commands.task_cancel, "cancel a pending or running task").add_argument("id")

    tasks = leaf(sub, "tasks", commands.tasks, "list tasks, newest first")
    tasks.add_argument("--state", help="pending, dispatched, completed, failed or cancelled")
    tasks.add_argument("--worker")
    tasks.add_argument("--limit", type=int, default=20, help="how many (1-500, default 20)")
    tasks.add_argument("--watch", action="store_true", help="keep the list live (Ctrl-C stops)")

    leaf(sub, "workers", commands.workers, "list workers with state, health and queue depth")

    events = leaf(sub, "events", commands.events, "list webhook events, newest first")
    events.add_argument("--state", help="received, matched, dispatched, completed, failed, skipped, ...")
    events.add_argument("--source", help="only this source (github, ...)")
    events.add_argument("--limit", type=int, default=20, help="how many (1-500, default 20)")
    events.add_argument("--follow", action="store_true", help="then print each change as it happens")
    event = group("event", "show a webhook event")
    leaf(event, "show", commands.event_show, "an event with its matches, tasks and history").add_argument("id")
    webhook = group("webhook", "webhook tools")
    leaf(webhook, "replay", commands.webhook_replay,
         "run a stored event's matching again, as a new event").add_argument("event_id")

    rules = group("rules", "debug rules against a delivery")
    rules_test = leaf(rules, "test", cli_rules.rules_test,
                      "which rules a delivery matches, why the others do not, and the prompts (a dry run: "
                      "nothing is stored or dispatched)")
    rules_test.add_argument("source", help="a source of the config (github, ...)")
    rules_test.add_argument("payload", help="the delivery's JSON body: a file, or - for stdin")
    rules_test.add_argument("--type", help="the event type (pull_request.opened); for GitHub this stands in for "
                                           "the X-GitHub-Event header")
    rules_test.add_argument("--header", action="append", metavar="'NAME: VALUE'",
                            help="a delivery header (repeat), e.g. 'X-GitHub-Event: pull_request'")

    incidents = leaf(sub, "incidents", commands.incidents, "list incidents, newest activity first")
    incidents.add_argument("--status", help="open, acknowledged, resolved or regressed")
    incidents.add_argument("--class", dest="failure_class", help="a failure class (loop, crash, timeout, ...)")
    incidents.add_argument("--worker")
    incidents.add_argument("--limit", type=int, default=20, help="how many (1-500, default 20)")
    incident = group("incident", "show an incident")
    leaf(incident, "show", commands.incident_show,
         "an incident with its evidence, history and playbook").add_argument("id")

    leaf(sub, "trace", commands.trace, "a trace (a task's id is its trace's) as a timeline").add_argument("id")

    fix = leaf(sub, "fix", commands.fix, "run the fix agent for an incident")
    fix.add_argument("incident_id")
    fix.add_argument("--runner", help="builtin or worker (default: worker when a fix-agent worker exists)")
    fix.add_argument("--repo", help="one of the repositories configured for the incident")
    fix.add_argument("--base-ref", help="where the fix branch starts (default the repo's base_ref)")
    fix.add_argument("--wait", action="store_true", help="wait for the run (exit 1 if it fails or makes no commit)")

    replay = leaf(sub, "replay", commands.replay, "replay an incident's tasks before and after a fix")
    replay.add_argument("incident_id")
    replay.add_argument("--fix-run", help="compare this fix run's base and branch (default the newest with a commit)")
    replay.add_argument("--before", help="the ref to run before the fix")
    replay.add_argument("--after", help="the ref to run after the fix")
    replay.add_argument("--case", action="append", dest="cases", metavar="TASK_ID", help="a task to replay (repeat)")
    replay.add_argument("--wait", action="store_true", help="wait for the verdict (exit 1 unless it is 'fixed')")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="taskyard", description="Taskyard client commands", epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_client_commands(parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND"))
    return parser


def _server(args: argparse.Namespace, env: dict[str, str] | os._Environ[str]) -> tuple[str, str | None]:
    url = (args.url or env.get("TASKYARD_URL") or DEFAULT_URL).strip()
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"invalid --url {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"invalid --url {url!r}: give http(s)://host[:port]")
    key = (args.api_key or env.get("TASKYARD_API_KEY") or "").strip() or None
    if key is not None and not (key.isascii() and key.isprintable()):
        raise UsageError("the API key holds characters an HTTP header cannot carry (check for a stray newline or a "
                         "non-ASCII character)")
    return url, key


def exit_code(error: ClientError) -> int:
    """3 not found, 4 refused (4xx), 5 unreachable or 5xx (or an answer that is not the API's)."""
    if isinstance(error, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, ServerUnreachable) or error.status is None or error.status >= 500:
        return EXIT_SERVER
    return EXIT_REFUSED


def run_client(argv: list[str]) -> int:
    """Parse ``argv`` (starting with a client command), run it, answer the exit code."""
    args = _parser().parse_args(argv)
    try:
        url, key = _server(args, os.environ)
        out = Output(json_mode=args.json or not sys.stdout.isatty(),
                     color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
        with Client(url, api_key=key) as client:
            return args.client_command(client, args, out)
    except UsageError as exc:
        print(f"taskyard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as exc:
        hint = _HINTS.get(exc.status or 0, "") if isinstance(exc, Unauthorized) else ""
        print(f"taskyard: {' '.join(str(exc).split())}{hint}", file=sys.stderr)
        return exit_code(exc)
    except (KeyError, TypeError, AttributeError) as exc:  # an answer of the wrong shape: not a Taskyard server
        print(f"taskyard: unexpected answer from {url}: is it a Taskyard server? ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return EXIT_SERVER
    except UnicodeEncodeError:
        print("taskyard: the terminal's encoding cannot show this output; use --json or set PYTHONIOENCODING=utf-8",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `taskyard tasks | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
