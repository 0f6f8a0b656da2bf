"""API keys, projects and scopes over HTTP."""

from __future__ import annotations

from tests.e2e.conftest import Cluster, wait_final


def test_keys_projects_and_scopes(cluster: Cluster, redis_url: str) -> None:
    cluster.config(f"""
redis_url: {redis_url}
api_keys:
  - {{key: alpha-admin, project: alpha, scopes: [admin]}}
  - {{key: beta-submit, project: beta, scopes: [submit, read]}}
  - {{key: beta-reader, project: beta, scopes: [read]}}
  - {{key: operator, scopes: [admin]}}
""")
    api = cluster.serve()
    base = str(api.base_url)

    # Open routes need no key.
    assert api.get("/health").status_code == 200
    assert api.get("/metrics").status_code == 200
    # No key, a wrong key, an unknown path: 401 with mecha's message.
    for path in ("/tasks", "/no/such/path"):
        r = api.get(path)
        assert r.status_code == 401 and r.json() == {"error": "unauthorized"}
    assert api.get("/tasks", headers={"Authorization": "Bearer nope"}).status_code == 401

    alpha = {"Authorization": "Bearer alpha-admin"}
    beta = {"X-API-Key": "beta-submit"}
    reader = {"X-API-Key": "beta-reader"}
    task = api.post("/task", json={"prompt": "secret plan"}, headers=alpha).json()
    assert wait_final(api.__class__(base_url=base, headers=alpha), task["id"])["state"] == "completed"

    # Another project's id is simply not there.
    r = api.get(f"/task/{task['id']}", headers=beta)
    assert r.status_code == 404 and r.json() == {"error": "task not found"}
    assert api.get("/tasks", headers=beta).json() == []
    assert api.post(f"/task/{task['id']}/cancel", headers=beta).status_code == 404

    # A key without the scope: 403.
    r = api.post("/task", json={"prompt": "x"}, headers=reader)
    assert r.status_code == 403 and r.json() == {"error": "forbidden"}
    assert api.post("/workers", json={"name": "x", "handler": "a:b"}, headers=beta).status_code == 403
    # Workers serve every project: another project's admin may neither add one (it would get everyone's
    # round-robin tasks) nor remove one (its queued tasks, any project's, would fail); the default project's may.
    assert api.post("/workers", json={"name": "x", "handler": "a:b"}, headers=alpha).json() == {"error": "forbidden"}
    assert api.delete("/workers/echo", headers=alpha).json() == {"error": "forbidden"}
    assert [w["name"] for w in api.get("/workers", headers=alpha).json()] == ["echo"]
    ops = {"X-API-Key": "operator"}
    assert api.post("/workers", json={"name": "x", "handler": "a:b", "auto": False}, headers=ops).status_code == 201
    assert api.delete("/workers/x", headers=ops).json() == {"removed": "x", "failed_tasks": 0}
    assert api.get("/tasks", headers=reader).status_code == 200
