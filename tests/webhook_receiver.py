"""A real HTTP receiver for alert webhooks on 127.0.0.1 that verifies both signatures the way a subscriber
would (written from the Standard Webhooks spec, not with Taskyard's signing code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_S = 300  # seconds a webhook-timestamp may be off before the receiver calls it a replay


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    standard_ok: bool  # webhook-signature verified, timestamp fresh
    simple_ok: bool  # X-Taskyard-Signature verified

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    secret: str = ""  # set after the subscription is made (its secret is answered then)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (status, headers) per request
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def key(self) -> bytes:
        if self.secret.startswith("whsec_"):
            return base64.b64decode(self.secret[len("whsec_"):])
        return self.secret.encode()

    def verify(self, headers: dict[str, str], body: bytes) -> tuple[bool, bool]:
        key = self.key()
        msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "0")
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
        given = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if s.startswith("v1,")]
        fresh = abs(time.time() - int(stamp)) < TOLERANCE_S
        standard = fresh and any(hmac.compare_digest(expected.decode(), g) for g in given)
        simple = hmac.compare_digest(headers.get("x-taskyard-signature", ""),
                                     "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest())
        return standard, simple

    def wait(self, count: int, timeout: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)


@contextmanager
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            me = box["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with me._lock:
                status, extra = me.script.pop(0) if me.script else (200, {})
                me.received.append(Received(self.path, headers, body, *me.verify(headers, body)))
            answer = b'{"ok": true}' if status < 300 else b'{"error": "nope"}'
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box["r"]
    finally:
        server.shutdown()
        server.server_close()
