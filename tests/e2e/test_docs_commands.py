"""The README's tour runs as written against a real `serve` with its defaults (the built-in echo worker): each
`curl` line, with `localhost:8080` pointed at the test's server and `<id>` replaced by the task the tour just
created, succeeds, and a line whose comment states the answer (`# 400 {"error":"prompt is required"}`) gets it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Cluster, wait_final, wait_for

pytestmark = pytest.mark.e2e

MARKER = "<!-- run-by-test: tests/e2e/test_docs_commands.py -->"


def _tour() -> list[tuple[str, str]]:
    """(command, stated answer) per curl line of the marked block."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text().split(MARKER, 1)[1], re.S)
    assert block, "the marked block is gone from README.md"
    lines = []
    for line in block.group(1).splitlines():
        if line.startswith("curl "):
            command, _, comment = line.partition("  #")
            lines.append((command.strip(), comment.strip()))
    return lines


def test_every_command_of_the_readme_tour_works(cluster: Cluster, redis_url: str) -> None:
    cluster.config(f"redis_url: {redis_url}\n")
    api = cluster.serve()
    host = str(api.base_url).rstrip("/").removeprefix("http://")
    created = ""
    tour = _tour()
    assert len(tour) >= 7
    for command, stated in tour:
        if "<id>" in command:
            assert created, "the tour reads a task before it made one"
            wait_final(api, created)
        run = command.replace("localhost:8080", host).replace("<id>", created)
        done = subprocess.run(["bash", "-o", "pipefail", "-c", run], capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, (command, done.stderr)
        output = done.stdout
        if "metrics" in command:
            assert "taskyard_tasks" in output
            continue
        answer = json.loads(output)
        if stated:
            expected = json.loads(stated.split(" ", 1)[1])
            assert answer == expected, (command, answer)
        if "-X POST" in command and isinstance(answer, dict) and answer.get("state") == "pending":
            created = answer["id"]
        if "<id>" in command:
            assert answer["state"] == "completed" and answer["result"] == "hello taskyard"


FIX_MARKER = "<!-- run-by-test: tests/e2e/test_docs_commands.py (fix loop) -->"


def _commands(marker: str) -> list[str]:
    """The marked block's commands, continuation lines joined, comments dropped."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text().split(marker, 1)[1], re.S)
    assert block, "the marked block is gone from README.md"
    commands, current = [], ""
    for line in block.group(1).splitlines():
        code = line.split("  #", 1)[0].rstrip()
        if code.endswith("\\"):
            current += code[:-1]
            continue
        if current + code:
            commands.append((current + code).strip())
        current = ""
    return commands


def test_the_readmes_fix_loop_commands_work_as_written(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    from tests.e2e.test_fix_loop import _config, _make_repo, _run_loopers

    repo = _make_repo(tmp_path)
    cluster.config(_config(redis_url, tmp_path, repo, "allowed_paths: [taskyard-agent.yaml]"))
    api = cluster.serve(headers={"X-API-Key": "k-fix"})
    _run_loopers(api, 2)
    wait_for(lambda: api.get("/api/incidents").json(), lambda i: len(i) == 1 and i[0]["task_count"] == 2,
             interval=0.2)
    host = str(api.base_url).rstrip("/").removeprefix("http://")
    env = {**os.environ, "TASKYARD_KEY": "k-fix"}
    values: dict[str, str] = {}
    answers = []
    for command in _commands(FIX_MARKER):
        run = command.replace("localhost:8080", host)
        for name, value in values.items():
            run = run.replace(f"<{name}>", value)
        assert "<" not in run, f"a placeholder the test cannot fill: {run}"
        done = subprocess.run(["bash", "-o", "pipefail", "-c", run], env=env, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, (command, done.stderr)
        answer = json.loads(done.stdout)
        answers.append(answer)
        if "incidents?status=open" in command:
            values["id"] = answer[0]["id"]
        elif "/fix-agent" in command:
            values["run id"] = answer["id"]
            wait_for(lambda: api.get(f"/api/fix-runs/{values['run id']}").json(),
                     lambda r: r["status"] == "completed", timeout=60, interval=0.2)
    assert answers[2]["commit"] and answers[2]["fallback"] is False  # the fix run, read by the README's command
    verdict = wait_for(lambda: api.get(f"/api/regression-runs/{answers[3]['id']}").json(),
                       lambda r: r["status"] == "completed", timeout=90, interval=0.2)
    assert verdict["verdict"] == "fixed"
