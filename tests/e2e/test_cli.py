"""The `taskyard` client commands and the Python client against a real `taskyard serve` (with its workers in
process): the real CLI runs in a subprocess (`python -m api.cli ...`) with stdout piped, so it prints JSON."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import io
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import cli_rules
from api.cli_render import Output
from api.client import AsyncClient, Client, NotFound
from tests.e2e.conftest import ROOT, Cluster, free_port, wait_final, wait_for
from tests.fixture_paths import GITHUB_WEBHOOKS

pytestmark = pytest.mark.e2e

KEY = "k-cli"
SECRET = "gh-cli-secret"
MISSING = "0" * 32
TOUR_MARKER = "<!-- run-by-test: tests/e2e/test_cli.py -->"
CONFIG = """
redis_url: {redis_url}
api_key: k-cli
heartbeat_interval: 0.5s
sources:
  github: {{secret: gh-cli-secret}}
workers:
  - name: echo
    handler: "workers.builtin:echo"
    events:
      - {{source: github, on: [pull_request.opened], prompt: "Review #{{{{.number}}}}"}}
  - name: bad
    command: [sh, -c, "echo boom >&2; exit 3"]
    auto: false
  - name: slow
    command: [sleep, "30"]
    auto: false
"""


@pytest.fixture()
def api(cluster: Cluster, redis_url: str) -> Iterator[httpx.Client]:
    cluster.config(CONFIG.format(redis_url=redis_url))
    yield cluster.serve(headers={"X-API-Key": KEY})


def cli(api: httpx.Client, *args: str, key: str | None = KEY, url: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real CLI, stdout and stderr piped; the key comes from TASKYARD_API_KEY as a user would set it."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **({"TASKYARD_API_KEY": key} if key else {})}
    return subprocess.run([sys.executable, "-m", "api.cli", *args, "--url", url or str(api.base_url)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def answer(done: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    """The JSON the command printed, once it exited with ``code`` and printed nothing on stderr."""
    assert (done.returncode, done.stderr) == (code, ""), (done.stdout, done.stderr)
    return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stdout == "" and done.stderr.count("\n") == 1 and done.stderr.startswith("taskyard: "), done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.strip()


def test_submit_with_wait_exits_0_with_the_result_and_a_failing_task_exits_1(api: httpx.Client) -> None:
    done = answer(cli(api, "task", "submit", "hello from the cli", "--wait", "--context", '{"pr": 7}'))
    assert (done["state"], done["result"], done["context"]) == ("completed", "hello from the cli", {"pr": 7})
    failed = answer(cli(api, "task", "submit", "x", "--worker", "bad", "--wait"), code=1)
    assert (failed["state"], failed["worker_name"], failed["exit_code"]) == ("failed", "bad", 3)
    assert "boom" in failed["error"]
    queued = answer(cli(api, "task", "submit", "no wait", "--timeout", "30s"))
    assert queued["state"] in ("pending", "dispatched", "completed") and queued["timeout"] == 30.0


def test_show_cancel_tasks_workers_and_trace_print_json_when_piped(api: httpx.Client) -> None:
    # Given: a completed task and a long one
    first = api.post("/task", json={"prompt": "one"}).json()["id"]
    assert wait_final(api, first)["state"] == "completed"
    slow = api.post("/task", json={"prompt": "zzz", "worker": "slow"}).json()["id"]
    wait_for(lambda: api.get(f"/task/{slow}").json(), lambda t: t["state"] == "dispatched")

    # Then: each command prints what the API answers
    shown = answer(cli(api, "task", "show", first))
    assert (shown["id"], shown["state"], shown["result"]) == (first, "completed", "one")
    cancelled = answer(cli(api, "task", "cancel", slow))
    assert cancelled["id"] == slow and cancelled["state"] in ("dispatched", "cancelled")
    assert wait_final(api, slow)["state"] == "cancelled"
    listed = answer(cli(api, "tasks", "--state", "completed"))
    assert [t["id"] for t in listed] == [first]
    assert [t["id"] for t in answer(cli(api, "tasks", "--limit", "1"))] == [slow]  # newest first
    assert [t["id"] for t in answer(cli(api, "tasks", "--worker", "slow"))] == [slow]
    workers = answer(cli(api, "workers"))
    assert [w["name"] for w in workers] == ["bad", "echo", "slow"]  # by name
    assert all(w["state"] in ("online", "busy") and w["health"] == "healthy" for w in workers), workers
    timeline = answer(cli(api, "trace", first))
    assert timeline["trace"]["id"] == first and timeline["trace"]["status"] == "completed"
    types = [e["type"] for e in timeline["events"]]
    assert types[0] == "task_started" and types[-1] == "session_end"
    assert [e["seq"] for e in timeline["events"]] == list(range(1, len(types) + 1))


def github_delivery(api: httpx.Client) -> str:
    body = (GITHUB_WEBHOOKS / "pull_request.opened.json").read_bytes()
    sent = api.post("/webhook/github", content=body, headers={
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "cli-delivery-1"})
    assert sent.status_code == 202, sent.text
    return sent.json()["id"]


def test_events_replay_incidents_and_fix_commands_print_json_when_piped(api: httpx.Client) -> None:
    # Given: a GitHub delivery that made a task, and a failed task (an exit_nonzero incident)
    event_id = github_delivery(api)
    wait_for(lambda: api.get(f"/event/{event_id}").json(), lambda e: e["state"] == "completed")
    failed = api.post("/task", json={"prompt": "x", "worker": "bad"}).json()["id"]
    assert wait_final(api, failed)["state"] == "failed"

    listed = answer(cli(api, "events", "--source", "github"))
    assert [(e["id"], e["state"], e["type"]) for e in listed] == [(event_id, "completed", "pull_request.opened")]
    shown = answer(cli(api, "event", "show", event_id))
    assert shown["id"] == event_id and [t["state"] for t in shown["tasks"]] == ["completed"]

    # When: the event is replayed: a new event, matched again, with a task of its own
    replayed = answer(cli(api, "webhook", "replay", event_id))
    assert replayed["replay_of"] == event_id and replayed["delivery_id"] == f"replay:{event_id}:1"
    again = wait_for(lambda: api.get(f"/event/{replayed['id']}").json(), lambda e: e["state"] == "completed")
    assert again["state"] == "completed" and len(again["tasks"]) == 1
    assert again["tasks"][0]["id"] != shown["tasks"][0]["id"]
    assert api.get(f"/task/{again['tasks'][0]['id']}").json()["result"] == "Review #2"

    incidents = wait_for(lambda: answer(cli(api, "incidents", "--class", "exit_nonzero")), lambda i: len(i) == 1)
    assert [(i["failure_class"], i["status"]) for i in incidents] == [("exit_nonzero", "open")]
    incident = answer(cli(api, "incident", "show", incidents[0]["id"]))
    assert incident["id"] == incidents[0]["id"] and failed in incident["tasks"] and incident["playbook"]
    assert answer(cli(api, "incidents", "--status", "resolved")) == []

    # The fix agent has no repository here: the run completes as a labelled fallback, which --wait reports as 1
    run = answer(cli(api, "fix", incident["id"], "--runner", "builtin", "--wait"), code=1)
    assert (run["status"], run["fallback"], run["commit"]) == ("completed", True, None) and run["fallback_reason"]
    refused = one_line_error(cli(api, "replay", incident["id"]), code=4)
    assert refused.startswith("taskyard: ") and ("nothing" in refused or "repository" in refused)


def test_rules_test_dry_runs_a_saved_delivery_and_exits_1_when_no_rule_matches(api: httpx.Client,
                                                                              tmp_path: Path) -> None:
    delivery = GITHUB_WEBHOOKS / "pull_request.opened.json"
    # A delivery the echo worker's rule matches: its rendered prompt, exit 0
    matched = answer(cli(api, "rules", "test", "github", str(delivery), "--header", "X-GitHub-Event: pull_request"))
    assert (matched["type"], matched["matched"]) == ("pull_request.opened", ["echo.events[0]"])
    assert matched["rules"][0]["prompt"] == "Review #2"
    # The same payload as another event type: no rule matches, exit 1, and the answer says why
    missed = answer(cli(api, "rules", "test", "github", str(delivery), "--type", "pull_request.closed"), code=1)
    assert missed["matched"] == [] and "pull_request.closed" in missed["rules"][0]["reason"]
    # Nothing was stored or dispatched by either
    assert api.get("/events").json() == [] and api.get("/tasks").json() == []
    # Bad input: a payload that is not JSON, a malformed header (usage, exit 2); an unknown source (exit 3)
    (tmp_path / "bad.json").write_text("{nope")
    assert "not JSON" in one_line_error(cli(api, "rules", "test", "github", str(tmp_path / "bad.json")), code=2)
    assert "Name: value" in one_line_error(cli(api, "rules", "test", "github", str(delivery), "--header", "x"),
                                           code=2)
    assert one_line_error(cli(api, "rules", "test", "nope", str(delivery)), code=3) == "taskyard: unknown source: nope"
    # A GitHub payload without its event type: the server's reason reaches the one line (exit 4)
    untyped = one_line_error(cli(api, "rules", "test", "github", str(delivery)), code=4)
    assert untyped.startswith("taskyard: invalid request body: ") and "X-GitHub-Event" in untyped

    # On a terminal: a table of rules and the prompt of each match (the command in process, on the real server)
    out = io.StringIO()
    args = argparse.Namespace(source="github", payload=str(delivery), type="pull_request.opened", header=None)
    with Client(str(api.base_url), api_key=KEY) as client:
        assert cli_rules.rules_test(client, args, Output(json_mode=False, color=False, stream=out)) == 0
    text = out.getvalue()
    assert re.search(r"echo\.events\[0\]\s+echo\s+yes", text), text
    assert "prompt of echo.events[0]\nReview #2" in text


def test_an_unknown_id_exits_3_and_an_unreachable_server_exits_5_each_with_one_line(api: httpx.Client) -> None:
    for args, message in ((("task", "show", MISSING), "task not found"),
                          (("task", "cancel", MISSING), "task not found"),
                          (("event", "show", MISSING), "event not found"),
                          (("webhook", "replay", MISSING), "event not found"),
                          (("incident", "show", MISSING), "incident not found"),
                          (("trace", MISSING), "trace not found")):
        assert one_line_error(cli(api, *args), code=3) == f"taskyard: {message}", args
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    unreachable = one_line_error(cli(api, "tasks", url=closed), code=5)
    assert unreachable.startswith(f"taskyard: cannot reach {closed}: ")
    assert one_line_error(cli(api, "workers", key="wrong"), code=4).startswith("taskyard: unauthorized")
    assert one_line_error(cli(api, "tasks", "--state", "bogus"), code=4).startswith("taskyard: invalid state")
    assert "JSON object" in one_line_error(cli(api, "task", "submit", "x", "--context", "[1]"), code=2)
    assert "--url" in one_line_error(cli(api, "tasks", url="ftp://example.com"), code=2)
    assert "required" in one_line_error(cli(api, "task", "submit"), code=2)


def test_tasks_watch_json_prints_a_line_when_a_task_completes(api: httpx.Client) -> None:
    first = api.post("/task", json={"prompt": "before the watch"}).json()["id"]
    assert wait_final(api, first)["state"] == "completed"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TASKYARD_API_KEY": KEY}
    watch = subprocess.Popen([sys.executable, "-m", "api.cli", "tasks", "--watch", "--json", "--url",
                              str(api.base_url)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[dict[str, Any]] = []
    try:
        assert watch.stdout is not None
        # The first line is the current list: the feed is open (it opens before the list is read).
        lines.append(json.loads(watch.stdout.readline()))
        assert (lines[0]["id"], lines[0]["state"]) == (first, "completed")
        second = api.post("/task", json={"prompt": "during the watch"}).json()["id"]
        reader = threading.Thread(target=_read_until, args=(watch, lines, second), daemon=True)
        reader.start()
        reader.join(timeout=20)
        assert (lines[-1]["id"], lines[-1]["state"], lines[-1]["result"]) == (second, "completed", "during the watch")
        assert all(line["id"] == second for line in lines[1:])
    finally:
        watch.send_signal(signal.SIGINT)
        code = watch.wait(timeout=10)
    assert code == 0 and watch.stderr is not None and "Traceback" not in watch.stderr.read()


def _read_until(proc: subprocess.Popen[str], lines: list[dict[str, Any]], task_id: str) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        lines.append(json.loads(raw))
        if lines[-1]["id"] == task_id and lines[-1]["state"] == "completed":
            return


def test_the_python_client_submits_waits_pages_and_follows_activity_sync_and_async(api: httpx.Client) -> None:
    url = str(api.base_url)
    with Client(url, api_key=KEY) as client:
        assert client.health()["status"] == "ok"
        with client.activity() as feed:
            task = client.submit_task("sync client", worker="echo")
            states: list[str] = []
            done = client.wait_for_task(task["id"], timeout=20, on_state=states.append)
            assert (done["state"], done["result"]) == ("completed", "sync client")
            assert states[-1] == "completed" and states[0] in ("pending", "dispatched", "completed")
            seen = []
            for entry in feed:
                seen.append((entry["kind"], entry["subject"], entry["state"]))
                if entry["state"] == "completed":
                    break
        assert seen[-1] == ("task", task["id"], "completed")
        other = client.submit_task("second")
        client.wait_for_task(other["id"], timeout=20)
        first_page = client.list_tasks(limit=1)
        assert [t["id"] for t in first_page] == [other["id"]] and first_page.next_cursor
        assert [t["id"] for t in client.iterate(client.list_tasks, limit=1)] == [other["id"], task["id"]]
        with pytest.raises(NotFound, match="^task not found$"):
            client.get_task(MISSING)

    async def use_async() -> tuple[dict[str, Any], list[str]]:
        async with AsyncClient(url, api_key=KEY) as client:
            submitted = await client.submit_task("async client")
            done = await client.wait_for_task(submitted["id"], timeout=20)
            names = [w["name"] for w in await client.workers()]
            with pytest.raises(NotFound):
                await client.get_event(MISSING)
            return done, names

    done, names = asyncio.run(use_async())
    assert (done["state"], done["result"]) == ("completed", "async client")
    assert names == ["bad", "echo", "slow"]


def _tour() -> tuple[str, list[tuple[str, str]]]:
    """The export line and (command, comment) per taskyard line of docs/cli.md's marked block."""
    text = (ROOT / "docs" / "cli.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text.split(TOUR_MARKER, 1)[1], re.S)
    assert block, "the marked block is gone from docs/cli.md"
    lines = block.group(1).splitlines()
    assert lines[0].startswith("export ")
    return lines[0], [(c.strip(), note.strip()) for c, _, note in (line.partition("  #") for line in lines[1:])]


def test_the_cli_tour_in_the_docs_runs_as_written(cluster: Cluster, redis_url: str) -> None:
    cluster.config(f"redis_url: {redis_url}\napi_key: secret\n")
    api = cluster.serve(headers={"X-API-Key": "secret"})
    export, tour = _tour()
    export = export.replace("http://127.0.0.1:8080", str(api.base_url))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    assert len(tour) >= 10
    task_id = ""
    for command, note in tour:
        if "<task id>" in command:
            assert task_id, "the tour reads a task before it made one"
            wait_final(api, task_id)
        done = subprocess.run(["bash", "-c", f"{export}\n{command.replace('<task id>', task_id)}"], env=env,
                              capture_output=True, text=True, timeout=60)
        stated = re.match(r"exit ([0-9]+): (.*?)(\.\.\.)?$", note)
        if stated:
            assert done.returncode == int(stated.group(1)), (command, done.stderr)
            assert done.stderr.startswith(stated.group(2)) and done.stderr.count("\n") == 1, (command, done.stderr)
            continue
        assert (done.returncode, done.stderr) == (0, ""), (command, done.stderr)
        printed = json.loads(done.stdout)
        if "task submit" in command:
            task_id = printed["id"]
        if "--wait" in command:
            assert (printed["state"], printed["result"]) == ("completed", "hello taskyard")
        if "<task id>" in command and "trace" not in command:
            assert printed["id"] == task_id
