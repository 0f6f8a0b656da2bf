"""The README tour on a fresh directory: no config, embedded Redis, the built-in echo worker."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Cluster, wait_final, wait_for
from tests.procfs import process_alive


def test_readme_tour_with_embedded_redis_and_no_config(cluster: Cluster) -> None:
    api = cluster.serve()
    health = api.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"

    created = api.post("/task", json={"prompt": "hello taskyard"})
    assert created.status_code == 202
    task = created.json()
    assert task["state"] == "pending" and task["worker_name"] == "echo" and len(task["id"]) == 32

    done = wait_final(api, task["id"])
    assert done["state"] == "completed" and done["result"] == "hello taskyard"

    listed = api.get("/tasks", params={"state": "completed"}).json()
    assert [t["id"] for t in listed] == [task["id"]]
    (worker,) = api.get("/workers").json()
    assert worker["name"] == "echo" and worker["state"] == "online" and worker["processes"] == 1
    assert (cluster.tmp / ".taskyard" / "redis.db").exists() or (cluster.tmp / ".taskyard").is_dir()

    metrics = api.get("/metrics").text
    assert "taskyard_tasks_completed_total 1.0" in metrics
    assert 'taskyard_queue_depth{worker="echo"} 0.0' in metrics

    assert api.get("/task/" + "0" * 32).json() == {"error": "task not found"}
    assert api.get("/nowhere").status_code == 404
    assert api.delete("/tasks").json() == {"error": "method not allowed"}
    assert api.post("/task", content=b"{not json").json() == {"error": "invalid request body"}


def test_embedded_redis_keeps_tasks_across_a_restart_and_stops_with_serve(cluster: Cluster) -> None:
    api = cluster.serve()
    task = api.post("/task", json={"prompt": "remember me"}).json()
    wait_final(api, task["id"])
    settings = json.loads((cluster.tmp / ".taskyard" / "redis.db.settings").read_text())
    server_pid = int(Path(settings["pidfile"]).read_text())
    assert process_alive(server_pid)

    assert cluster.procs[0].stop() == 0

    assert wait_for(lambda: process_alive(server_pid), lambda alive: not alive, timeout=10) is False
    api = cluster.serve()
    again = api.get(f"/task/{task['id']}")
    assert again.status_code == 200 and again.json()["result"] == "remember me"


def test_config_check_names_file_key_and_reason(cluster: Cluster) -> None:
    import subprocess
    import sys

    path = cluster.config("workers:\n  - {name: bad, endpoint: 'ftp://x', colour: blue}\n")
    run = subprocess.run([sys.executable, "-m", "api.cli", "config", "check", "--config", str(path)],
                         capture_output=True, text=True, env=cluster.env, cwd=cluster.tmp)
    assert run.returncode == 2
    assert f"{path}: workers[0] (bad).endpoint: must be an http:// or https:// URL" in run.stderr
    assert f"{path}: workers[0] (bad).colour: unknown key" in run.stderr
    path.write_text("workers:\n  - {name: good, command: [cat]}\n")
    run = subprocess.run([sys.executable, "-m", "api.cli", "config", "check"], capture_output=True, text=True,
                         env=cluster.env, cwd=cluster.tmp)
    assert run.returncode == 0 and "config ok: taskyard.yaml: 1 worker(s): good" in run.stdout
