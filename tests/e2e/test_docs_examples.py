"""The worker guide's examples (docs/examples) run as written: docs/workers.md's block, run from a copy of the
repository's layout, starts the endpoint agent and `serve --config taskyard.yaml` and submits a task; a task for
each kind of worker then completes with its trace. The test gives only a free port for the agent (instead of
9100) and the server's Redis and port (TASKYARD_* variables)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, free_port, wait_final
from tests.e2e.doc_shell import DocShell, commands, marked_blocks

pytestmark = pytest.mark.e2e

MARKER = "<!-- run-by-test: tests/e2e/test_docs_examples.py -->"
AGENT_PORT = "9100"  # the endpoint agent's port in docs/workers.md and docs/examples/taskyard.yaml


@pytest.mark.usefixtures("redis_client")
def test_the_three_example_workers_complete_tasks_with_traces(redis_url: str, tmp_path: Path) -> None:
    # Given: the examples where a reader has them (docs/examples beside .venv), the agent on a free port
    workdir = tmp_path / "docs" / "examples"
    shutil.copytree(ROOT / "docs" / "examples", workdir)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    agent_port, port = str(free_port()), free_port()
    config = workdir / "taskyard.yaml"
    config.write_text(config.read_text().replace(f"127.0.0.1:{AGENT_PORT}", f"127.0.0.1:{agent_port}"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "TASKYARD_REDIS_URL": redis_url,
           "TASKYARD_PORT": str(port)}
    env.pop("TASKYARD_CONFIG", None)
    shell = DocShell(tmp_path, env)
    shell.base_url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=shell.base_url, timeout=10)
    try:
        # When: docs/workers.md's block runs, the agent in the background and serve until the test ends
        cd, agent, serve, submit = commands(marked_blocks("docs/workers.md", MARKER)[0])
        assert cd == "cd docs/examples" and agent.endswith(" &")
        shell.cwd = tmp_path / cd.removeprefix("cd ")
        shell.start(agent.removesuffix("&").replace(AGENT_PORT, agent_port), name="agent",
                    ready=lambda _log: _answers(f"http://127.0.0.1:{agent_port}/health"))
        shell.start(serve, name="serve", ready=lambda _log: _answers(f"{shell.base_url}/health"))
        counted = shell.answer(submit)
        assert (counted["state"], counted["worker_name"]) == ("pending", "counter")
        # Then: it and a task for each other kind of worker complete, each with its agent's own trace events
        answers = {"counter": counted["id"], **{name: api.post("/task", json={"prompt": p, "worker": name}).json()["id"]
                                                for name, p in (("shouter", "hello"), ("reverser", "abc"))}}
        results = {name: wait_final(api, task_id) for name, task_id in answers.items()}
        assert {n: (t["state"], t["result"]) for n, t in results.items()} == {
            "counter": ("completed", "3 words\n"), "shouter": ("completed", "HELLO"), "reverser": ("completed", "cba")}
        for task_id in answers.values():
            types = [e["type"] for e in api.get(f"/api/traces/{task_id}/events").json()]
            assert types[0] == "task_started" and "llm_call" in types and types[-1] == "session_end", types
    finally:
        shell.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
