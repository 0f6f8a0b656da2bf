"""docs/api.md's commands run as written against a real `serve`: replaying a stored event, the rules dry run on a
saved delivery, and attaching a log and a picture to a trace. What the doc leaves to the reader is set as a reader
would: `$KEY`, `$EVENT` (a delivery the test signs and sends), `$TRACE` (a trace it creates), and the files."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import zlib
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Cluster, wait_for
from tests.e2e.doc_shell import DocShell, commands, marked_blocks

pytestmark = pytest.mark.e2e

MARKER = "<!-- run-by-test: tests/e2e/test_docs_api.py -->"
KEY, SECRET = "k-api-docs", "s3cret-api-docs"
PAYLOAD = {"action": "opened", "number": 3, "pull_request": {"number": 3, "title": "Add docs", "draft": False,
                                                             "base": {"ref": "main"}, "head": {"ref": "docs"}},
           "repository": {"full_name": "octo/app", "name": "app", "owner": {"login": "octo"}},
           "sender": {"login": "ana"}}


def _png() -> bytes:
    """A 1x1 PNG: signature, IHDR, one IDAT row, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0")) + \
        chunk(b"IEND", b"")


def test_the_api_guides_commands_run_as_written(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    # Given: a server with a GitHub source and a rule, one delivery it stored, a trace and the files to attach
    cluster.config(f"""
redis_url: {redis_url}
api_key: {KEY}
sources:
  github: {{secret: {SECRET}}}
workers:
  - name: reviewer
    handler: "workers.builtin:echo"
    events:
      - {{source: github, on: [pull_request.opened], prompt: "Review #{{{{.number}}}}: {{{{.title}}}}"}}
""")
    api = cluster.serve(headers={"X-API-Key": KEY})
    body = json.dumps(PAYLOAD).encode()
    sent = httpx.post(f"{api.base_url}/webhook/github", content=body, timeout=10, headers={
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "api-docs-1", "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()})
    assert sent.status_code == 202, sent.text
    event = sent.json()["id"]
    wait_for(lambda: api.get(f"/event/{event}").json(), lambda e: e["state"] == "completed")
    trace = api.post("/api/traces", json={"name": "docs"}).json()["id"]
    (tmp_path / "delivery.json").write_bytes(body)
    (tmp_path / "run.log").write_text("step 1: ok\nstep 2: ok\n")
    (tmp_path / "screen.png").write_bytes(_png())
    shell = DocShell(tmp_path, {**os.environ, "KEY": KEY, "EVENT": event, "TRACE": trace})
    shell.base_url = str(api.base_url).rstrip("/")

    # When: every marked block runs
    replay_block, dry_run_block, artifacts_block = (commands(b) for b in marked_blocks("docs/api.md", MARKER))
    [replay] = [shell.answer(c) for c in replay_block]
    [dry_run] = [shell.answer(c) for c in dry_run_block]
    log, picture = [shell.answer(c) for c in artifacts_block]

    # Then: each answer is what the guide says
    assert (replay["replay_of"], replay["delivery_id"], replay["state"]) == (event, f"replay:{event}:1", "received")
    assert replay["id"] != event and replay["type"] == "pull_request.opened"
    assert dry_run["matched"] == ["reviewer.events[0]"] and dry_run["type"] == "pull_request.opened"
    assert dry_run["rules"][0]["prompt"] == "Review #3: Add docs"
    for stored, name, kind in ((log, "run.log", "text/plain"), (picture, "screen.png", "image/png")):
        data = (tmp_path / name).read_bytes()
        assert (stored["trace_id"], stored["name"], stored["content_type"]) == (trace, name, kind)
        assert (stored["size"], stored["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    listed = api.get(f"/api/traces/{trace}/artifacts").json()
    assert sorted(a["id"] for a in listed) == sorted([log["id"], picture["id"]])
