"""Graceful drain of ``taskyard serve``: on SIGTERM/SIGINT, new requests get 503 ``{"error": "server draining"}``
(with ``Retry-After``) while the in-process workers finish or requeue what they run (``drain_timeout``); only then
does uvicorn close its socket and finish the requests in flight. A load balancer sees the 503s (and ``/health``
answering ``draining``) and moves traffic to another replica; a client can tell "draining, go elsewhere" from
"down". A second signal stops at once.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

__all__ = ["DrainGate", "DrainingServer"]

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # seconds a client is told to wait before trying (another replica) again
NO_WORKERS_GRACE_S = 1.0  # seconds a serve without in-process workers answers 503 before it closes its socket
_DRAINING = json.dumps({"error": "server draining"}).encode()
_HEALTH = json.dumps({"status": "draining"}).encode()


class DrainGate:
    """The outermost ASGI layer: passes everything through until :meth:`start` is called, then answers every
    HTTP request 503 (``/health`` with ``{"status": "draining"}``); lifespan events always pass."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.draining = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.draining.is_set():
            await self.app(scope, receive, send)
            return
        body = _HEALTH if scope.get("path") == "/health" else _DRAINING
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose first exit signal drains first: the gate turns on, ``drain`` runs in a thread
    (the in-process workers' stop), and then uvicorn's own graceful shutdown starts."""

    def __init__(self, config: uvicorn.Config, gate: DrainGate, drain: Callable[[], None] | None,
                 on_started: Callable[[int], None] | None = None) -> None:
        super().__init__(config)
        self.gate = gate
        self.drain = drain
        self.on_started = on_started
        self._draining = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, then ``on_started(port)`` once the port accepts connections (a process supervisor
        or a script waiting for the ready line can then connect at once), with the port bound (``port: 0`` binds
        a free one)."""
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            bound = [sock.getsockname() for server in self.servers for sock in (server.sockets or ())]
            self.on_started(bound[0][1] if bound else self.config.port)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or not self.started:  # a second signal, or not serving yet: stop now
            super().handle_exit(sig, frame)
            self.force_exit = self.force_exit or self._draining
            return
        self._draining = True
        self.gate.draining.set()
        # Nothing is written from the signal handler itself: a signal that lands while the main thread is
        # writing a log line to stderr would make a write here raise (a reentrant call on the buffered stream)
        # and the drain would never start; the thread logs.
        threading.Thread(target=self._drain_then_exit, args=(sig, frame), name="drain", daemon=True).start()

    def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        try:
            logger.info("draining: new requests get 503 until running tasks finish")
            if self.drain is not None:
                self.drain()
            else:
                threading.Event().wait(NO_WORKERS_GRACE_S)
        except Exception:  # the drain must never keep serve from stopping
            logger.exception("drain failed; stopping anyway")
        finally:
            super().handle_exit(sig, frame)
