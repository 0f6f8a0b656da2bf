"""The Python client over a mock transport: requests as docs/api.md describes them, errors by meaning from the
server's {"error": ...} answers, paging by X-Next-Cursor, and waiting (by the feed, or by polling without one)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.client import (
    AsyncClient,
    Client,
    ClientError,
    NotFound,
    Refused,
    ServerError,
    ServerUnreachable,
    Unauthorized,
    WaitTimeout,
)

URL = "http://taskyard.test"
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, api_key: str | None = None) -> Client:
    return Client(URL, api_key=api_key, transport=httpx.MockTransport(handler))


def test_a_key_is_sent_as_a_bearer_token_and_no_header_without_one() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"status": "ok"})

    assert client(handler, api_key="s3cret").health() == {"status": "ok"}
    client(handler).health()
    assert seen == ["Bearer s3cret", None]


def test_submit_sends_only_the_fields_given() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/task")
        bodies.append(json.loads(request.content))
        return httpx.Response(202, json={"id": "a" * 32, "state": "pending"})

    c = client(handler)
    assert c.submit_task("hi")["state"] == "pending"
    c.submit_task("hi", worker="echo", context={"pr": 7}, timeout="10m", max_retries=2, idempotency_key="k")
    assert bodies == [{"prompt": "hi"}, {"prompt": "hi", "worker": "echo", "context": {"pr": 7}, "timeout": "10m",
                                         "max_retries": 2, "idempotency_key": "k"}]


def test_an_incident_owner_is_cleared_with_none_and_kept_when_left_out() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("PATCH", "/api/incidents/i1")
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"id": "i1"})

    c = client(handler)
    c.update_incident("i1", status="acknowledged")
    c.update_incident("i1", owner=None)
    c.update_incident("i1", owner="ana")
    assert bodies == [{"status": "acknowledged"}, {"owner": None}, {"owner": "ana"}]


def test_a_page_carries_the_next_cursor_and_iterate_follows_it_to_the_end() -> None:
    pages = {None: ([{"id": "3"}, {"id": "2"}], "2"), "2": ([{"id": "1"}], None)}
    queries: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        queries.append(query)
        items, cursor = pages[query.get("cursor")]
        return httpx.Response(200, json=items, headers={"X-Next-Cursor": cursor} if cursor else {})

    c = client(handler)
    first = c.list_tasks(state="completed", limit=2)
    assert (first.items, first.next_cursor) == ([{"id": "3"}, {"id": "2"}], "2")
    assert [t["id"] for t in c.iterate(c.list_tasks, state="completed", limit=2)] == ["3", "2", "1"]
    assert queries[-1] == {"state": "completed", "limit": "2", "cursor": "2"}


def test_incident_filters_use_the_servers_query_names() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert dict(request.url.params) == {"status": "open", "class": "loop", "worker": "w"}
        return httpx.Response(200, json=[])

    assert client(handler).incidents(status="open", failure_class="loop", worker="w").items == []


def test_an_id_cannot_reach_another_route() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.raw_path == b"/task/..%2Fworkers"
        return httpx.Response(404, json={"error": "task not found"})

    with pytest.raises(NotFound):
        client(handler).get_task("../workers")


@pytest.mark.parametrize(("status", "kind"), [
    (404, NotFound), (401, Unauthorized), (403, Unauthorized), (400, Refused), (409, Refused), (422, Refused),
    (429, Refused), (503, Refused), (500, ServerError), (502, ServerError)])
def test_errors_are_classed_by_status_with_the_servers_message(status: int, kind: type[ClientError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "task queue full", "request_id": "r1"},
                              headers={"Retry-After": "1"})

    with pytest.raises(kind) as raised:
        client(handler).get_task("x")
    error = raised.value
    assert (error.status, str(error), error.body["request_id"], error.retry_after) == (
        status, "task queue full", "r1", 1.0)


def test_an_answer_that_is_not_json_still_makes_a_one_line_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>\n<b>Bad gateway</b>\n</html>")

    with pytest.raises(ServerError, match=r"^HTTP 502: <html> <b>Bad gateway</b> </html>$"):
        client(handler).workers()


def test_a_closed_port_is_server_unreachable_naming_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    with Client(f"http://127.0.0.1:{port}", timeout=2) as c, pytest.raises(ServerUnreachable) as raised:
        c.health()
    assert raised.value.status is None
    assert str(raised.value).startswith(f"cannot reach http://127.0.0.1:{port}: ")
    assert "\n" not in str(raised.value)


def task_server(states: list[str], *, feed: str | None) -> tuple[Handler, list[str]]:
    """GET /task/t1 answers ``states`` in turn (the last one from then on); /api/activity is ``feed`` or 404."""
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/api/activity":
            if feed is None:
                return httpx.Response(404, json={"error": "not found"})
            return httpx.Response(200, content=feed.encode(), headers={"content-type": "text/event-stream"})
        state = states.pop(0) if len(states) > 1 else states[0]
        result = "done" if state == "completed" else None
        return httpx.Response(200, json={"id": "t1", "state": state, "result": result})

    return handler, paths


def sse(entry_id: str, subject: str, state: str) -> str:
    data = json.dumps({"id": entry_id, "kind": "task", "subject": subject, "state": state, "worker": "w"})
    return f"id: {entry_id}\nevent: task\ndata: {data}\n\n"


def test_waiting_follows_the_feed_and_reports_each_state_once() -> None:
    feed = sse("1-0", "other", "completed") + sse("2-0", "t1", "dispatched") + sse("3-0", "t1", "completed")
    handler, paths = task_server(["pending", "completed"], feed=feed)
    states: list[str] = []
    done = client(handler).wait_for_task("t1", timeout=5, on_state=states.append)
    assert (done["state"], done["result"]) == ("completed", "done")
    assert states == ["pending", "dispatched", "completed"]
    assert paths == ["/api/activity", "/task/t1", "/task/t1"]  # the feed is open before the first read


def test_without_a_feed_waiting_reads_the_task_again_until_it_ends() -> None:
    handler, paths = task_server(["pending", "dispatched", "failed"], feed=None)
    assert client(handler).wait_for_task("t1", timeout=5)["state"] == "failed"
    assert paths == ["/api/activity", "/task/t1", "/task/t1", "/task/t1"]


def test_a_wait_that_reaches_its_deadline_says_where_the_task_is() -> None:
    handler, _ = task_server(["dispatched"], feed=None)
    with pytest.raises(WaitTimeout, match="^task t1 is still dispatched after 0.3s$"):
        client(handler).wait_for_task("t1", timeout=0.3)


def test_the_async_client_waits_the_same_way() -> None:
    handler, paths = task_server(["pending", "cancelled"], feed=sse("1-0", "t1", "cancelled"))

    async def wait() -> dict[str, Any]:
        async with AsyncClient(URL, transport=httpx.MockTransport(handler)) as c:
            return await c.wait_for_task("t1", timeout=5)

    assert asyncio.run(wait())["state"] == "cancelled"
    assert paths == ["/api/activity", "/task/t1", "/task/t1"]


@pytest.mark.parametrize("key", ["sekrit\rkey", "sekrit\nkey", "sekrit-key-123’"])
def test_a_key_no_header_can_carry_is_refused_without_being_echoed(key: str) -> None:
    from api.client_calls import auth_headers

    with pytest.raises(ClientError) as info:
        auth_headers(key)
    assert "sekrit" not in str(info.value) and "header cannot carry" in str(info.value)
    assert auth_headers("  k-ok \n".strip()) == {"Authorization": "Bearer k-ok"}
