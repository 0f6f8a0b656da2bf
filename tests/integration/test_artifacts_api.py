"""Trace artifacts through the real app on a real Redis and a real data dir: upload (raw and multipart), the
size limit and the type allowlist, projects, and the signed URL that serves the bytes without a key."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from config.loader import load_settings
from engine.ids import new_id
from engine.url_signing import signature
from tests.answers import reason
from tests.integration.conftest import app_client

pytestmark = pytest.mark.integration

ADMIN, OTHER, READER = "k-admin", "k-other", "k-reader"
MAX_BYTES = 4096
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3

CONFIG = f"""
api_keys:
  - {{key: {ADMIN}}}
  - {{key: {OTHER}, project: other}}
  - {{key: {READER}, scopes: [read]}}
data_dir: data
artifacts: {{max_bytes: {MAX_BYTES}}}
"""


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture()
def client(tmp_path: Path, redis_client: redis.Redis, redis_url: str) -> Iterator[TestClient]:
    with app_client(tmp_path, CONFIG, redis_url) as c:
        yield c


def key(k: str = ADMIN) -> dict[str, str]:
    return {"X-API-Key": k}


def make_trace(r: redis.Redis, project: str = "default") -> str:
    trace_id = new_id()
    r.hset(f"ty:trace:{trace_id}", mapping={"project": project, "name": "x"})
    return trace_id


def stored_files(data_dir: Path) -> list[Path]:
    root = data_dir / "artifacts"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def upload_raw(client: TestClient, trace_id: str, body: bytes, content_type: str = "text/plain", **params: str):
    return client.post(f"/api/traces/{trace_id}/artifacts", content=body, params=params,
                       headers={**key(), "Content-Type": content_type})


def test_raw_upload_stores_the_bytes_on_disk_and_the_metadata_in_redis(client, redis_client, data_dir) -> None:
    trace_id = make_trace(redis_client)
    body = b"line one\nline two\n"
    r = upload_raw(client, trace_id, body, "text/plain; charset=utf-8", name="../../etc/notes.txt")
    assert r.status_code == 201, r.text
    meta = r.json()
    assert meta["trace_id"] == trace_id and meta["name"] == "notes.txt"  # the path part is dropped
    assert meta["content_type"] == "text/plain" and meta["size"] == len(body)
    assert meta["sha256"] == hashlib.sha256(body).hexdigest() and meta["created_at"].endswith("Z")
    assert (data_dir / "artifacts" / meta["id"][:2] / meta["id"]).read_bytes() == body
    assert redis_client.hget(f"ty:artifact:{meta['id']}", "project") == "default"
    listed = client.get(f"/api/traces/{trace_id}/artifacts", headers=key(READER))
    assert listed.status_code == 200 and listed.json() == [meta]


def test_multipart_upload_takes_the_type_and_name_of_its_one_part(client, redis_client) -> None:
    trace_id = make_trace(redis_client)
    r = client.post(f"/api/traces/{trace_id}/artifacts", headers=key(),
                    files={"file": ("screen shot.png", PNG, "image/png")})
    assert r.status_code == 201, r.text
    meta = r.json()
    assert (meta["name"], meta["content_type"], meta["size"]) == ("screen shot.png", "image/png", len(PNG))
    location = client.get(f"/artifacts/{meta['id']}", headers=key(), follow_redirects=False).headers["location"]
    served = client.get(location)
    assert served.content == PNG


def test_a_part_without_a_content_type_is_text_plain(client, redis_client) -> None:
    trace_id = make_trace(redis_client)
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"log.txt\"\r\n\r\n"
            b"hello\r\n--b0undary--\r\n")
    r = client.post(f"/api/traces/{trace_id}/artifacts", content=body,
                    headers={**key(), "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert r.status_code == 201 and r.json()["content_type"] == "text/plain" and r.json()["size"] == 5


def test_over_the_limit_is_413_and_leaves_nothing_behind(client, redis_client, data_dir) -> None:
    trace_id = make_trace(redis_client)
    too_big = b"x" * (MAX_BYTES + 1)
    # Declared length over the limit: refused before reading.
    r = upload_raw(client, trace_id, too_big)
    assert r.status_code == 413 and r.json() == {"error": "artifact too large"}

    # No declared length (chunked): cut while streaming.
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"y" * 1024

    r = client.post(f"/api/traces/{trace_id}/artifacts", content=chunks(),
                    headers={**key(), "Content-Type": "text/plain"})
    assert r.status_code == 413 and r.json() == {"error": "artifact too large"}
    # Multipart whose part passes the limit (the body is within the multipart allowance).
    r = client.post(f"/api/traces/{trace_id}/artifacts", headers=key(),
                    files={"file": ("big.txt", too_big, "text/plain")})
    assert r.status_code == 413 and r.json() == {"error": "artifact too large"}
    # Exactly at the limit is fine.
    assert upload_raw(client, trace_id, b"z" * MAX_BYTES).status_code == 201
    assert len(stored_files(data_dir)) == 1
    assert len(redis_client.keys("ty:artifact:*")) == 1 and redis_client.zcard(f"ty:trace:{trace_id}:artifacts") == 1


def test_a_chunked_multipart_body_counts_its_preamble_and_epilogue(client, redis_client, data_dir) -> None:
    trace_id = make_trace(redis_client)
    boundary = b"b0undary"
    part = b"--" + boundary + b"\r\nContent-Disposition: form-data; name=file; filename=a.txt\r\n" \
        b"Content-Type: text/plain\r\n\r\nsmall\r\n--" + boundary + b"--\r\n"
    for body in (b"p" * 200_000 + b"\r\n" + part, part + b"e" * 200_000):  # preamble, epilogue

        def chunks(data: bytes = body) -> Iterator[bytes]:
            for i in range(0, len(data), 8192):
                yield data[i:i + 8192]

        r = client.post(f"/api/traces/{trace_id}/artifacts", content=chunks(), headers={
            **key(), "Content-Type": "multipart/form-data; boundary=" + boundary.decode()})
        assert r.status_code == 413 and r.json() == {"error": "artifact too large"}
    assert stored_files(data_dir) == [] and redis_client.zcard(f"ty:trace:{trace_id}:artifacts") == 0


def test_a_type_outside_the_allowlist_is_415(client, redis_client, data_dir) -> None:
    trace_id = make_trace(redis_client)
    for content_type, shown in (("text/html", "text/html"), ("application/octet-stream", "application/octet-stream"),
                                ("IMAGE/SVG+XML; charset=x", "image/svg+xml")):
        r = upload_raw(client, trace_id, b"<svg/>", content_type)
        assert r.status_code == 415 and r.json() == {"error": f"unsupported content type: {shown}"}
    r = client.post(f"/api/traces/{trace_id}/artifacts", content=b"x", headers=key())
    assert r.status_code == 415 and r.json() == {"error": "unsupported content type: (none)"}
    r = client.post(f"/api/traces/{trace_id}/artifacts", headers=key(),
                    files={"file": ("a.exe", b"MZ", "application/x-msdownload")})
    assert r.status_code == 415 and r.json() == {"error": "unsupported content type: application/x-msdownload"}
    assert stored_files(data_dir) == [] and redis_client.keys("ty:artifact:*") == []


def test_a_wildcard_or_empty_subtype_is_not_a_type(tmp_path: Path, redis_client, redis_url: str) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text(CONFIG.replace(f"artifacts: {{max_bytes: {MAX_BYTES}}}",
                                   f"artifacts: {{max_bytes: {MAX_BYTES}, content_types: ['image/*']}}"))
    with TestClient(app=create_app(load_settings(path, env={}), redis_url=redis_url)) as c:
        trace_id = make_trace(redis_client)
        for bad in ("image/", "image/*", "image"):
            assert upload_raw(c, trace_id, PNG, bad).status_code == 415, bad
        assert upload_raw(c, trace_id, PNG, "image/png").status_code == 201


def test_a_malformed_or_many_part_body_is_400_and_stores_nothing(client, redis_client, data_dir) -> None:
    trace_id = make_trace(redis_client)
    r = client.post(f"/api/traces/{trace_id}/artifacts", headers=key(), data={"note": "hi"},
                    files={"file": ("a.txt", b"a", "text/plain")})
    assert r.status_code == 400 and r.json()["error"] == "invalid request body" and "exactly one part" in reason(r)
    truncated = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc"
    r = client.post(f"/api/traces/{trace_id}/artifacts", content=truncated,
                    headers={**key(), "Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and r.json()["error"].startswith("invalid request body")
    r = client.post(f"/api/traces/{trace_id}/artifacts", content=b"x",
                    headers={**key(), "Content-Type": "multipart/form-data"})
    assert r.status_code == 400
    assert stored_files(data_dir) == [] and redis_client.keys("ty:artifact:*") == []


def test_an_unknown_or_foreign_trace_is_404(client, redis_client) -> None:
    theirs = make_trace(redis_client, project="other")
    for trace_id in (new_id(), "not-an-id", theirs):
        r = upload_raw(client, trace_id, b"x")
        assert r.status_code == 404 and r.json() == {"error": "trace not found"}, trace_id
        assert client.get(f"/api/traces/{trace_id}/artifacts", headers=key()).status_code == 404
    # The other project sees its own trace, and not ours.
    r = client.post(f"/api/traces/{theirs}/artifacts", content=b"theirs",
                    headers={**key(OTHER), "Content-Type": "text/plain"})
    assert r.status_code == 201
    r = client.get(f"/artifacts/{r.json()['id']}", headers=key())
    assert r.status_code == 404 and r.json() == {"error": "artifact not found"}


def test_uploading_needs_the_ingest_scope(client, redis_client) -> None:
    trace_id = make_trace(redis_client)
    r = client.post(f"/api/traces/{trace_id}/artifacts", content=b"x",
                    headers={**key(READER), "Content-Type": "text/plain"})
    assert r.status_code == 403 and r.json() == {"error": "forbidden"}


def test_the_redirect_needs_a_key_and_its_signed_url_serves_the_exact_bytes_without_one(client, redis_client) -> None:
    trace_id = make_trace(redis_client)
    body = bytes(range(256)) * 10
    meta = upload_raw(client, trace_id, body, "application/zip", name='report "v2"\u00e9.zip').json()
    assert client.get(f"/artifacts/{meta['id']}").status_code == 401
    r = client.get(f"/artifacts/{meta['id']}", headers=key(READER), follow_redirects=False)
    assert r.status_code == 307
    location = r.headers["location"]
    assert location.startswith(f"/artifacts/{meta['id']}/content?expires=") and r.json()["url"] == location
    expires = int(location.split("expires=")[1].split("&")[0])
    assert 3590 <= expires - time.time() <= 3600 and r.json()["expires_at"].endswith("Z")
    served = client.get(location)  # no key at all
    assert served.status_code == 200 and served.content == body
    assert served.headers["content-type"] == "application/zip"
    assert served.headers["content-length"] == str(len(body))
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-disposition"] == (
        "attachment; filename=\"report _v2__.zip\"; filename*=UTF-8''report%20%22v2%22%C3%A9.zip")
    followed = client.get(f"/artifacts/{meta['id']}", headers=key(), follow_redirects=True)
    assert followed.status_code == 200 and followed.content == body


def test_a_tampered_or_expired_signature_is_403(client, redis_client) -> None:
    trace_id = make_trace(redis_client)
    meta = upload_raw(client, trace_id, b"secret bytes").json()
    aid = meta["id"]
    location = client.get(f"/artifacts/{aid}", headers=key(), follow_redirects=False).headers["location"]
    expires = location.split("expires=")[1].split("&")[0]
    sig = location.split("signature=")[1]
    forged = "0" if sig[0] != "0" else "1"
    other = upload_raw(client, trace_id, b"other").json()["id"]
    refused = [
        f"/artifacts/{aid}/content?expires={expires}&signature={forged}{sig[1:]}",  # one character changed
        f"/artifacts/{aid}/content?expires={int(expires) + 3600}&signature={sig}",  # a later expiry
        f"/artifacts/{other}/content?expires={expires}&signature={sig}",  # another artifact
        f"/artifacts/{aid}/content?expires={expires}",
        f"/artifacts/{aid}/content",
        f"/artifacts/{aid}/content?expires=-1&signature={sig}",
    ]
    # Signed with the real secret (shared by every replica through Redis) but already past its expiry.
    secret = redis_client.get("ty:secret:artifacts")
    assert secret and len(secret) == 64
    past = int(time.time()) - 1
    refused.append(f"/artifacts/{aid}/content?expires={past}&signature={signature(secret, aid, past)}")
    for url in refused:
        r = client.get(url)
        assert r.status_code == 403 and r.json() == {"error": "invalid or expired signature"}, url
    future = int(time.time()) + 60
    r = client.get(f"/artifacts/{aid}/content?expires={future}&signature={signature(secret, aid, future)}")
    assert r.status_code == 200 and r.content == b"secret bytes"


def test_only_the_exact_signed_path_shape_skips_the_key(client, redis_client) -> None:
    aid = new_id()
    for path in (f"/artifacts/{aid}", f"/artifacts/{aid}/content/more", f"/artifacts/{aid.upper()}/content",
                 f"/artifacts/{aid}x/content", "/artifacts/content", f"/api/traces/{aid}/artifacts"):
        r = client.get(path)
        assert r.status_code == 401 and r.json() == {"error": "unauthorized"}, path
    assert client.get(f"/artifacts/{aid}/content").status_code == 403  # through the gate, refused by the handler


def test_listing_is_newest_first_and_pages_with_a_cursor(client, redis_client) -> None:
    trace_id = make_trace(redis_client)
    ids = [upload_raw(client, trace_id, f"n{i}".encode(), name=f"{i}.txt").json()["id"] for i in range(3)]
    first = client.get(f"/api/traces/{trace_id}/artifacts", params={"limit": "2"}, headers=key())
    assert [a["id"] for a in first.json()] == ids[:0:-1]
    second = client.get(f"/api/traces/{trace_id}/artifacts",
                        params={"limit": "2", "cursor": first.headers["x-next-cursor"]}, headers=key())
    assert [a["id"] for a in second.json()] == ids[:1] and "x-next-cursor" not in second.headers
