"""The Python client of a Taskyard server: typed methods over the HTTP API (``docs/api.md``), sync
(:class:`Client`) and async (:class:`AsyncClient`, the same methods to ``await``). The ``taskyard`` CLI uses it
for all its HTTP.

::

    from api.client import Client, NotFound

    with Client("http://127.0.0.1:8080", api_key="secret") as client:
        task = client.submit_task("Review PR 7", worker="reviewer")
        done = client.wait_for_task(task["id"], timeout=600)   # follows the live activity feed
        print(done["state"], done["result"])

Every failure is a :class:`ClientError` (tree in :mod:`api.client_errors`); records are the server's JSON as
dicts; listings are a :class:`Page` (``items`` and ``next_cursor``), and :meth:`Client.iterate` follows the cursors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import EllipsisType
from typing import Any, TypeVar

import httpx

from api import client_calls as calls
from api.client_async import AsyncClient
from api.client_calls import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    FINAL_RUN_STATES,
    FINAL_TASK_STATES,
    Call,
    Page,
    auth_headers,
    feed_request,
    read_answer,
)
from api.client_errors import (
    ClientError,
    NotFound,
    Refused,
    ServerError,
    ServerUnreachable,
    Unauthorized,
    WaitTimeout,
    error_from_response,
    unreachable,
)
from api.client_feed import ActivityStream, Waited, wait_final

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URL",
    "ActivityStream",
    "AsyncClient",
    "Client",
    "ClientError",
    "NotFound",
    "Page",
    "Refused",
    "ServerError",
    "ServerUnreachable",
    "Unauthorized",
    "WaitTimeout",
]

T = TypeVar("T")
Record = dict[str, Any]
StateCallback = Callable[[str], None]


class Client:
    """A Taskyard server at ``url``; ``api_key`` is sent as ``Authorization: Bearer <key>``; ``timeout`` in
    seconds per request. ``transport`` replaces the network (``httpx.MockTransport`` in tests)."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.url, headers=auth_headers(api_key), timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, params=call.params,
                                          json=call.body if call.has_body else None)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc
        return read_answer(call, response)

    # -- tasks and workers -----------------------------------------------------------------------------------
    def health(self) -> Record:
        """``GET /health``: status, queue depth and cap, workers online. A degraded server answers 503: Refused."""
        return self._send(calls.health())

    def submit_task(self, prompt: str, *, worker: str | None = None, pool: str | None = None,
                    context: dict[str, Any] | None = None, timeout: float | str | None = None,
                    max_retries: int | None = None, idempotency_key: str | None = None) -> Record:
        """``POST /task``: the stored task (state ``pending``). ``timeout`` in seconds or a duration (``"10m"``)."""
        return self._send(calls.submit_task(prompt, worker=worker, pool=pool, context=context, timeout=timeout,
                                            max_retries=max_retries, idempotency_key=idempotency_key))

    def get_task(self, task_id: str) -> Record:
        """``GET /task/{id}``; NotFound for an unknown id."""
        return self._send(calls.get_task(task_id))

    def list_tasks(self, state: str | None = None, worker: str | None = None, limit: int | None = None,
                   cursor: str | None = None) -> Page:
        """``GET /tasks``: one page, newest first."""
        return self._send(calls.list_tasks(state, worker, limit, cursor))

    def cancel_task(self, task_id: str) -> Record:
        """``POST /task/{id}/cancel``: the task as it is after the request."""
        return self._send(calls.cancel_task(task_id))

    def workers(self) -> list[Record]:
        """``GET /workers``: every worker by name, with state, health and queue depth."""
        return self._send(calls.workers())

    def task_stats(self, minutes: int | None = None) -> list[Record]:
        """``GET /api/stats/tasks``: created, completed and failed per minute, oldest first."""
        return self._send(calls.task_stats(minutes))

    def iterate(self, list_method: Callable[..., Page], **params: Any) -> Iterator[Record]:
        """Every item of a listing, page after page: ``client.iterate(client.list_tasks, state="failed")``."""
        cursor = params.pop("cursor", None)
        while True:
            page = list_method(**params, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # -- webhook events and traces ------------------------------------------------------------------------
    def events(self, state: str | None = None, source: str | None = None, limit: int | None = None,
               cursor: str | None = None) -> Page:
        """``GET /events``: webhook events, newest first, without payloads."""
        return self._send(calls.events(state, source, limit, cursor))

    def get_event(self, event_id: str) -> Record:
        """``GET /event/{id}``: the event with payload, matches, linked tasks and history."""
        return self._send(calls.get_event(event_id))

    def replay_event(self, event_id: str) -> Record:
        """``POST /api/events/{id}/replay``: the new event that runs the stored one's matching again."""
        return self._send(calls.replay_event(event_id))

    def test_rules(self, source: str, payload: Any, event_type: str | None = None,
                   headers: dict[str, str] | None = None) -> Record:
        """``POST /api/rules/test``: which rules a delivery would match, why each other one would not, and the
        rendered prompts; nothing is stored or dispatched."""
        return self._send(calls.test_rules(source, payload, event_type, headers))

    def get_trace(self, trace_id: str) -> Record:
        """``GET /api/traces/{id}``: the trace's summary (status, events, tokens, cost)."""
        return self._send(calls.get_trace(trace_id))

    def trace_events(self, trace_id: str, after_seq: int = 0, limit: int | None = None) -> list[Record]:
        """``GET /api/traces/{id}/events``: events with seq > ``after_seq``, in seq order."""
        return self._send(calls.trace_events(trace_id, after_seq, limit))

    def sessions(self, status: str | None = None, agent: str | None = None, limit: int | None = None,
                 cursor: str | None = None) -> Page:
        """``GET /api/sessions``: traces, newest first."""
        return self._send(calls.sessions(status, agent, limit, cursor))

    # -- incidents, fix runs, regression runs ---------------------------------------------------------------
    def incidents(self, status: str | None = None, failure_class: str | None = None, worker: str | None = None,
                  limit: int | None = None, cursor: str | None = None) -> Page:
        """``GET /api/incidents``: newest activity first. With several filters a page may be short: iterate."""
        return self._send(calls.incidents(status, failure_class, worker, limit, cursor))

    def get_incident(self, incident_id: str) -> Record:
        """``GET /api/incidents/{id}``: with evidence, playbook and history."""
        return self._send(calls.get_incident(incident_id))

    def update_incident(self, incident_id: str, status: str | None = None,
                        owner: str | None | EllipsisType = ...) -> Record:
        """``PATCH /api/incidents/{id}``: triage. ``owner=None`` clears the owner; leave it out to keep it."""
        return self._send(calls.update_incident(incident_id, status, owner))

    def start_fix(self, incident_id: str, repo: str | None = None, base_ref: str | None = None,
                  runner: str | None = None) -> Record:
        """``POST /api/incidents/{id}/fix-agent``: the new (or already running) fix run."""
        return self._send(calls.start_fix(incident_id, repo, base_ref, runner))

    def get_fix_run(self, run_id: str) -> Record:
        """``GET /api/fix-runs/{id}``."""
        return self._send(calls.get_fix_run(run_id))

    def fix_runs(self, incident_id: str) -> list[Record]:
        """``GET /api/incidents/{id}/fix-runs``: newest first."""
        return self._send(calls.fix_runs(incident_id))

    def start_regression(self, incident_id: str, fix_run_id: str | None = None, before_ref: str | None = None,
                         after_ref: str | None = None, cases: list[str] | None = None) -> Record:
        """``POST /api/incidents/{id}/regression-runs``: the new (or already running) regression run."""
        return self._send(calls.start_regression(incident_id, fix_run_id, before_ref, after_ref, cases))

    def get_regression_run(self, run_id: str) -> Record:
        """``GET /api/regression-runs/{id}``: per-case results and the verdict."""
        return self._send(calls.get_regression_run(run_id))

    def regression_runs(self, incident_id: str) -> list[Record]:
        """``GET /api/incidents/{id}/regression-runs``: newest first."""
        return self._send(calls.regression_runs(incident_id))

    def compare_regression(self, run_id: str) -> Record:
        """``GET /api/regression-runs/{id}/compare``: before and after side by side, per case."""
        return self._send(calls.compare_regression(run_id))

    # -- live ---------------------------------------------------------------------------------------------
    def _open_feed(self, after: str | None, read_timeout: float) -> httpx.Response:
        request = feed_request(self._http, after, read_timeout, self.timeout)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc
        if response.is_error:
            response.read()
            response.close()
            raise error_from_response(response)
        return response

    def activity(self, after: str | None = None, *, ticks: bool = False) -> ActivityStream:
        """``GET /api/activity``: entries as they happen (after the entry id ``after``, else from now on);
        ``with client.activity() as feed: for entry in feed: ...``. See :class:`ActivityStream`."""
        return ActivityStream(self._open_feed, after=after, ticks=ticks)

    def wait_for_task(self, task_id: str, timeout: float | None = None, *,
                      on_state: StateCallback | None = None) -> Record:
        """The task once it is completed, failed or cancelled; ``on_state`` hears each state on the way.
        WaitTimeout after ``timeout`` seconds (None: no limit)."""
        waited = Waited("task", task_id, FINAL_TASK_STATES, "state", timeout, on_state)
        return wait_final(self._open_feed, lambda: self.get_task(task_id), waited)

    def wait_for_fix_run(self, run_id: str, timeout: float | None = None, *,
                         on_state: StateCallback | None = None) -> Record:
        """The fix run once it is completed or failed (see :meth:`wait_for_task`)."""
        waited = Waited("fix_run", run_id, FINAL_RUN_STATES, "status", timeout, on_state)
        return wait_final(self._open_feed, lambda: self.get_fix_run(run_id), waited)

    def wait_for_regression_run(self, run_id: str, timeout: float | None = None, *,
                                on_state: StateCallback | None = None) -> Record:
        """The regression run once it is completed or failed (see :meth:`wait_for_task`)."""
        waited = Waited("regression_run", run_id, FINAL_RUN_STATES, "status", timeout, on_state)
        return wait_final(self._open_feed, lambda: self.get_regression_run(run_id), waited)
