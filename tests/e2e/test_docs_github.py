"""docs/github.md's "try it without GitHub" block runs as written: the signed delivery it sends is accepted and
becomes a task for the configured rule, which the "follow it" block's commands then read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Cluster, wait_for
from tests.e2e.doc_shell import DocShell, commands, marked_blocks

pytestmark = pytest.mark.e2e

MARKER = "<!-- run-by-test: tests/e2e/test_docs_github.py -->"
FOLLOW = "<!-- run-by-test: tests/e2e/test_docs_github.py (follow it) -->"


def _block() -> str:
    text = (ROOT / "docs" / "github.md").read_text()
    after = text.split(MARKER, 1)[1]
    match = re.search(r"```sh\n(.*?)```", after, re.S)
    assert match, "the marked block is gone from docs/github.md"
    return match.group(1)


def test_the_guides_signed_delivery_is_accepted_and_matched(cluster: Cluster, redis_url: str,
                                                             tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text("import sys\nprint('reviewed: ' + sys.stdin.read()[:40])\n")
    cluster.config(f"""
redis_url: {redis_url}
api_key: k-docs
sources:
  github: {{secret: s3cret}}
workers:
  - name: reviewer
    command: [{sys.executable}, {tmp_path / "agent.py"}]
    events:
      - source: github
        on: [pull_request.opened]
        filter: {{base_branch: main, pull_request.draft: false}}
        prompt: "Review PR #{{{{.number}}}} in {{{{.repo}}}}: {{{{.title}}}}"
""")
    api = cluster.serve(headers={"Authorization": "Bearer k-docs"})
    env = {**os.environ, "TASKYARD_URL": str(api.base_url).rstrip("/"), "GITHUB_WEBHOOK_SECRET": "s3cret",
           "TASKYARD_KEY": "k-docs"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", _block()], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert '"state":"received"' in done.stdout.replace(" ", "") and "pull_request.opened" in done.stdout
    event = wait_for(lambda: api.get("/events?limit=1").json()[0], lambda e: e["state"] == "completed", timeout=30)
    detail = api.get(f"/event/{event['id']}").json()
    [task_id] = [t["id"] if isinstance(t, dict) else t for t in detail["tasks"]]
    task = api.get(f"/task/{task_id}").json()
    assert task["prompt"] == "Review PR #7 in octo/app: Fix the flaky test" and task["state"] == "completed"

    # The "follow it" block: the newest event, then the event with its rules, tasks and history
    shell = DocShell(tmp_path, env)
    listed_cmd, detail_cmd = commands(marked_blocks("docs/github.md", FOLLOW)[0])
    [listed] = shell.answer(listed_cmd)
    assert (listed["id"], listed["type"], listed["state"]) == (event["id"], "pull_request.opened", "completed")
    shell.values["event id"] = listed["id"]
    followed = shell.answer(detail_cmd)
    assert [(m["rule"], m["status"], m["task_id"]) for m in followed["matches"]] == [
        ("reviewer.events[0]", "dispatched", task_id)]
    assert [h["state"] for h in followed["history"]][0] == "received" and followed["state"] == "completed"
