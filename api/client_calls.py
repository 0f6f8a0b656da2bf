"""The HTTP calls of the Python client, described once and sent by both :class:`api.client.Client` and
:class:`api.client.AsyncClient`: each builder, named as the client method it serves, answers a :class:`Call`
(method, path, query, body and how to read the answer). Paths and shapes are those of ``docs/api.md``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from api.client_errors import ClientError, error_from_response

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URL",
    "Call",
    "FINAL_RUN_STATES",
    "FINAL_TASK_STATES",
    "Page",
    "auth_headers",
    "feed_request",
    "read_answer",
    "cancel_task",
    "compare_regression",
    "events",
    "fix_runs",
    "get_event",
    "get_fix_run",
    "get_incident",
    "get_regression_run",
    "get_task",
    "get_trace",
    "health",
    "incidents",
    "list_tasks",
    "regression_runs",
    "replay_event",
    "sessions",
    "start_fix",
    "start_regression",
    "submit_task",
    "task_stats",
    "trace_events",
    "update_incident",
    "workers",
]

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 10.0  # seconds per request (connect, each read, each write)
FINAL_TASK_STATES = frozenset({"completed", "failed", "cancelled"})
FINAL_RUN_STATES = frozenset({"completed", "failed"})  # fix runs and regression runs


@dataclass(frozen=True)
class Page:
    """One page of a listing, newest first; ``next_cursor`` (from ``X-Next-Cursor``) is None on the last."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its (successful) answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    has_body: bool = False


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The key as a header. A key with characters a header cannot carry (a CR/LF from a file, a pasted smart
    quote) is refused here, without echoing it: httpx's own error would print the whole header."""
    key = api_key.strip() if api_key else None
    if not key:
        return {}
    if not (key.isascii() and key.isprintable()):
        raise ClientError(None, "the API key holds characters an HTTP header cannot carry (check for a stray "
                                "newline or a non-ASCII character)")
    return {"Authorization": f"Bearer {key}"}


def feed_request(http: httpx.Client | httpx.AsyncClient, after: str | None, read_timeout: float,
                 timeout: float) -> httpx.Request:
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": after} if after else {})}
    return http.build_request("GET", "/api/activity", headers=headers,
                              timeout=httpx.Timeout(timeout, read=read_timeout))


def read_answer(call: Call[T], response: httpx.Response) -> T:
    """The call's value from its answer, or the ClientError the answer means."""
    if response.is_error:
        raise error_from_response(response)
    try:
        return call.read(response)
    except ValueError as exc:  # no status: an answer that is not the API's is not a refusal (CLI exit 5)
        raise ClientError(None, f"the server's answer to {call.method} {call.path} is not the Taskyard API's "
                                f"({exc})", response.text[:200]) from None


def _json(response: httpx.Response) -> Any:
    """A JSON object or a list of objects (what every Taskyard route answers); else ValueError."""
    value = response.json()
    if isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
        return value
    raise ValueError("expected a JSON object or a list of objects")


def _page(response: httpx.Response) -> Page:
    items = _json(response)
    if not isinstance(items, list):
        raise ValueError("expected a JSON list")
    return Page(items=items, next_cursor=response.headers.get("x-next-cursor") or None)


def _seg(value: str) -> str:
    """An id as one path segment (a stray ``/`` or ``?`` in it cannot reach another route)."""
    return quote(value, safe="")


def _query(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def _body(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/health", _json)


def submit_task(prompt: str, *, worker: str | None, pool: str | None, context: dict[str, Any] | None,
                timeout: float | str | None, max_retries: int | None,
                idempotency_key: str | None) -> Call[dict[str, Any]]:
    body = _body(prompt=prompt, worker=worker, pool=pool, context=context, timeout=timeout,
                 max_retries=max_retries, idempotency_key=idempotency_key)
    return Call("POST", "/task", _json, body=body, has_body=True)


def get_task(task_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/task/{_seg(task_id)}", _json)


def list_tasks(state: str | None, worker: str | None, limit: int | None, cursor: str | None) -> Call[Page]:
    return Call("GET", "/tasks", _page, _query(state=state, worker=worker, limit=limit, cursor=cursor))


def cancel_task(task_id: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/task/{_seg(task_id)}/cancel", _json)


def workers() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/workers", _json)


def events(state: str | None, source: str | None, limit: int | None, cursor: str | None) -> Call[Page]:
    return Call("GET", "/events", _page, _query(state=state, source=source, limit=limit, cursor=cursor))


def get_event(event_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/event/{_seg(event_id)}", _json)


def replay_event(event_id: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/api/events/{_seg(event_id)}/replay", _json)


def test_rules(source: str, payload: Any, event_type: str | None,
               headers: dict[str, str] | None) -> Call[dict[str, Any]]:
    body = _body(source=source, type=event_type, headers=headers or None)
    return Call("POST", "/api/rules/test", _json, body={**body, "payload": payload}, has_body=True)


def get_trace(trace_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/traces/{_seg(trace_id)}", _json)


def trace_events(trace_id: str, after_seq: int, limit: int | None) -> Call[list[dict[str, Any]]]:
    return Call("GET", f"/api/traces/{_seg(trace_id)}/events", _json, _query(after_seq=after_seq, limit=limit))


def sessions(status: str | None, agent: str | None, limit: int | None, cursor: str | None) -> Call[Page]:
    return Call("GET", "/api/sessions", _page, _query(status=status, agent=agent, limit=limit, cursor=cursor))


def incidents(status: str | None, failure_class: str | None, worker: str | None, limit: int | None,
              cursor: str | None) -> Call[Page]:
    return Call("GET", "/api/incidents", _page, _query(status=status, **{"class": failure_class}, worker=worker,
                                                       limit=limit, cursor=cursor))


def get_incident(incident_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/incidents/{_seg(incident_id)}", _json)


def update_incident(incident_id: str, status: str | None,
                    owner: str | None | EllipsisType) -> Call[dict[str, Any]]:
    body: dict[str, Any] = _body(status=status)
    if not isinstance(owner, EllipsisType):
        body["owner"] = owner  # None clears it
    return Call("PATCH", f"/api/incidents/{_seg(incident_id)}", _json, body=body, has_body=True)


def start_fix(incident_id: str, repo: str | None, base_ref: str | None,
              runner: str | None) -> Call[dict[str, Any]]:
    return Call("POST", f"/api/incidents/{_seg(incident_id)}/fix-agent", _json,
                body=_body(repo=repo, base_ref=base_ref, runner=runner), has_body=True)


def get_fix_run(run_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/fix-runs/{_seg(run_id)}", _json)


def fix_runs(incident_id: str) -> Call[list[dict[str, Any]]]:
    return Call("GET", f"/api/incidents/{_seg(incident_id)}/fix-runs", _json)


def start_regression(incident_id: str, fix_run_id: str | None, before_ref: str | None, after_ref: str | None,
                     cases: list[str] | None) -> Call[dict[str, Any]]:
    body = _body(fix_run_id=fix_run_id, before_ref=before_ref, after_ref=after_ref, cases=cases)
    return Call("POST", f"/api/incidents/{_seg(incident_id)}/regression-runs", _json, body=body, has_body=True)


def get_regression_run(run_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/regression-runs/{_seg(run_id)}", _json)


def regression_runs(incident_id: str) -> Call[list[dict[str, Any]]]:
    return Call("GET", f"/api/incidents/{_seg(incident_id)}/regression-runs", _json)


def compare_regression(run_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/regression-runs/{_seg(run_id)}/compare", _json)


def task_stats(minutes: int | None) -> Call[list[dict[str, Any]]]:
    return Call("GET", "/api/stats/tasks", _json, _query(minutes=minutes))
