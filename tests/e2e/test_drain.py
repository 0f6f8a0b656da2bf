"""Graceful drain of serve: on SIGTERM, new requests get 503 `server draining` while its in-process workers finish
the task they run; then it exits 0 with that task completed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cluster, wait_for

pytestmark = pytest.mark.e2e

KEY = {"X-API-Key": "k-drain"}
SLOW = "import sys, time\nsys.stdin.read()\ntime.sleep(1.5)\nprint('done')\n"


def test_a_draining_serve_answers_503_and_finishes_its_running_task(cluster: Cluster, redis_url: str,
                                                                    redis_client: Any, tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    cluster.config(f"""
redis_url: {redis_url}
api_key: k-drain
heartbeat_interval: 0.5s
drain_timeout: 10s
workers:
  - name: slow
    command: [{sys.executable}, {tmp_path / "slow.py"}]
""")
    api = cluster.serve(headers=KEY)
    task_id = api.post("/task", json={"prompt": "go"}).json()["id"]
    # the run has begun (its trace started; a task claimed but not yet begun is given back instead)
    wait_for(lambda: api.get(f"/api/traces/{task_id}/events"), lambda r: r.status_code == 200 and r.json(),
             timeout=10)
    serve = cluster.procs[-1]
    serve.popen.send_signal(signal.SIGTERM)
    # Then: new requests are refused with the documented answer while the task runs on
    answer = wait_for(lambda: api.post("/task", json={"prompt": "late"}), lambda r: r.status_code == 503,
                      timeout=5, interval=0.02)
    assert answer.status_code == 503 and answer.json() == {"error": "server draining"}
    assert answer.headers["retry-after"] == "1"
    health = api.get("/health")
    assert health.status_code == 503 and health.json() == {"status": "draining"}
    started = time.monotonic()
    assert serve.popen.wait(30) == 0
    assert time.monotonic() - started < 15
    assert redis_client.hget(f"ty:task:{task_id}", "state") == "completed"
    assert redis_client.hget(f"ty:task:{task_id}", "result") == "done\n"
    # nothing refused during the drain was stored
    assert redis_client.zcard("ty:p:default:tasks") == 1


def test_the_ready_line_names_the_bound_port_and_a_sigterm_right_after_it_stops_serve(
        tmp_path: Path, redis_url: str) -> None:
    # Given serve on "any free port" (port: 0), read up to its ready line
    (tmp_path / "taskyard.yaml").write_text(f"redis_url: {redis_url}\nport: 0\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--no-workers"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 30
        while "taskyard serving" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        # Then the line names the port uvicorn bound, which accepts connections at once
        found = re.search(r"url=http://[^:]+:(\d+)", line)
        assert found and int(found.group(1)) != 0, line
        assert httpx.get(f"http://127.0.0.1:{found.group(1)}/health").status_code == 200
        # When SIGTERM follows at once (while serve may still be writing its log), it drains and exits
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "Traceback" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
