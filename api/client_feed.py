"""The client side of the live activity feed (``GET /api/activity``, Server-Sent Events): a reconnecting
iterator of activity entries, and waiting for a task or run to end by following the feed.

Waiting opens the feed first and reads the record second, so a change between the two is in the feed; after a
dropped connection it resumes after the last entry seen (``Last-Event-ID``) and reads the record again. A server
without the feed (404) is waited on by reading the record again with backoff instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from api.client_errors import NotFound, ServerUnreachable, WaitTimeout
from api.client_sse import SSEMessage, SSEParser

__all__ = ["ActivityStream", "AsyncActivityStream", "Waited", "await_final", "wait_final"]

FEED_IDLE_S = 45.0  # seconds without a line before the feed counts as dropped (the server ticks every 15 s)
RECONNECT_TRIES = 5  # failed reconnections in a row before the feed gives up with ServerUnreachable
RECONNECT_FIRST_S = 0.25  # seconds before the first reconnection; doubles each try
POLL_FIRST_S = 0.1  # seconds between the first two reads when polling (a server without the feed)
POLL_MAX_S = 2.0  # seconds, the longest pause between two reads when polling

Opener = Callable[[str | None, float], httpx.Response]  # (resume after, read timeout s) -> an open stream
AsyncOpener = Callable[[str | None, float], Awaitable[httpx.Response]]
Record = dict[str, Any]


def _entry(message: SSEMessage, ticks: bool) -> Record | None:
    if message.event == "tick":
        return {"kind": "tick", **message.json()} if ticks else None
    return dict(message.json())


class ActivityStream(Iterator[Record]):
    """Activity entries as dicts (``{"id", "kind", "subject", "state", ..., "at"}``), oldest first, for as long
    as it is iterated; ``ticks`` adds ``{"kind": "tick", "at"}`` for the server's 15 s keep-alives. Connects
    when entered (``with client.activity() as feed:``: entries from then on are kept) or at the first ``next``.
    A dropped connection is resumed after the last entry; :class:`ServerUnreachable` after
    ``RECONNECT_TRIES`` failed reconnections in a row."""

    def __init__(self, opener: Opener, *, after: str | None, ticks: bool) -> None:
        self._opener = opener
        self._ticks = ticks
        self._parser = SSEParser(after)
        self._response: httpx.Response | None = None
        self._lines: Iterator[str] = iter(())
        self._connected_once = False

    @property
    def last_id(self) -> str | None:
        """The id of the last entry read: resume from it with ``client.activity(after=...)``."""
        return self._parser.last_event_id

    def open(self) -> ActivityStream:
        if self._response is None:
            tries = RECONNECT_TRIES if self._connected_once else 1
            for attempt in range(tries):
                try:
                    self._response = self._opener(self._parser.last_event_id, FEED_IDLE_S)
                    break
                except ServerUnreachable:
                    if attempt == tries - 1:
                        raise
                    time.sleep(RECONNECT_FIRST_S * 2 ** attempt)
            assert self._response is not None
            self._connected_once = True
            self._parser = SSEParser(self._parser.last_event_id)  # a half-read message is dropped
            self._lines = self._response.iter_lines()
        return self

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def __enter__(self) -> ActivityStream:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __next__(self) -> Record:
        while True:
            self.open()
            try:
                line = next(self._lines)
            except (StopIteration, httpx.TransportError):  # the server went away or went quiet: resume
                self.close()
                continue
            message = self._parser.feed(line)
            entry = _entry(message, self._ticks) if message is not None else None
            if entry is not None:
                return entry


class AsyncActivityStream(AsyncIterator[Record]):
    """:class:`ActivityStream` for :class:`api.client.AsyncClient`: ``async with`` / ``async for``."""

    def __init__(self, opener: AsyncOpener, *, after: str | None, ticks: bool) -> None:
        self._opener = opener
        self._ticks = ticks
        self._parser = SSEParser(after)
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._connected_once = False

    @property
    def last_id(self) -> str | None:
        return self._parser.last_event_id

    async def open(self) -> AsyncActivityStream:
        if self._response is None:
            tries = RECONNECT_TRIES if self._connected_once else 1
            for attempt in range(tries):
                try:
                    self._response = await self._opener(self._parser.last_event_id, FEED_IDLE_S)
                    break
                except ServerUnreachable:
                    if attempt == tries - 1:
                        raise
                    await asyncio.sleep(RECONNECT_FIRST_S * 2 ** attempt)
            assert self._response is not None
            self._connected_once = True
            self._parser = SSEParser(self._parser.last_event_id)
            self._lines = self._response.aiter_lines()
        return self

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()
            self._response = None

    async def __aenter__(self) -> AsyncActivityStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def __anext__(self) -> Record:
        while True:
            await self.open()
            assert self._lines is not None
            try:
                line = await anext(self._lines)
            except (StopAsyncIteration, httpx.TransportError):
                await self.aclose()
                continue
            message = self._parser.feed(line)
            entry = _entry(message, self._ticks) if message is not None else None
            if entry is not None:
                return entry


@dataclass
class Waited:
    """What to wait for: the feed entries of ``kind`` about ``subject`` until its ``state_key`` is in ``final``."""

    kind: str  # task | fix_run | regression_run
    subject: str
    final: frozenset[str]
    state_key: str  # "state" for tasks, "status" for runs
    timeout: float | None  # seconds; None waits for as long as it takes
    on_state: Callable[[str], None] | None = None
    _last: str | None = None  # the last state reported
    deadline: float | None = field(init=False)  # time.monotonic() seconds

    def __post_init__(self) -> None:
        self.deadline = None if self.timeout is None else time.monotonic() + self.timeout

    def note(self, state: str) -> bool:
        """Report a state (once per change); answers whether it is final."""
        if state != self._last:
            self._last = state
            if self.on_state is not None:
                self.on_state(state)
        return state in self.final

    def concerns(self, message: SSEMessage) -> bool:
        return message.event == self.kind and message.json().get("subject") == self.subject

    def remaining(self) -> float:
        """Seconds left (the idle limit when there is no deadline); WaitTimeout once it has passed."""
        if self.deadline is None:
            return FEED_IDLE_S
        left = self.deadline - time.monotonic()
        if left <= 0:
            what = self.kind.replace("_", " ")
            raise WaitTimeout(None, f"{what} {self.subject} is still {self._last or 'unknown'} after {self.timeout:g}s")
        return left


def wait_final(opener: Opener, fetch: Callable[[], Record], waited: Waited) -> Record:
    """Follow the feed until ``waited`` is final, answering the record as ``fetch`` reads it then."""
    after: str | None = None
    failures = 0
    while True:
        try:
            response = opener(after, min(FEED_IDLE_S, waited.remaining()))
        except NotFound:  # a server without the activity feed
            return _poll(fetch, waited)
        except ServerUnreachable:
            failures += 1
            if failures >= RECONNECT_TRIES:
                raise
            time.sleep(min(RECONNECT_FIRST_S * 2 ** failures, waited.remaining()))
            continue
        failures = 0
        parser = SSEParser(after)
        try:
            record = fetch()
            if waited.note(record[waited.state_key]):
                return record
            for line in response.iter_lines():
                message = parser.feed(line)
                if message is not None and waited.concerns(message) and waited.note(message.json()["state"]):
                    record = fetch()
                    if waited.note(record[waited.state_key]):
                        return record
                waited.remaining()
        except httpx.TransportError:
            pass  # dropped or quiet past the read timeout: resume after the last entry, or time out
        finally:
            response.close()
        after = parser.last_event_id


def _poll(fetch: Callable[[], Record], waited: Waited) -> Record:
    delay = POLL_FIRST_S
    while True:
        record = fetch()
        if waited.note(record[waited.state_key]):
            return record
        time.sleep(min(delay, waited.remaining()))
        delay = min(delay * 2, POLL_MAX_S)


async def await_final(opener: AsyncOpener, fetch: Callable[[], Awaitable[Record]], waited: Waited) -> Record:
    """:func:`wait_final` for the async client."""
    after: str | None = None
    failures = 0
    while True:
        try:
            response = await opener(after, min(FEED_IDLE_S, waited.remaining()))
        except NotFound:
            return await _apoll(fetch, waited)
        except ServerUnreachable:
            failures += 1
            if failures >= RECONNECT_TRIES:
                raise
            await asyncio.sleep(min(RECONNECT_FIRST_S * 2 ** failures, waited.remaining()))
            continue
        failures = 0
        parser = SSEParser(after)
        try:
            record = await fetch()
            if waited.note(record[waited.state_key]):
                return record
            async for line in response.aiter_lines():
                message = parser.feed(line)
                if message is not None and waited.concerns(message) and waited.note(message.json()["state"]):
                    record = await fetch()
                    if waited.note(record[waited.state_key]):
                        return record
                waited.remaining()
        except httpx.TransportError:
            pass
        finally:
            await response.aclose()
        after = parser.last_event_id


async def _apoll(fetch: Callable[[], Awaitable[Record]], waited: Waited) -> Record:
    delay = POLL_FIRST_S
    while True:
        record = await fetch()
        if waited.note(record[waited.state_key]):
            return record
        await asyncio.sleep(min(delay, waited.remaining()))
        delay = min(delay * 2, POLL_MAX_S)
