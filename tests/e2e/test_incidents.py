"""The reliability loop over real processes: a worker whose agent loops on a tool produces a trace, the engine
analyses it when it ends, the loop becomes one incident; resolved, the same failure again makes it regressed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, wait_final, wait_for

pytestmark = pytest.mark.e2e

KEY = {"X-API-Key": "k-e2e"}
LOOPING_AGENT = """
import json, os, sys
sys.stdin.read()
with open(os.environ["TASKYARD_TRACE_FILE"], "a") as f:
    for _ in range(4):  # the same call, again and again
        f.write(json.dumps({"type": "tool_call", "payload": {"tool": "search", "args": {"q": "why"}}}) + "\\n")
print("gave up")
"""


def test_a_looping_agent_becomes_one_incident_that_regresses(cluster: Cluster, redis_url: str,
                                                             tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(LOOPING_AGENT)
    cluster.config(f"""
redis_url: {redis_url}
api_key: k-e2e
heartbeat_interval: 0.5s
workers:
  - name: looper
    command: [{sys.executable}, {tmp_path / "agent.py"}]
""")
    api = cluster.serve(headers=KEY)
    first = api.post("/task", json={"prompt": "go"}).json()["id"]
    assert wait_final(api, first)["state"] == "completed"
    analysis = wait_for(lambda: api.get(f"/api/traces/{first}/analysis").json(),
                        lambda a: a.get("scope") == "full")
    assert [d["failure_class"] for d in analysis["detections"]] == ["loop"], analysis
    incidents = wait_for(lambda: api.get("/api/incidents").json(), lambda i: len(i) == 1)
    assert len(incidents) == 1 and incidents[0]["failure_class"] == "loop" and incidents[0]["status"] == "open"
    incident_id = incidents[0]["id"]
    detail = api.get(f"/api/incidents/{incident_id}").json()
    assert detail["playbook"] and first in str(detail)

    assert api.patch(f"/api/incidents/{incident_id}", json={"status": "resolved"}).status_code == 200
    again = api.post("/task", json={"prompt": "go again"}).json()["id"]
    assert wait_final(api, again)["state"] == "completed"
    back = wait_for(lambda: api.get(f"/api/incidents/{incident_id}").json(), lambda i: i["status"] == "regressed")
    assert back["status"] == "regressed" and back["count"] == 2
    assert len(api.get("/api/incidents").json()) == 1  # the same failure: the same incident
