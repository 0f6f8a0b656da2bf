"""The README tour on a fresh directory: no config, embedded Redis, the built-in echo worker."""

from __future__ import annotations

from tests.e2e.conftest import Cluster, wait_final


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


def test_embedded_redis_keeps_tasks_across_a_restart(cluster: Cluster) -> None:
    api = cluster.serve()
    task = api.post("/task", json={"prompt": "remember me"}).json()
    wait_final(api, task["id"])
    assert cluster.procs[0].stop() == 0
    api = cluster.serve()
    again = api.get(f"/task/{task['id']}")
    assert again.status_code == 200 and again.json()["result"] == "remember me"
