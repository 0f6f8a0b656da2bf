"""Our own Redis connections for the hot paths: commands packed here, replies parsed by hiredis.

redis-py's asyncio pipeline costs about 70-90 us of client CPU per command (a pooled connection borrowed and
probed, a command object and an awaited read per reply); on the API's two shared cores that was the largest
single cost of a ``POST /task``. :class:`RespPipe` keeps one connection, writes each batch of packed commands
in one call and matches replies to callers in order from the transport's data callback (hiredis parses RESP in
C), about 15 us a command. Several batches may be in flight at once on the one connection: Redis answers in
the order it reads, and it runs one command at a time whatever the connection count.

:class:`RespSocket` is the blocking twin for one thread (the engine's jobs, the worker runtime): one
``sendall`` and reads until every reply is in: about 30 us of client CPU a call against 50 for a redis-py
single-connection client (the pooled one probes each borrowed connection too).

Failure handling (``RespPipe``): a lost connection fails every waiting call with ``ConnectionError`` and the
next call opens a new one; a reply that takes longer than ``timeout_s`` closes the connection the same way (the
order of replies is unknown after a timeout, so nothing on that connection can be trusted). Redis error replies
come back as ``redis.exceptions.ResponseError`` (``NoScriptError`` for NOSCRIPT) values, not raised, one per
command.
"""

from __future__ import annotations

import asyncio
import collections
import select
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis.connection
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["Endpoint", "NotUTF8", "PackError", "RespPipe", "RespSocket", "pack_command"]

WATCHDOG_INTERVAL_S = 0.5  # seconds between checks for a reply that is overdue
READ_CHUNK_BYTES = 65536  # bytes asked of the socket per read
_TLS = (SSLConnection, redis.connection.SSLConnection)
_UNIX = (UnixDomainSocketConnection, redis.connection.UnixDomainSocketConnection)


class PackError(TypeError):
    """A command argument Redis cannot carry (not str, bytes, int or float; or a str that is not UTF-8)."""


class NotUTF8(PackError):
    """A str argument with a lone surrogate: it has no UTF-8 form."""


def pack_command(args: Sequence[Any]) -> bytes:
    """One command in RESP: an array of bulk strings. str is sent as UTF-8, int and float as their decimal text
    (what redis-py sends); anything else (None, bool, containers) is refused rather than guessed at."""
    out = [b"*%d\r\n" % len(args)]
    append = out.append
    for arg in args:
        kind = type(arg)  # exact types first: this runs for every argument of every command
        if kind is str:
            try:
                data = arg.encode()
            except UnicodeEncodeError as exc:
                raise NotUTF8("text is not valid UTF-8") from exc
        elif kind is int:
            data = b"%d" % arg
        else:
            data = _other(arg)
        append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _other(arg: Any) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, float):
        return repr(arg).encode()
    if isinstance(arg, str):  # a str subclass (an enum member)
        try:
            return str.encode(arg)
        except UnicodeEncodeError as exc:
            raise NotUTF8("text is not valid UTF-8") from exc
    if isinstance(arg, int) and not isinstance(arg, bool):
        return b"%d" % arg
    raise PackError(f"invalid Redis argument of type {type(arg).__name__}")


def _reply_error(message: str) -> ResponseError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


def _next_reply(reader: hiredis.Reader) -> Any:
    """The next whole reply buffered in ``reader`` (an error reply as a ``ResponseError`` value), or False when
    more bytes are needed. A stream hiredis cannot read raises ``ConnectionError``."""
    try:
        reply = reader.gets()
    except UnicodeDecodeError:  # the reply was read whole; only its text is bad
        return ResponseError("reply is not valid UTF-8")
    except hiredis.ProtocolError as exc:
        raise ConnectionError(f"unreadable reply from Redis: {exc}") from exc
    return _reply_error(str(reply)) if isinstance(reply, hiredis.ReplyError) else reply


def _check_handshake(answers: list[Any]) -> None:
    """A refused handshake (bad password, no such database) as an error naming Redis's code, not its text."""
    for answer in answers:
        if isinstance(answer, ResponseError):
            raise ResponseError(f"Redis refused the connection: {str(answer).split(' ', 1)[0]}")


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: a TCP host and port or a unix socket path, the database and credentials."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    protocol: int = 3
    connect_timeout_s: float = 5.0

    @classmethod
    def of_pool(cls, pool: Any) -> Endpoint | None:
        """The endpoint of a redis-py pool's connections (asyncio or blocking); None for TLS (``rediss://``),
        which stays on redis-py's own connections with their full TLS options."""
        if issubclass(pool.connection_class, _TLS):
            return None
        kw = pool.connection_kwargs
        path = kw.get("path") if issubclass(pool.connection_class, _UNIX) else None
        # The protocol redis-py's own connections speak (a connection object connects only when asked), so
        # replies have the shapes its response callbacks expect: RESP3 by default since redis-py 8.
        protocol = int(getattr(pool.connection_class(**kw), "protocol", None) or 2)
        return cls(host=kw.get("host") or "127.0.0.1", port=int(kw.get("port") or 6379), path=path,
                   db=int(kw.get("db") or 0), username=kw.get("username"), password=kw.get("password"),
                   protocol=protocol, connect_timeout_s=float(kw.get("socket_connect_timeout") or 5.0))

    def handshake(self) -> list[bytes]:
        """The commands that make a new connection ready: HELLO (with the credentials) for RESP3, or AUTH for
        RESP2 when a password is set; then SELECT the database."""
        commands = []
        if self.protocol == 3:
            hello: tuple[Any, ...] = ("HELLO", 3)
            if self.password is not None:
                hello += ("AUTH", self.username or "default", self.password)
            commands.append(pack_command(hello))
        elif self.password is not None:
            auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            commands.append(pack_command(auth))
        if self.db:
            commands.append(pack_command(("SELECT", self.db)))
        return commands


class _Protocol(asyncio.Protocol):
    """The connection's reply reader: every parsed reply settles the oldest waiting future."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="strict")
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = _next_reply(self.reader)
            except ConnectionError as exc:
                self.abort(exc)
                return
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.abort(ConnectionError("unexpected reply from Redis"))
                return
            future, _ = waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"Redis connection lost: {exc}" if exc else "Redis closed the connection"))

    def abort(self, error: Exception) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        self.closed = True
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class RespPipe:
    """Pipelined commands on one lazily opened connection. ``call`` sends packed commands in one write and
    returns one future per command, in order; an error reply is the future's value, a connection failure its
    exception. Use from one event loop."""

    def __init__(self, endpoint: Endpoint, *, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def call(self, packed: Iterable[bytes]) -> list[asyncio.Future[Any]]:
        """Send already packed commands (see :func:`pack_command`); one future for each, in order."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        loop = asyncio.get_running_loop()
        sent_at = time.monotonic()
        futures = []
        chunks = []
        for command in packed:
            future = loop.create_future()
            protocol.waiting.append((future, sent_at))
            futures.append(future)
            chunks.append(command)
        assert protocol.transport is not None
        protocol.transport.write(b"".join(chunks))
        return futures

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol  # another caller connected while this one waited
            loop = asyncio.get_running_loop()
            ep = self.endpoint
            opening = (loop.create_unix_connection(_Protocol, ep.path) if ep.path
                       else loop.create_connection(_Protocol, ep.host, ep.port))
            transport, protocol = await asyncio.wait_for(opening, ep.connect_timeout_s)
            protocol.transport = transport  # uvloop calls connection_made later, from the loop
            handshake = ep.handshake()
            if handshake:
                now = time.monotonic()
                replies = [loop.create_future() for _ in handshake]
                protocol.waiting.extend((f, now) for f in replies)
                assert protocol.transport is not None
                protocol.transport.write(b"".join(handshake))
                try:
                    answers = await asyncio.wait_for(asyncio.gather(*replies), self.timeout_s)
                except BaseException:
                    protocol.abort(ConnectionError("Redis handshake did not finish"))
                    raise
                try:
                    _check_handshake(answers)
                except ResponseError:
                    protocol.abort(ConnectionError("Redis refused the connection handshake"))
                    raise
            self._protocol = protocol
            self._arm_watchdog()
            return protocol

    def _arm_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(WATCHDOG_INTERVAL_S, self._check_overdue)

    def _check_overdue(self) -> None:
        self._watchdog = None
        protocol = self._protocol
        if protocol is None or protocol.closed:
            return
        if protocol.waiting and time.monotonic() - protocol.waiting[0][1] > self.timeout_s:
            protocol.abort(TimeoutError(f"Redis did not answer within {self.timeout_s:g} s"))
            return
        self._arm_watchdog()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._protocol is not None:
            self._protocol.abort(ConnectionError("Redis connection closed"))
            self._protocol = None


class RespSocket:
    """The blocking twin of :class:`RespPipe`, for one thread: ``request`` sends packed commands and reads
    their replies in order. Before each request the socket is polled (no wait) for a close the server already
    sent (a restart, an idle timeout), and a fresh connection replaces it; a request that fails under way fails
    with ``ConnectionError``, since nobody knows whether Redis ran it, and the next request reconnects."""

    def __init__(self, endpoint: Endpoint, *, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._poll: select.poll | None = None
        self._reader = hiredis.Reader(encoding="utf-8", errors="strict")

    def request(self, packed: Sequence[bytes]) -> list[Any]:
        """The replies to already packed commands, in order (an error reply is a value, see ``_reply_error``)."""
        if self._sock is None or self._closed_by_server():
            self._connect()
        try:
            return self._roundtrip(b"".join(packed), len(packed))
        except OSError as exc:
            self.close()
            raise ConnectionError(f"Redis connection failed: {exc}") from exc

    def _closed_by_server(self) -> bool:
        assert self._poll is not None
        if self._poll.poll(0):  # readable with nothing asked: end of file (or stray bytes: as bad)
            self.close()
            return True
        return False

    def _connect(self) -> None:
        ep = self.endpoint
        if ep.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(ep.connect_timeout_s)
            try:
                sock.connect(ep.path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((ep.host, ep.port), timeout=ep.connect_timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout_s)
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN | select.POLLPRI)
        self._reader = hiredis.Reader(encoding="utf-8", errors="strict")
        handshake = ep.handshake()
        if handshake:
            try:
                _check_handshake(self._roundtrip(b"".join(handshake), len(handshake)))
            except (OSError, ResponseError):
                self.close()
                raise

    def _roundtrip(self, data: bytes, count: int) -> list[Any]:
        sock = self._sock
        assert sock is not None
        sock.sendall(data)
        replies: list[Any] = []
        reader = self._reader
        while len(replies) < count:
            reply = _next_reply(reader)
            if reply is False:
                chunk = sock.recv(READ_CHUNK_BYTES)
                if not chunk:
                    raise ConnectionError("Redis closed the connection")
                reader.feed(chunk)
                continue
            replies.append(reply)
        return replies

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._poll = None
