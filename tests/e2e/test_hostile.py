"""Hostile and odd requests against a real serve: each gets a JSON 4xx and stores nothing."""

from __future__ import annotations

from tests.answers import reason
from tests.e2e.conftest import Cluster


def test_hostile_inputs_are_refused_and_nothing_is_stored(cluster: Cluster, redis_url: str) -> None:
    cluster.config(f"redis_url: {redis_url}\napi_key: k3y\n")
    api = cluster.serve(headers={"X-API-Key": "k3y"})

    def refused(response, status: int = 400) -> str:  # type: ignore[no-untyped-def]
        assert response.status_code == status, response.text
        return reason(response)

    # Text Redis cannot store, written as JSON escapes, anywhere in the body
    assert "UTF-8" in refused(api.post("/task", content=b'{"prompt": "x", "context": {"a": "\\ud800"}}'))
    assert "UTF-8" in refused(api.post("/task", content=b'{"prompt": "x \xed\xa0\x80"}'))  # one, UTF-8 encoded
    assert "UTF-8" in refused(api.post("/workers", content=b'{"name": "w", "command": ["x"], "cwd": "\\ud800"}'))
    # Nesting deep enough to break a recursive parser
    assert refused(api.post("/task", content=b"[" * 100_000 + b"]" * 100_000)).startswith("invalid request body")
    # Odd query values
    assert refused(api.get("/tasks", params={"cursor": "\u00b2"})) == "invalid cursor"
    assert refused(api.get("/tasks", params={"cursor": "9" * 5000})) == "invalid cursor"
    assert refused(api.get("/tasks", params={"limit": "1_0"})) == "invalid limit: must be an integer"
    assert refused(api.get("/tasks", params={"limit": "\u0663"})) == "invalid limit: must be an integer"
    assert refused(api.post("/task", json={"prompt": "x", "timeout": "0.0001ms"})).startswith("invalid request")
    # Nothing of the above was stored
    assert api.get("/tasks").json() == []
    assert [w["name"] for w in api.get("/workers").json()] == ["echo"]

    # Probes and keys
    head = api.head("/health", headers={})
    assert head.status_code == 200 and head.content == b""
    assert api.get("/health/", headers={}).status_code == 200
    both = api.get("/tasks", headers={"Authorization": "Bearer wrong", "X-API-Key": "k3y"})
    assert both.status_code == 200
    assert api.get("/tasks", headers={"X-API-Key": "", "Authorization": "Bearer"}).status_code == 401
