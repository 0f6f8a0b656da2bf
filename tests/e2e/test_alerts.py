"""Alert webhooks over real processes: a looping agent's incident reaches a local receiver as exactly one signed
incident.created; resolved and triggered again, it comes back as incident.regressed (a second alert)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, wait_final, wait_for
from tests.e2e.test_incidents import LOOPING_AGENT
from tests.webhook_receiver import receiver

pytestmark = pytest.mark.e2e

KEY = {"X-API-Key": "k-e2e"}


def test_a_looping_agent_alerts_once_signed_and_again_when_it_regresses(cluster: Cluster, redis_url: str,
                                                                        tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(LOOPING_AGENT)
    cluster.config(f"""
redis_url: {redis_url}
api_key: k-e2e
heartbeat_interval: 0.5s
outbound: {{allow_hosts: [127.0.0.1]}}
workers:
  - name: looper
    command: [{sys.executable}, {tmp_path / "agent.py"}]
""")
    api = cluster.serve(headers=KEY)
    with receiver() as hook_receiver:
        made = api.post("/api/webhooks", json={"url": hook_receiver.url + "/alerts",
                                               "events": ["incident.created", "incident.regressed"]})
        assert made.status_code == 201, made.text
        hook_receiver.secret = made.json()["secret"]

        first = api.post("/task", json={"prompt": "go"}).json()["id"]
        assert wait_final(api, first)["state"] == "completed"
        [alert] = hook_receiver.wait(1)
        assert alert.standard_ok and alert.simple_ok, alert.headers
        assert alert.json["type"] == "incident.created" and alert.json["data"]["failure_class"] == "loop"
        incident_id = alert.json["data"]["id"]
        assert alert.json["data"]["trace_id"] == first

        assert api.patch(f"/api/incidents/{incident_id}", json={"status": "resolved"}).status_code == 200
        again = api.post("/task", json={"prompt": "go again"}).json()["id"]
        assert wait_final(api, again)["state"] == "completed"
        received = hook_receiver.wait(2)
        assert [r.json["type"] for r in received] == ["incident.created", "incident.regressed"]
        assert received[1].standard_ok and received[1].simple_ok
        assert received[1].json["data"]["id"] == incident_id and received[1].json["data"]["status"] == "regressed"
        log = wait_for(lambda: api.get(f"/api/webhooks/{made.json()['id']}/deliveries").json(),
                       lambda entries: len(entries) == 2)
        assert [e["status"] for e in log] == ["succeeded", "succeeded"]
        assert len(hook_receiver.received) == 2  # exactly one alert per occurrence worth one
