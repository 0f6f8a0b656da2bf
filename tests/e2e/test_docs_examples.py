"""The worker guide's examples (docs/examples) run as written: serve with docs/examples/taskyard.yaml, the
endpoint agent on its port, and a task for each kind of worker completes with its trace."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, Cluster, free_port, wait_final, wait_for

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "docs" / "examples"


def test_the_three_example_workers_complete_tasks_with_traces(cluster: Cluster, redis_url: str,
                                                               tmp_path: Path) -> None:
    # Given: the examples copied as a user would have them, the endpoint agent on a free port
    workdir = tmp_path / "examples"
    shutil.copytree(EXAMPLES, workdir)
    port = free_port()
    config = (workdir / "taskyard.yaml").read_text().replace("127.0.0.1:9100", f"127.0.0.1:{port}")
    (workdir / "taskyard.yaml").write_text(f"redis_url: {redis_url}\n" + config)
    agent = subprocess.Popen([sys.executable, "endpoint_agent.py", str(port)], cwd=workdir)
    try:
        wait_for(lambda: _health(port), bool, timeout=10)
        api = cluster.serve("--config", str(workdir / "taskyard.yaml"), cwd=workdir)
        # When: one task per worker
        answers = {name: api.post("/task", json={"prompt": prompt, "worker": name}).json()["id"]
                   for name, prompt in (("counter", "three small words"), ("shouter", "hello"),
                                        ("reverser", "abc"))}
        # Then: each completes with its result, and its trace holds the agent's own events
        results = {name: wait_final(api, task_id) for name, task_id in answers.items()}
        assert {n: (t["state"], t["result"]) for n, t in results.items()} == {
            "counter": ("completed", "3 words\n"), "shouter": ("completed", "HELLO"), "reverser": ("completed", "cba")}
        for task_id in answers.values():
            types = [e["type"] for e in api.get(f"/api/traces/{task_id}/events").json()]
            assert types[0] == "task_started" and "llm_call" in types and types[-1] == "session_end", types
    finally:
        agent.terminate()
        agent.wait(10)


def _health(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
