"""What each client command of ``taskyard`` does (parsing and exit codes are in :mod:`api.cli_client`).

A command takes the :class:`api.client.Client`, the parsed arguments and the :class:`api.cli_render.Output`, and
answers its exit code: 0, or 1 when the task or run it waited for failed. Server errors propagate as
:class:`api.client.ClientError`; a bad option value is a :class:`UsageError`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from api.cli_render import Column, Output, Spinner, age, clip, duration
from api.cli_trace import render_timeline
from api.client import Client, NotFound

__all__ = ["Command", "UsageError", "event_show", "events", "fix", "incident_show", "incidents", "replay",
           "task_cancel", "task_show", "task_submit", "tasks", "trace", "webhook_replay", "workers"]

Command = Callable[[Client, argparse.Namespace, Output], int]
Record = dict[str, Any]
TRACE_PAGE = 1000  # trace events per request when reading a whole trace
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen (--watch)


class UsageError(Exception):
    """A bad option value (exit 2)."""


def _wait(out: Output, label: str, work: Callable[[Callable[[str], None]], Record]) -> Record:
    """Run a wait, with a spinner and the live state when a person is watching the terminal."""
    if out.json_mode or not sys.stderr.isatty():
        return work(lambda _state: None)
    return Spinner(sys.stderr, label, color=out.color).run(work)


# -- tasks ---------------------------------------------------------------------------------------------------
TASK_COLUMNS = [Column("ID", lambda t: t["id"]), Column("STATE", lambda t: t["state"], styled=True),
                Column("WORKER", lambda t: t.get("worker_name")), Column("CREATED", lambda t: age(t["created_at"])),
                Column("TOOK", lambda t: duration(t.get("dispatched_at"), t.get("completed_at")), right=True),
                Column("PROMPT", lambda t: clip(t.get("prompt"), 60))]


def _show_task(out: Output, task: Record) -> None:
    out.fields([("id", task["id"]), ("state", task["state"]), ("worker", task.get("worker_name")),
                ("pool", task.get("pool")), ("attempts", f"{task.get('attempts')} of {task.get('max_retries')}"),
                ("created", f"{task.get('created_at')} ({age(task.get('created_at'))})"),
                ("took", duration(task.get("dispatched_at"), task.get("completed_at"))),
                ("exit code", task.get("exit_code")), ("regression run", task.get("regression_run"))],
               styled=("state",))
    out.heading("prompt")
    out.write(task.get("prompt") or "")
    if task.get("result") is not None:
        out.heading("result")
        out.write(task["result"].rstrip("\n"))
    if task.get("error"):
        out.heading("error")
        out.write(out.paint(task["error"].rstrip("\n"), "red"))


def task_submit(client: Client, args: argparse.Namespace, out: Output) -> int:
    context = None
    if args.context is not None:
        try:
            context = json.loads(args.context)
        except ValueError as exc:
            raise UsageError(f"--context is not JSON: {exc}") from None
        if not isinstance(context, dict):
            raise UsageError("--context must be a JSON object")
    timeout: float | str | None = args.timeout
    if isinstance(timeout, str) and timeout.replace(".", "", 1).isdigit():
        timeout = float(timeout)
    task = client.submit_task(args.prompt, worker=args.worker, pool=args.pool, context=context, timeout=timeout,
                              max_retries=args.max_retries, idempotency_key=args.idempotency_key)
    if args.wait:
        task = _wait(out, f"task {task['id']}", lambda seen: client.wait_for_task(task["id"], on_state=seen))
    if out.json_mode:
        out.document(task)
    elif not args.wait:
        out.write(f"task {task['id']} {out.state(task['state'])} (worker {task.get('worker_name') or '-'})")
    else:
        _show_task(out, task)
    return 1 if args.wait and task["state"] != "completed" else 0


def task_show(client: Client, args: argparse.Namespace, out: Output) -> int:
    task = client.get_task(args.id)
    out.document(task) if out.json_mode else _show_task(out, task)
    return 0


def task_cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    task = client.cancel_task(args.id)
    out.document(task) if out.json_mode else out.write(f"task {task['id']} {out.state(task['state'])}")
    return 0


def _changes(client: Client, kind: str, entry: Record, fetch: Callable[[str], Record],
             printed: dict[str, str]) -> Record | None:
    """The record an activity entry is about, read now; None when it is gone or was printed in this state."""
    if entry.get("kind") != kind:
        return None
    try:
        record = fetch(entry["subject"])
    except NotFound:
        return None
    if printed.get(record["id"]) == record["state"]:
        return None
    printed[record["id"]] = record["state"]
    return record


def tasks(client: Client, args: argparse.Namespace, out: Output) -> int:
    def page() -> list[Record]:
        return client.list_tasks(state=args.state, worker=args.worker, limit=args.limit).items

    if not args.watch:
        out.document(page()) if out.json_mode else out.table(page(), TASK_COLUMNS, empty="no tasks")
        return 0
    printed: dict[str, str] = {}
    try:
        with client.activity(ticks=not out.json_mode) as feed:  # open first: nothing is missed after the list
            listed = page()
            if out.json_mode:
                for task in reversed(listed):
                    printed[task["id"]] = task["state"]
                    out.json_line(task)
            else:
                _render_watch(out, args, listed)
            for entry in feed:
                if out.json_mode:
                    if args.worker and entry.get("worker") != args.worker:
                        continue
                    changed = _changes(client, "task", entry, client.get_task, printed)
                    if changed is not None and args.state in (None, changed["state"]):
                        out.json_line(changed)
                elif entry["kind"] in ("task", "tick"):
                    _render_watch(out, args, page())
    except KeyboardInterrupt:
        return 0
    return 0


def _render_watch(out: Output, args: argparse.Namespace, listed: list[Record]) -> None:
    filters = "".join(f" {name}={value}" for name, value in (("state", args.state), ("worker", args.worker)) if value)
    out.stream.write(CLEAR)
    out.write(out.paint(f"tasks{filters}   live, Ctrl-C to stop   {time.strftime('%H:%M:%S')}", "dim"))
    out.table(listed, TASK_COLUMNS, empty="no tasks")


def workers(client: Client, args: argparse.Namespace, out: Output) -> int:
    found = client.workers()
    if out.json_mode:
        out.document(found)
        return 0
    out.table(found, [
        Column("NAME", lambda w: w["name"]), Column("KIND", lambda w: w.get("kind")),
        Column("STATE", lambda w: w.get("state"), styled=True),
        Column("HEALTH", lambda w: w.get("health"), styled=True),
        Column("QUEUE", lambda w: f"{w.get('queue_depth')}/{w.get('max_queue_depth')}", right=True),
        Column("RUNNING", lambda w: f"{w.get('running')}/{w.get('concurrency')}", right=True),
        Column("PROCS", lambda w: w.get("processes"), right=True),
        Column("POOLS", lambda w: ",".join(w.get("pools") or [])),
        Column("HEARTBEAT", lambda w: age(w.get("last_heartbeat")))], empty="no workers")
    return 0


# -- webhook events ------------------------------------------------------------------------------------------
EVENT_COLUMNS = [Column("ID", lambda e: e["id"]), Column("STATE", lambda e: e["state"], styled=True),
                 Column("SOURCE", lambda e: e.get("source")), Column("TYPE", lambda e: e.get("type")),
                 Column("TASKS", lambda e: sum(1 for m in e.get("matches") or [] if m.get("task_id")), right=True),
                 Column("RECEIVED", lambda e: age(e.get("created_at"))), Column("SUBJECT", lambda e: e.get("subject"))]
_DETAIL_ONLY = ("payload", "history", "write_back", "tasks")


def events(client: Client, args: argparse.Namespace, out: Output) -> int:
    def page() -> list[Record]:
        return client.events(state=args.state, source=args.source, limit=args.limit).items

    if not args.follow:
        out.document(page()) if out.json_mode else out.table(page(), EVENT_COLUMNS, empty="no events")
        return 0
    printed: dict[str, str] = {}

    def summary(event_id: str) -> Record:  # as GET /events lists it: without the payload and history
        return {k: v for k, v in client.get_event(event_id).items() if k not in _DETAIL_ONLY}

    try:
        with client.activity() as feed:
            listed = list(reversed(page()))  # oldest first: what follows continues the list
            printed.update((e["id"], e["state"]) for e in listed)
            if not out.json_mode:
                out.table(listed, EVENT_COLUMNS, empty="no events yet")
            for event in listed if out.json_mode else ():
                out.json_line(event)
            for entry in feed:
                if args.source and entry.get("source") != args.source:
                    continue
                changed = _changes(client, "event", entry, summary, printed)
                if changed is None or args.state not in (None, changed["state"]):
                    continue
                if out.json_mode:
                    out.json_line(changed)
                else:
                    out.write(f"{time.strftime('%H:%M:%S')}  {changed['id']}  {out.state(changed['state'])}  "
                              f"{changed.get('source')}  {changed.get('type')}  {changed.get('subject') or ''}")
    except KeyboardInterrupt:
        return 0
    return 0


def event_show(client: Client, args: argparse.Namespace, out: Output) -> int:
    event = client.get_event(args.id)
    if out.json_mode:
        out.document(event)
        return 0
    out.fields([("id", event["id"]), ("state", event["state"]), ("source", event.get("source")),
                ("type", event.get("type")), ("actor", event.get("actor")), ("subject", event.get("subject")),
                ("delivery", event.get("delivery_id")), ("replay of", event.get("replay_of")),
                ("received", f"{event.get('created_at')} ({age(event.get('created_at'))})"),
                ("error", event.get("error"))], styled=("state",))
    out.heading("matches")
    out.table(event.get("matches") or [], [
        Column("RULE", lambda m: m.get("rule")), Column("WORKER", lambda m: m.get("worker") or m.get("pool")),
        Column("STATUS", lambda m: m.get("status"), styled=True), Column("TASK", lambda m: m.get("task_id")),
        Column("REASON", lambda m: m.get("reason"))], empty="no rule matched")
    out.heading("tasks")
    out.table(event.get("tasks") or [], [
        Column("ID", lambda t: t["id"]), Column("STATE", lambda t: t.get("state"), styled=True),
        Column("WORKER", lambda t: t.get("worker_name")), Column("RULE", lambda t: t.get("rule"))], empty="no tasks")
    out.heading("history")
    out.table(event.get("history") or [], [
        Column("AT", lambda h: h.get("at")), Column("STATE", lambda h: h.get("state"), styled=True),
        Column("DETAIL", lambda h: h.get("detail"))])
    return 0


def webhook_replay(client: Client, args: argparse.Namespace, out: Output) -> int:
    event = client.replay_event(args.event_id)
    if out.json_mode:
        out.document(event)
    else:
        out.write(f"event {event['id']} {out.state(event['state'])}: replays {event.get('replay_of')} "
                  f"({event.get('source')} {event.get('type')}); follow it with: taskyard event show {event['id']}")
    return 0


# -- traces, incidents, fix and regression runs ------------------------------------------------------------
def trace(client: Client, args: argparse.Namespace, out: Output) -> int:
    summary = client.get_trace(args.id)
    found: list[Record] = []
    while True:
        batch = client.trace_events(args.id, after_seq=found[-1]["seq"] if found else 0, limit=TRACE_PAGE)
        found += batch
        if len(batch) < TRACE_PAGE:
            break
    out.document({"trace": summary, "events": found}) if out.json_mode else render_timeline(out, summary, found)
    return 0


def incidents(client: Client, args: argparse.Namespace, out: Output) -> int:
    page = client.incidents(status=args.status, failure_class=args.failure_class, worker=args.worker,
                            limit=args.limit).items
    if out.json_mode:
        out.document(page)
        return 0
    out.table(page, [
        Column("ID", lambda i: i["id"]), Column("STATUS", lambda i: i["status"], styled=True),
        Column("CLASS", lambda i: i["failure_class"]), Column("COUNT", lambda i: i.get("count"), right=True),
        Column("WORKERS", lambda i: clip(",".join(i.get("workers") or []), 24)),
        Column("LAST SEEN", lambda i: age(i.get("last_seen"))), Column("SUMMARY", lambda i: i.get("summary"))],
        empty="no incidents")
    return 0


def incident_show(client: Client, args: argparse.Namespace, out: Output) -> int:
    found = client.get_incident(args.id)
    if out.json_mode:
        out.document(found)
        return 0
    evidence = found.get("evidence") or {}
    out.fields([("id", found["id"]), ("status", found["status"]), ("class", found["failure_class"]),
                ("signature", clip(found.get("signature"), 100)), ("owner", found.get("owner")),
                ("occurrences", f"{found.get('count')} ({found.get('regressions')} regressions)"),
                ("first seen", found.get("first_seen")), ("last seen", found.get("last_seen")),
                ("workers", ", ".join(found.get("workers") or [])),
                ("cost wasted", f"${float(found.get('cost_wasted_usd') or 0):.4f}"),
                ("trace", (found.get("representative") or {}).get("trace_id")),
                ("evidence", f"seqs {evidence.get('seqs')}, critical step {evidence.get('critical_step_seq')}, "
                             f"confidence {evidence.get('confidence')}" if evidence else None)], styled=("status",))
    out.heading("summary")
    out.write(found.get("summary") or "")
    out.heading("history")
    out.table(found.get("history") or [], [
        Column("AT", lambda h: h.get("at")), Column("BY", lambda h: h.get("by")), Column("FIELD", lambda h: h["field"]),
        Column("CHANGE", lambda h: f"{h.get('from')} -> {h.get('to')}")])
    if found.get("playbook"):
        out.heading("playbook")
        out.write(found["playbook"].rstrip())
    return 0


def fix(client: Client, args: argparse.Namespace, out: Output) -> int:
    run = client.start_fix(args.incident_id, repo=args.repo, base_ref=args.base_ref, runner=args.runner)
    if args.wait:
        run = _wait(out, f"fix run {run['id']}", lambda seen: client.wait_for_fix_run(run["id"], on_state=seen))
    if out.json_mode:
        out.document(run)
    else:
        out.fields([("fix run", run["id"]), ("status", run["status"]), ("runner", run.get("runner")),
                    ("repo", run.get("repo")), ("branch", run.get("branch")), ("commit", run.get("commit")),
                    ("files", ", ".join(run.get("files") or [])), ("fallback", run.get("fallback_reason")),
                    ("error", run.get("error"))], styled=("status",))
        for name in ("plan", "diff"):
            if run.get(name):
                out.heading(name)
                out.write(run[name].rstrip())
    return 1 if args.wait and (run["status"] != "completed" or not run.get("commit")) else 0


def _side(side: Record | None) -> str:
    if not side:
        return "-"
    if side.get("error"):
        return f"error: {side['error']}"
    classes = ",".join(d.get("failure_class", "?") for d in side.get("detections") or [])
    return f"failed ({classes})" if side.get("failed") else "passed"


def replay(client: Client, args: argparse.Namespace, out: Output) -> int:
    run = client.start_regression(args.incident_id, fix_run_id=args.fix_run, before_ref=args.before,
                                  after_ref=args.after, cases=args.cases)
    if args.wait:
        run = _wait(out, f"regression run {run['id']}",
                    lambda seen: client.wait_for_regression_run(run["id"], on_state=seen))
    if out.json_mode:
        out.document(run)
    else:
        out.fields([("regression run", run["id"]), ("status", run["status"]), ("verdict", run.get("verdict")),
                    ("before", f"{run.get('before_ref')} ({run.get('before_commit') or '?'})"),
                    ("after", f"{run.get('after_ref')} ({run.get('after_commit') or '?'})"),
                    ("error", run.get("error"))], styled=("status", "verdict"))
        out.heading("cases")
        out.table(run.get("cases") or [], [
            Column("TASK", lambda c: c.get("task_id")), Column("WORKER", lambda c: c.get("worker")),
            Column("RESULT", lambda c: c.get("result"), styled=True),
            Column("BEFORE", lambda c: _side(c.get("before"))),
            Column("AFTER", lambda c: _side(c.get("after")))], empty="no cases yet")
    return 1 if args.wait and (run["status"] != "completed" or run.get("verdict") != "fixed") else 0
