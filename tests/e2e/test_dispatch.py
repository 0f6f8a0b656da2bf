"""Dispatch across real worker processes: round-robin, bounds, no workers, timeouts, a SIGKILLed worker."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from tests.answers import reason
from tests.e2e.conftest import Cluster, wait_final, wait_for
from tests.procfs import process_alive


def external(cluster: Cluster, redis_url: str, workers: str) -> None:
    cluster.config(f"redis_url: {redis_url}\nheartbeat_interval: 1s\nworkers:\n{workers}")


def test_round_robin_over_two_worker_processes(cluster: Cluster, redis_url: str) -> None:
    external(cluster, redis_url, """
  - {name: alpha, command: ["sh", "-c", "echo alpha"]}
  - {name: beta, command: ["sh", "-c", "echo beta"]}
""")
    api = cluster.serve("--no-workers")
    cluster.worker("alpha")
    cluster.worker("beta")
    ids = [api.post("/task", json={"prompt": str(i)}).json()["id"] for i in range(10)]
    results = [wait_final(api, i)["result"].strip() for i in ids]
    assert results == ["alpha", "beta"] * 5
    workers = {w["name"]: w for w in api.get("/workers").json()}
    assert workers["alpha"]["processes"] == 1 and workers["beta"]["processes"] == 1
    assert workers["alpha"]["source"] == "config"


def test_bound_holds_exactly_under_concurrent_http_submits(cluster: Cluster, redis_url: str) -> None:
    external(cluster, redis_url, "  - {name: slow, command: [sleep, '30'], max_queue_depth: 20}\ndrain_timeout: 1s\n")
    api = cluster.serve("--no-workers")
    cluster.worker("slow")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(api.base_url), timeout=30,
                                     limits=httpx.Limits(max_connections=50)) as client:
            return await asyncio.gather(*(client.post("/task", json={"prompt": str(i)}) for i in range(120)))

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 20 and codes.count(429) == 100
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"] == "task queue full" and refused.headers["Retry-After"] == "1"
    assert len(api.get("/tasks", params={"limit": 500}).json()) == 20
    health = api.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "degraded"  # 20/20 is over 90 %


def test_no_online_workers_is_503_and_nothing_is_stored(cluster: Cluster, redis_url: str) -> None:
    external(cluster, redis_url, "  - {name: lonely, handler: 'workers.builtin:echo'}\n")
    api = cluster.serve("--no-workers")
    refused = api.post("/task", json={"prompt": "anyone?"})
    assert refused.status_code == 503 and refused.json()["error"] == "no online workers"
    assert api.get("/tasks").json() == []
    # A named offline worker still takes the task: it waits in its queue and runs when a process comes.
    queued = api.post("/task", json={"prompt": "later", "worker": "lonely"})
    assert queued.status_code == 202
    cluster.worker("lonely")
    assert wait_final(api, queued.json()["id"])["result"] == "later"


def test_command_timeout_kills_the_process_tree(cluster: Cluster, redis_url: str) -> None:
    external(cluster, redis_url, "  - {name: placeholder, handler: 'workers.builtin:echo'}\n")
    api = cluster.serve("--no-workers")
    pidfile = cluster.tmp / "grandchild.pid"
    cluster.worker("--name", "sleepy", "--command", f"sh -c 'sleep 120 & echo $! > {pidfile}; wait'")
    task = api.post("/task", json={"prompt": "x", "worker": "sleepy", "timeout": "1s"}).json()
    done = wait_final(api, task["id"])
    assert done["state"] == "failed" and done["error"] == "timeout after 1s"
    pid = int(pidfile.read_text())
    assert wait_for(lambda: process_alive(pid), lambda alive: not alive, timeout=5) is False



def test_sigkilled_worker_task_completes_after_redelivery_within_30s(cluster: Cluster, redis_url: str) -> None:
    # Default liveness settings (5 s heartbeats, offline after 3 missed): the acceptance bound is 30 s.
    cluster.config(f"redis_url: {redis_url}\nworkers:\n"
                   f"  - {{name: fragile, command: ['sh', '-c', 'if [ -e {cluster.tmp}/once ]; then echo survived;"
                   f" else touch {cluster.tmp}/once; sleep 300; fi']}}\n")
    api = cluster.serve("--no-workers")
    victim = cluster.worker("fragile")
    task = api.post("/task", json={"prompt": "x"}).json()
    assert wait_for(lambda: (cluster.tmp / "once").exists(), bool)  # the command really started

    victim.popen.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    cluster.worker("fragile")

    done = wait_final(api, task["id"], timeout=45)
    elapsed = time.monotonic() - killed_at
    assert done["state"] == "completed" and done["result"] == "survived\n"
    assert done["attempts"] == 2
    assert elapsed < 30, f"redelivery took {elapsed:.1f}s"


def test_handler_from_the_working_directory_and_worker_crud(cluster: Cluster, redis_url: str) -> None:
    external(cluster, redis_url, "  - {name: placeholder, handler: 'workers.builtin:echo', auto: false}\n")
    (cluster.tmp / "my_agent.py").write_text("def run(ctx):\n    return ctx.prompt[::-1]\n")
    api = cluster.serve("--no-workers")
    cluster.worker("--name", "reverser", "--handler", "my_agent:run")
    done = wait_final(api, api.post("/task", json={"prompt": "stressed"}).json()["id"])
    assert done["result"] == "desserts" and done["worker_name"] == "reverser"

    created = api.post("/workers", json={"name": "remote", "endpoint": "http://127.0.0.1:9", "pools": ["p"]})
    assert created.status_code == 201 and created.json()["state"] == "offline"
    assert api.post("/workers", json={"name": "remote", "handler": "a:b"}).status_code == 409
    bad = api.post("/workers", json={"name": "x", "command": ["a"], "handler": "a:b"})
    assert bad.status_code == 400 and "exactly one of command, endpoint or handler" in reason(bad)
    queued = api.post("/task", json={"prompt": "wait", "worker": "remote"}).json()
    removed = api.delete("/workers/remote")
    assert removed.json() == {"removed": "remote", "failed_tasks": 1}
    assert api.get(f"/task/{queued['id']}").json()["error"] == "worker removed"
    assert api.delete("/workers/remote").json() == {"error": "worker not found"}
    assert [w["name"] for w in api.get("/workers").json()] == ["placeholder", "reverser"]
