"""The README's tour runs as written against `./scripts/run` as written (its defaults: the built-in echo worker;
the test's Redis, port and data directory given as TASKYARD_* variables): each `curl` line, with `localhost:8080`
pointed at that server and `<id>` replaced by the task the tour just created, succeeds, and a line whose comment
states the answer (`# 400 {"error":"prompt is required"}`) gets it. The fix loop's block runs the same way."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, Cluster, free_port, wait_final, wait_for
from tests.e2e.doc_shell import DocShell, commands, marked_blocks

pytestmark = pytest.mark.e2e

MARKER = "<!-- run-by-test: tests/e2e/test_docs_commands.py -->"
RUN_MARKER = "<!-- run-by-test: tests/e2e/test_docs_commands.py (the tour's server) -->"


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


def _scripts_run(shell: DocShell, port: int) -> httpx.Client:
    """The README's `./scripts/run` block, started from the repository as a reader would."""
    [command] = commands(marked_blocks("README.md", RUN_MARKER)[0])
    assert command == "./scripts/run"
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    shell.start(command, ready=lambda _log: _health(api), name="scripts-run")
    return api


def _health(api: httpx.Client) -> bool:
    try:
        return api.get("/health").json()["workers_online"] == 1
    except httpx.TransportError:
        return False


@pytest.mark.usefixtures("redis_client")
def test_every_command_of_the_readme_tour_works(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TASKYARD_REDIS_URL": redis_url, "TASKYARD_PORT": str(port),
           "TASKYARD_DATA_DIR": str(tmp_path / "data")}
    env.pop("TASKYARD_CONFIG", None)
    shell = DocShell(ROOT, env, logs=tmp_path)
    try:
        _tour_against(_scripts_run(shell, port))
    finally:
        shell.stop()


def _tour_against(api: httpx.Client) -> None:
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
    for command in commands(marked_blocks("README.md", FIX_MARKER)[0]):
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
