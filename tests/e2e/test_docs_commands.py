"""The README's tour runs as written against a real `serve` with its defaults (the built-in echo worker): each
`curl` line, with `localhost:8080` pointed at the test's server and `<id>` replaced by the task the tour just
created, succeeds, and a line whose comment states the answer (`# 400 {"error":"prompt is required"}`) gets it."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.e2e.conftest import ROOT, Cluster, wait_final

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
