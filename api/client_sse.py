"""Server-Sent Events for the Python client: a line parser (the WHATWG rules the server relies on) and the
messages it makes.

A message is a run of ``field: value`` lines ended by a blank line. ``data`` lines join with newlines; ``event``
names the message (``message`` when absent); ``id`` becomes the last event id when its message completes (a
half-received message never moves it) and persists across messages: a client resumes with it as
``Last-Event-ID``. ``retry`` sets the reconnection delay in milliseconds. A line starting with ``:`` is a comment
(the server's keep-alive) and a message without data is not dispatched. One space after the colon is dropped; a
line without a colon is a field with an empty value. Lines come without their line ending (httpx's
``iter_lines`` splits on ``\\r\\n``, ``\\n`` and ``\\r``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEMessage", "SSEParser", "aiter_messages", "iter_messages"]


@dataclass(frozen=True)
class SSEMessage:
    """One dispatched message. ``id`` is the last event id when it was dispatched (None before any)."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        """``data`` parsed as JSON."""
        return json.loads(self.data)


class SSEParser:
    """Feed it lines one at a time; :meth:`feed` answers a message when a blank line completes one."""

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id  # of the last complete message: where a reconnection resumes
        self.retry_ms: int | None = None
        self._id = last_event_id
        self._event = ""
        self._data: list[str] = []
        self._started = False

    def feed(self, line: str) -> SSEMessage | None:
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")  # a byte order mark may open the stream
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)
        return None  # any other field is ignored

    def _dispatch(self) -> SSEMessage | None:
        self.last_event_id = self._id  # only a complete message moves the resume point
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SSEMessage(event=event, data="\n".join(data), id=self.last_event_id)


def iter_messages(lines: Iterable[str], parser: SSEParser | None = None) -> Iterator[SSEMessage]:
    """The messages of a stream of lines; an unfinished message at the end is dropped, as the standard says."""
    parser = parser or SSEParser()
    for line in lines:
        message = parser.feed(line)
        if message is not None:
            yield message


async def aiter_messages(lines: AsyncIterable[str], parser: SSEParser | None = None) -> AsyncIterator[SSEMessage]:
    """:func:`iter_messages` over an async stream of lines."""
    parser = parser or SSEParser()
    async for line in lines:
        message = parser.feed(line)
        if message is not None:
            yield message
