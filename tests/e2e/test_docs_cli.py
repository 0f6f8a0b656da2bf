"""docs/cli.md's reference runs as written (its tour is run by tests/e2e/test_cli.py): every command of its
shell blocks, with `<task id>`, `<event id>` and `<incident id>` filled in from a real server, and its two Python
client examples. The server has what the examples name: a `reviewer` worker in the `reviewers` pool with a
GitHub rule, and a looping agent in a git repository whose loop incident the fix agent fixes and a regression
replay proves fixed. `--watch` and `--follow` run on a terminal until Ctrl-C, as a person runs them."""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, Cluster, wait_for
from tests.e2e.doc_shell import DocShell, commands, marked_blocks
from tests.e2e.test_fix_loop import _make_repo, _run_loopers

pytestmark = pytest.mark.e2e

MARKER = "<!-- run-by-test: tests/e2e/test_docs_cli.py -->"
KEY, SECRET = "secret", "gh-docs-cli"  # the key is the one docs/cli.md's examples use
DOC_URL = "http://127.0.0.1:8080"


def _config(redis_url: str, tmp_path: Path, repo: Path) -> str:
    return f"""
redis_url: {redis_url}
api_key: {KEY}
heartbeat_interval: 0.5s
data_dir: {tmp_path / "data"}
sources:
  github: {{secret: {SECRET}}}
workers:
  - name: reviewer
    handler: "workers.builtin:echo"
    pools: [reviewers]
    events:
      - {{source: github, on: [pull_request.opened], prompt: "Review #{{{{.number}}}}"}}
  - name: looper
    command: [{sys.executable}, agent.py]
    cwd: {repo}
    repo: {{path: {repo}, base_ref: main, allowed_paths: [taskyard-agent.yaml]}}
    auto: false
"""


def _deliver(api: httpx.Client, delivery: str) -> str:
    body = (ROOT / "tests/fixtures/github-webhooks/pull_request.opened.json").read_bytes()
    sent = httpx.post(f"{api.base_url}/webhook/github", content=body, timeout=10, headers={
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery, "Content-Type": "application/json"})
    assert sent.status_code == 202, sent.text
    return str(sent.json()["id"])


def _when(seen: str, act: Callable[[], str], *, every: float | None = None) -> tuple[list[str], Callable[[str], None]]:
    """For DocShell.stream: ``act`` once the output shows ``seen`` (again every ``every`` s); what it made."""
    made: list[str] = []
    last = [0.0]

    def then(out: str) -> None:
        if seen in out and (not made or (every is not None and time.monotonic() - last[0] > every)):
            made.append(act())
            last[0] = time.monotonic()
    return made, then


def test_every_command_of_the_cli_reference_runs_as_written(cluster: Cluster, redis_url: str,
                                                            tmp_path: Path) -> None:
    # Given: a loop incident of the looping agent, and a GitHub delivery that made a task
    repo = _make_repo(tmp_path)
    cluster.config(_config(redis_url, tmp_path, repo))
    api = cluster.serve(headers={"X-API-Key": KEY})
    looped = _run_loopers(api, 1)
    [incident] = wait_for(lambda: api.get("/api/incidents").json(), lambda i: len(i) == 1 and i[0]["task_count"] == 1,
                          interval=0.2)
    event = _deliver(api, "docs-cli-1")
    wait_for(lambda: api.get(f"/event/{event}").json(), lambda e: e["state"] == "completed")
    shell = DocShell(tmp_path, {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "NO_COLOR": "1",
                                "COLUMNS": "200", "TASKYARD_URL": str(api.base_url), "TASKYARD_API_KEY": KEY})
    shell.values.update({"task id": looped[0], "event id": event, "incident id": incident["id"]})
    blocks = [commands(b) for b in marked_blocks("docs/cli.md", MARKER)]
    assert len(blocks) == 13

    # Tasks and workers
    [[submit], [show, cancel], [failed, watch, watch_jq], [workers], *rest] = blocks
    summary = shell.answer(submit)
    assert (summary["state"], summary["result"], summary["worker_name"]) == ("completed", "Summarise the incident",
                                                                             "reviewer")
    assert shell.answer(show)["id"] == looped[0]
    cancelled = shell.answer(cancel)
    assert (cancelled["id"], cancelled["state"]) == (looped[0], "completed")  # it had ended: nothing to cancel
    assert shell.answer(failed) == []
    made, then = _when("ID", _submitter(api, "watched on a terminal"))
    code, table = shell.stream(watch, then=then,
                               until=lambda out: bool(made) and re.search(made[0] + r"\s+completed", out) is not None)
    assert code == 0 and "live, Ctrl-C to stop" in table and re.search(looped[0] + r"\s+completed", table)
    made, then = _when("Summarise the incident", _submitter(api, "watched through jq"))
    _code, results = shell.stream(watch_jq, then=then, until=lambda out: "watched through jq" in out)
    lines = results.splitlines()
    assert lines.count("made 5 calls") == 1 and "Summarise the incident" in lines and "{" not in results
    assert [w["name"] for w in shell.answer(workers)] == ["looper", "reviewer"]

    # Webhook events and traces
    [[failed_events, follow], [event_show], [event_replay], [rules_test], [trace], *rest] = rest
    assert shell.answer(failed_events) == []
    made, then = _when("pull_request.opened", lambda: _deliver(api, "docs-cli-2"))
    code, followed = shell.stream(follow, then=then, until=lambda out: bool(made) and made[0] in out)
    assert code == 0 and event in followed
    shown = shell.answer(event_show)
    assert (shown["id"], [m["status"] for m in shown["matches"]]) == (event, ["dispatched"])
    replayed = shell.answer(event_replay)
    assert (replayed["replay_of"], replayed["delivery_id"]) == (event, f"replay:{event}:1")
    (shell.cwd / "delivery.json").write_bytes((ROOT / "tests/fixtures/github-webhooks/pull_request.opened.json")
                                              .read_bytes())
    dry = shell.answer(rules_test)
    assert (dry["matched"], dry["rules"][0]["prompt"]) == (["reviewer.events[0]"], "Review #2")
    timeline = shell.answer(trace)
    assert timeline["trace"]["id"] == looped[0]
    assert [e["type"] for e in timeline["events"]].count("tool_call") == 5

    # Incidents, the fix and its regression replays
    [[incidents], [incident_show], [fix], [replay_wait, replay_refs]] = rest
    assert [(i["id"], i["failure_class"]) for i in shell.answer(incidents)] == [(incident["id"], "loop")]
    detail = shell.answer(incident_show)
    assert detail["id"] == incident["id"] and set(looped) <= set(detail["tasks"]) and detail["playbook"]
    run = shell.answer(fix, timeout=90)
    assert (run["status"], run["fallback"], run["branch"]) == ("completed", False, f"taskyard/fix-{incident['id']}-1")
    assert run["commit"] and "max_" in run["diff"]
    verdict = shell.answer(replay_wait, timeout=120)
    assert (verdict["status"], verdict["verdict"]) == ("completed", "fixed")
    by_refs = shell.answer(replay_refs)
    assert (by_refs["before_ref"], by_refs["after_ref"]) == ("main", run["branch"])
    assert [c["task_id"] for c in by_refs["cases"]] == [looped[0]]
    proven = wait_for(lambda: api.get(f"/api/regression-runs/{by_refs['id']}").json(),
                      lambda r: r["status"] in ("completed", "failed"), timeout=90, interval=0.2)
    assert proven["verdict"] == "fixed"
    _python_examples(shell, api)


def _submitter(api: httpx.Client, prompt: str) -> Callable[[], str]:
    def submit() -> str:
        return str(api.post("/task", json={"prompt": prompt, "worker": "reviewer"}).json()["id"])
    return submit


def _python_examples(shell: DocShell, api: httpx.Client) -> None:
    """The client examples, with the doc's URL pointed at the server; the sync one follows the feed until ^C."""
    text = (ROOT / "docs/cli.md").read_text().split("## Python client", 1)[1]
    sync_code, async_code = (code.replace(DOC_URL, str(api.base_url).rstrip("/"))
                             for code in re.findall(r"```python\n(.*?)```", text, re.S))
    (shell.cwd / "sync_example.py").write_text(sync_code)
    (shell.cwd / "async_example.py").write_text(async_code)
    made, then = _when("completed Review PR 7", _submitter(api, "fed"), every=1.0)
    _code, printed = shell.stream("python -u sync_example.py", then=then,
                                  until=lambda out: any(f"task {m} " in out for m in made))
    assert re.search(r"^completed Review PR 7$", printed, re.M), printed
    done = shell.run("python async_example.py")
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello\n", "")

