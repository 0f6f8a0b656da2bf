"""Trace artifacts over real HTTP against a real `taskyard serve`: streamed uploads, the size limit, and a signed
URL that a client with no key follows to the exact bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx

from engine.ids import new_id
from tests.e2e.conftest import Cluster

KEY = {"Authorization": "Bearer art-admin"}
MAX_BYTES = 65_536


def _chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = bytes((sent + i) % 251 for i in range(min(size, total - sent)))
        sent += len(piece)
        yield piece


def test_streamed_upload_and_signed_download_over_http(cluster: Cluster, redis_url: str, redis_client: Any) -> None:
    cluster.config(f"""
redis_url: {redis_url}
api_keys: [{{key: art-admin}}]
artifacts: {{max_bytes: {MAX_BYTES}}}
""")
    api = cluster.serve("--no-workers")
    trace_id = new_id()
    redis_client.hset(f"ty:trace:{trace_id}", mapping={"project": "default", "name": "e2e"})
    expected = b"".join(_chunks(40_000))

    # Given a chunked upload (no Content-Length) over a real socket
    r = api.post(f"/api/traces/{trace_id}/artifacts", params={"name": "frame.png"}, content=_chunks(40_000),
                 headers={**KEY, "Content-Type": "image/png"})
    assert r.status_code == 201, r.text
    meta = r.json()
    assert meta["size"] == len(expected) and meta["sha256"] == hashlib.sha256(expected).hexdigest()

    # When the owner asks for it, then a client holding no key follows the redirect to the exact bytes
    assert api.get(f"/artifacts/{meta['id']}").status_code == 401
    redirect = api.get(f"/artifacts/{meta['id']}", headers=KEY)
    assert redirect.status_code == 307
    with httpx.Client(base_url=str(api.base_url), timeout=10) as stranger:
        served = stranger.get(redirect.headers["location"])
        assert served.status_code == 200 and served.content == expected
        assert served.headers["content-length"] == str(len(expected))
        tampered = redirect.headers["location"].replace("expires=", "expires=1")
        assert stranger.get(tampered).status_code == 403

    # A streamed body over the limit is refused, and a multipart upload works over the wire too
    r = api.post(f"/api/traces/{trace_id}/artifacts", content=_chunks(MAX_BYTES * 3),
                 headers={**KEY, "Content-Type": "text/plain"})
    assert r.status_code == 413 and r.json() == {"error": "artifact too large"}
    r = api.post(f"/api/traces/{trace_id}/artifacts", headers=KEY,
                 files={"file": ("run.json", b"{}", "application/json")})
    assert r.status_code == 201 and r.json()["name"] == "run.json"
    listed = api.get(f"/api/traces/{trace_id}/artifacts", headers=KEY).json()
    assert [a["name"] for a in listed] == ["run.json", "frame.png"]
