"""The README's real setup runs as written. Its two taskyard.yaml blocks are the config (the second adds a source
and a rule to the first's reviewer); the setup block's commands check it, start `serve --no-workers` and two
worker processes, and submit a task; a signed GitHub delivery makes the event the webhooks block reads; the agent
the reviewer runs appends the traces block's `echo` line to its trace, which the block's commands read back.
The test fills in only what the README leaves to the reader: the Redis URL and the port, `claude` (a stand-in
script on PATH), `agent.py`, GitHub (a stub, as `api_url`) and the saved `delivery.json`."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from config.loader import _Yaml12Loader  # how taskyard reads YAML: `on:` is a key, not a boolean
from tests.e2e.conftest import ROOT, free_port, wait_final, wait_for
from tests.e2e.doc_shell import DocShell, commands, marked_blocks
from tests.stub_github import StubGitHub

pytestmark = pytest.mark.e2e

SETUP = "<!-- run-by-test: tests/e2e/test_docs_readme.py (setup) -->"
WEBHOOKS = "<!-- run-by-test: tests/e2e/test_docs_readme.py (webhooks) -->"
TRACES = "<!-- run-by-test: tests/e2e/test_docs_readme.py (traces) -->"
KEY, SECRET, TOKEN = "k-readme", "s3cret-readme", "ghp_readme"
PAYLOAD = {"action": "opened", "number": 7,
           "pull_request": {"number": 7, "title": "Fix the flaky test", "draft": False, "labels": [],
                            "base": {"ref": "main"}, "head": {"ref": "fix-flaky", "sha": "0123456789" * 4}},
           "repository": {"full_name": "octo/app", "name": "app", "owner": {"login": "octo"}},
           "sender": {"login": "ana"}}


def _config(redis_url: str, github_url: str) -> str:
    """The README's first taskyard.yaml with the second's source and rules added, on the test's Redis."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 2, "the README's two taskyard.yaml blocks are gone"
    first, second = (yaml.load(block, Loader=_Yaml12Loader) for block in blocks)  # noqa: S506 - a SafeLoader
    added = {w["name"]: w for w in second["workers"]}
    config = {**first, "redis_url": redis_url, "sources": second["sources"],
              "workers": [{**w, **added.get(w["name"], {})} for w in first["workers"]]}
    config["sources"]["github"]["api_url"] = github_url
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture()
def shell(tmp_path: Path, redis_client: Any, redis_url: str) -> Iterator[DocShell]:
    """A reader's directory: the config, `.venv`, `agent.py`, a `claude` that runs the README's trace line."""
    github = StubGitHub(token=TOKEN)
    github.start()
    github.set_pull("octo", "app", 7, diff="diff --git a/test.py b/test.py\n", files=["test.py"])
    (tmp_path / "taskyard.yaml").write_text(_config(redis_url, github.url))
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "agent.py").write_text("import sys\nprint('agent: ' + sys.stdin.read())\n")
    [trace_line, *_] = commands(marked_blocks("README.md", TRACES)[0])
    assert trace_line.startswith("echo ") and "TASKYARD_TRACE_FILE" in trace_line
    (tmp_path / "bin").mkdir()
    claude = tmp_path / "bin" / "claude"
    claude.write_text(f"#!/usr/bin/env bash\ncat > /dev/null\n{trace_line}\necho 'looks good'\n")
    claude.chmod(0o755)
    (tmp_path / "delivery.json").write_text(json.dumps(PAYLOAD))
    port = free_port()
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin",
           "TASKYARD_KEY": KEY, "GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_TOKEN": TOKEN, "TASKYARD_PORT": str(port)}
    env.pop("TASKYARD_CONFIG", None)
    doc = DocShell(tmp_path, env)
    doc.base_url = f"http://127.0.0.1:{port}"
    yield doc
    doc.stop()
    github.stop()


def _healthy(api: httpx.Client) -> bool:
    try:
        return api.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def test_the_readme_setup_webhook_and_trace_blocks_run_as_written(shell: DocShell) -> None:
    api = httpx.Client(base_url=shell.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)

    # The setup block: check, serve, two workers, a task for whichever of them round-robin picks
    setup = commands(marked_blocks("README.md", SETUP)[0])
    assert len(setup) == 5
    checked = shell.run(setup[0])
    assert checked.returncode == 0 and checked.stdout.startswith("config ok"), (checked.stdout, checked.stderr)
    assert "2 worker(s): reviewer, summariser; 1 source(s); 1 rule(s)" in checked.stdout
    shell.start(setup[1], ready=lambda _log: _healthy(api), name="serve")
    for n, command in enumerate(setup[2:4]):
        shell.start(command, ready=lambda log: "taskyard worker: serving" in log, name=f"worker-{n}")
    submitted = shell.answer(setup[4])
    assert (submitted["state"], submitted["prompt"]) == ("pending", "Review PR 7")
    done = wait_final(api, submitted["id"])
    assert (done["state"], done["result"]) in {("completed", "looks good\n"), ("completed", "agent: Review PR 7\n")}
    assert done["worker_name"] in ("reviewer", "my-agent")

    # GitHub delivers a pull request (signed with the source's secret)
    body = json.dumps(PAYLOAD).encode()
    sent = httpx.post(f"{shell.base_url}/webhook/github", content=body, timeout=10, headers={
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "readme-1", "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()})
    assert sent.status_code == 202, sent.text
    wait_for(lambda: api.get(f"/event/{sent.json()['id']}").json(), lambda e: e["state"] == "completed", timeout=30)

    # The webhooks block
    listed, detail, dry_run = _run_webhooks_block(shell)
    assert [(e["id"], e["type"], e["state"]) for e in listed] == [(sent.json()["id"], "pull_request.opened",
                                                                   "completed")]
    assert [(m["rule"], m["status"]) for m in detail["matches"]] == [("reviewer.events[0]", "dispatched")]
    [task] = detail["tasks"]
    review = api.get(f"/task/{task['id']}").json()
    assert review["prompt"] == "Review PR #7: Fix the flaky test\ndiff --git a/test.py b/test.py\n"
    assert (review["worker_name"], review["result"]) == ("reviewer", "looks good\n")
    assert dry_run["matched"] == ["reviewer.events[0]"]
    assert dry_run["rules"][0]["prompt"].startswith("Review PR #7: Fix the flaky test\n")

    # The traces block, on the review's trace: the line `claude` appended is in it
    events, stream, created, usage = _run_traces_block(shell, task["id"])
    types = [e["type"] for e in events]
    assert types[0] == "task_started" and types[-1] == "session_end" and "llm_call" in types, types
    [call] = [e for e in events if e["type"] == "llm_call"]
    assert call["payload"] == {"model": "gpt-4o", "input_tokens": 812, "output_tokens": 95}
    assert [f"id: {e['seq']}" for e in events] == re.findall(r"^id: \d+$", stream, re.M)
    assert created["name"] == "my-run" and created["status"] == "running" and created["id"]
    [gpt4o] = [g for g in usage["groups"] if g["model"] == "gpt-4o"]
    assert (gpt4o["tokens_in"], gpt4o["tokens_out"], gpt4o["count"]) == (812, 95, 1) and gpt4o["cost_usd"] > 0


def _run_webhooks_block(shell: DocShell) -> tuple[Any, Any, Any]:
    listed_cmd, detail_cmd, dry_run_cmd = commands(marked_blocks("README.md", WEBHOOKS)[0])
    listed = shell.answer(listed_cmd)
    shell.values["id"] = listed[0]["id"]
    return listed, shell.answer(detail_cmd), shell.answer(dry_run_cmd)


def _run_traces_block(shell: DocShell, task_id: str) -> tuple[Any, str, Any, Any]:
    _echo, events_cmd, stream_cmd, create_cmd, usage_cmd = commands(marked_blocks("README.md", TRACES)[0])
    shell.values["task id"] = task_id
    events = shell.answer(events_cmd)
    _code, stream = shell.stream(stream_cmd, until=lambda out: '"session_end"' in out)
    return events, stream, shell.answer(create_cmd), shell.answer(usage_cmd)
