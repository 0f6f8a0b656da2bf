"""The client's SSE parsing (the WHATWG rules the activity feed relies on) and the activity stream over a mock
transport: resuming with Last-Event-ID after a dropped connection, ticks, and the async twin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from api.client import AsyncClient, Client, ServerUnreachable
from api.client_sse import SSEMessage, SSEParser, iter_messages


def parse(text: str) -> list[SSEMessage]:
    return list(iter_messages(text.split("\n")))


def test_a_message_ends_at_a_blank_line_with_its_id_and_event() -> None:
    messages = parse('id: 1-0\nevent: task\ndata: {"state": "pending"}\n\n')
    assert messages == [SSEMessage(event="task", data='{"state": "pending"}', id="1-0")]
    assert messages[0].json() == {"state": "pending"}


def test_data_lines_join_with_newlines_and_only_one_leading_space_is_dropped() -> None:
    (message,) = parse("data: first\ndata:  second\ndata:third\ndata\n\n")
    assert message.data == "first\n second\nthird\n"
    assert message.event == "message"  # the default when no event field came


def test_comments_and_unknown_fields_are_ignored() -> None:
    assert parse(": keep-alive\n\n:\nfoo: bar\ndata: x\n\n") == [SSEMessage(event="message", data="x")]


def test_the_last_event_id_persists_across_messages_until_another_id_comes() -> None:
    messages = parse("id: 5-0\nevent: task\ndata: {}\n\nevent: tick\ndata: {}\n\nid: 6-1\ndata: {}\n\n")
    assert [(m.event, m.id) for m in messages] == [("task", "5-0"), ("tick", "5-0"), ("message", "6-1")]


def test_a_message_without_data_is_not_dispatched_and_an_unfinished_one_is_dropped() -> None:
    parser = SSEParser()
    assert list(iter_messages(["id: 7-0", "event: task", "", "data: late"], parser)) == []
    assert parser.last_event_id == "7-0"  # the id still counts for resuming


def test_retry_sets_the_reconnection_delay_and_an_id_holding_nul_is_ignored() -> None:
    parser = SSEParser()
    for line in ("retry: 2500", "retry: soon", "id: 1-0", "id: 2\0-0", ""):
        parser.feed(line)
    assert (parser.retry_ms, parser.last_event_id) == (2500, "1-0")


def test_a_byte_order_mark_and_any_line_ending_are_accepted() -> None:
    body = '\ufeffid: 1-0\r\ndata: {"a": 1}\r\n\r\nid: 2-0\rdata: {"a": 2}\r\r'.encode()
    response = httpx.Response(200, content=body)
    assert [(m.id, m.json()) for m in iter_messages(response.iter_lines())] == [("1-0", {"a": 1}), ("2-0", {"a": 2})]


def entry(entry_id: str, state: str) -> str:
    data = {"id": entry_id, "kind": "task", "subject": "t1", "state": state, "worker": "echo", "at": "x"}
    return f"id: {entry_id}\nevent: task\ndata: {json.dumps(data)}\n\n"


class Dropping(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that sends ``chunks`` and then fails as a dropped connection does."""

    def __init__(self, *chunks: str) -> None:
        self.chunks = [c.encode() for c in chunks]

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        raise httpx.ReadError("connection reset")


class Feed:
    """A mock /api/activity: one scripted body per connection; records each request's resume point."""

    def __init__(self, *bodies: httpx.SyncByteStream | str) -> None:
        self.bodies = list(bodies)
        self.resumed_after: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/activity"
        self.resumed_after.append(request.headers.get("last-event-id"))
        body = self.bodies.pop(0)
        if isinstance(body, str):
            return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, stream=body, headers={"content-type": "text/event-stream"})


def test_the_activity_stream_resumes_after_the_last_entry_when_the_connection_drops() -> None:
    feed = Feed(Dropping(entry("1-0", "pending"), "event: tick\ndata: {\"at\": \"t\"}\n\n", "id: 2-0\ndata: {"),
                entry("3-0", "completed"))
    with Client("http://taskyard.test", transport=httpx.MockTransport(feed)) as client, client.activity() as stream:
        got = [next(stream), next(stream)]
    assert [(e["id"], e["state"]) for e in got] == [("1-0", "pending"), ("3-0", "completed")]
    # The half-sent message (its id line arrived, its data never finished) is not skipped: resume from 1-0.
    assert feed.resumed_after == [None, "1-0"]


def test_ticks_are_entries_only_when_asked_for() -> None:
    feed = Feed('event: tick\ndata: {"at": "2026-11-23T11:06:40.000Z"}\n\n' + entry("1-0", "pending"))
    with Client("http://taskyard.test", transport=httpx.MockTransport(feed)) as client:
        stream = client.activity(after="0-5", ticks=True)
        assert next(stream) == {"kind": "tick", "at": "2026-11-23T11:06:40.000Z"}
        assert next(stream)["id"] == "1-0"
        stream.close()
    assert feed.resumed_after == ["0-5"]


def test_a_feed_that_cannot_be_reached_again_gives_up_with_server_unreachable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("api.client_feed.RECONNECT_FIRST_S", 0.001)
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(200, stream=Dropping(entry("1-0", "pending")))
        raise httpx.ConnectError("Connection refused")

    with Client("http://taskyard.test", transport=httpx.MockTransport(handler)) as client:
        stream = client.activity()
        assert next(stream)["id"] == "1-0"
        with pytest.raises(ServerUnreachable, match="cannot reach http://taskyard.test: Connection refused"):
            next(stream)
    assert calls["n"] == 1 + 5  # the first connection, then five tries to resume


def test_the_async_activity_stream_resumes_the_same_way() -> None:
    feed = Feed(Dropping(entry("1-0", "pending")), entry("2-0", "dispatched"))

    async def read() -> list[str]:
        async with AsyncClient("http://taskyard.test", transport=httpx.MockTransport(feed)) as client:
            async with client.activity() as stream:
                return [(await anext(stream))["state"], (await anext(stream))["state"]]

    assert asyncio.run(read()) == ["pending", "dispatched"]
    assert feed.resumed_after == [None, "1-0"]
