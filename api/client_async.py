"""The async Python client: :class:`AsyncClient`, the methods of :class:`api.client.Client` to ``await``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import EllipsisType
from typing import Any, TypeVar

import httpx

from api import client_calls as calls
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
from api.client_errors import error_from_response, unreachable
from api.client_feed import AsyncActivityStream, Waited, await_final

__all__ = ["AsyncClient"]

T = TypeVar("T")
Record = dict[str, Any]
StateCallback = Callable[[str], None]


class AsyncClient:
    """:class:`api.client.Client` to ``await``: the same methods, one ``httpx.AsyncClient``. Use it as
    ``async with AsyncClient(url, api_key) as client:``."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(base_url=self.url, headers=auth_headers(api_key), timeout=timeout,
                                       transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, params=call.params,
                                                json=call.body if call.has_body else None)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc
        return read_answer(call, response)

    # -- tasks and workers -----------------------------------------------------------------------------------
    async def health(self) -> Record:
        """``GET /health``: status, queue depth and cap, workers online. A degraded server answers 503: Refused."""
        return await self._send(calls.health())

    async def submit_task(self, prompt: str, *, worker: str | None = None, pool: str | None = None,
                          context: dict[str, Any] | None = None, timeout: float | str | None = None,
                          max_retries: int | None = None, idempotency_key: str | None = None) -> Record:
        """``POST /task``: the stored task (state ``pending``). ``timeout`` in seconds or a duration (``"10m"``)."""
        return await self._send(calls.submit_task(prompt, worker=worker, pool=pool, context=context,
                                                  timeout=timeout, max_retries=max_retries,
                                                  idempotency_key=idempotency_key))

    async def get_task(self, task_id: str) -> Record:
        """``GET /task/{id}``; NotFound for an unknown id."""
        return await self._send(calls.get_task(task_id))

    async def list_tasks(self, state: str | None = None, worker: str | None = None, limit: int | None = None,
                         cursor: str | None = None) -> Page:
        """``GET /tasks``: one page, newest first."""
        return await self._send(calls.list_tasks(state, worker, limit, cursor))

    async def cancel_task(self, task_id: str) -> Record:
        """``POST /task/{id}/cancel``: the task as it is after the request."""
        return await self._send(calls.cancel_task(task_id))

    async def workers(self) -> list[Record]:
        """``GET /workers``: every worker by name, with state, health and queue depth."""
        return await self._send(calls.workers())

    async def task_stats(self, minutes: int | None = None) -> list[Record]:
        """``GET /api/stats/tasks``: created, completed and failed per minute, oldest first."""
        return await self._send(calls.task_stats(minutes))

    async def iterate(self, list_method: Callable[..., Awaitable[Page]], **params: Any) -> AsyncIterator[Record]:
        """Every item of a listing: ``async for task in client.iterate(client.list_tasks, state="failed")``."""
        cursor = params.pop("cursor", None)
        while True:
            page = await list_method(**params, cursor=cursor)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # -- webhook events and traces ------------------------------------------------------------------------
    async def events(self, state: str | None = None, source: str | None = None, limit: int | None = None,
                     cursor: str | None = None) -> Page:
        """``GET /events``: webhook events, newest first, without payloads."""
        return await self._send(calls.events(state, source, limit, cursor))

    async def get_event(self, event_id: str) -> Record:
        """``GET /event/{id}``: the event with payload, matches, linked tasks and history."""
        return await self._send(calls.get_event(event_id))

    async def replay_event(self, event_id: str) -> Record:
        """``POST /api/events/{id}/replay``: the new event that runs the stored one's matching again."""
        return await self._send(calls.replay_event(event_id))

    async def test_rules(self, source: str, payload: Any, event_type: str | None = None,
                         headers: dict[str, str] | None = None) -> Record:
        """``POST /api/rules/test``: which rules a delivery would match, why each other one would not, and the
        rendered prompts; nothing is stored or dispatched."""
        return await self._send(calls.test_rules(source, payload, event_type, headers))

    async def get_trace(self, trace_id: str) -> Record:
        """``GET /api/traces/{id}``: the trace's summary (status, events, tokens, cost)."""
        return await self._send(calls.get_trace(trace_id))

    async def trace_events(self, trace_id: str, after_seq: int = 0, limit: int | None = None) -> list[Record]:
        """``GET /api/traces/{id}/events``: events with seq > ``after_seq``, in seq order."""
        return await self._send(calls.trace_events(trace_id, after_seq, limit))

    async def sessions(self, status: str | None = None, agent: str | None = None, limit: int | None = None,
                       cursor: str | None = None) -> Page:
        """``GET /api/sessions``: traces, newest first."""
        return await self._send(calls.sessions(status, agent, limit, cursor))

    # -- incidents, fix runs, regression runs ---------------------------------------------------------------
    async def incidents(self, status: str | None = None, failure_class: str | None = None, worker: str | None = None,
                        limit: int | None = None, cursor: str | None = None) -> Page:
        """``GET /api/incidents``: newest activity first. With several filters a page may be short: iterate."""
        return await self._send(calls.incidents(status, failure_class, worker, limit, cursor))

    async def get_incident(self, incident_id: str) -> Record:
        """``GET /api/incidents/{id}``: with evidence, playbook and history."""
        return await self._send(calls.get_incident(incident_id))

    async def update_incident(self, incident_id: str, status: str | None = None,
                              owner: str | None | EllipsisType = ...) -> Record:
        """``PATCH /api/incidents/{id}``: triage. ``owner=None`` clears the owner; leave it out to keep it."""
        return await self._send(calls.update_incident(incident_id, status, owner))

    async def start_fix(self, incident_id: str, repo: str | None = None, base_ref: str | None = None,
                        runner: str | None = None) -> Record:
        """``POST /api/incidents/{id}/fix-agent``: the new (or already running) fix run."""
        return await self._send(calls.start_fix(incident_id, repo, base_ref, runner))

    async def get_fix_run(self, run_id: str) -> Record:
        """``GET /api/fix-runs/{id}``."""
        return await self._send(calls.get_fix_run(run_id))

    async def fix_runs(self, incident_id: str) -> list[Record]:
        """``GET /api/incidents/{id}/fix-runs``: newest first."""
        return await self._send(calls.fix_runs(incident_id))

    async def start_regression(self, incident_id: str, fix_run_id: str | None = None, before_ref: str | None = None,
                               after_ref: str | None = None, cases: list[str] | None = None) -> Record:
        """``POST /api/incidents/{id}/regression-runs``: the new (or already running) regression run."""
        return await self._send(calls.start_regression(incident_id, fix_run_id, before_ref, after_ref, cases))

    async def get_regression_run(self, run_id: str) -> Record:
        """``GET /api/regression-runs/{id}``: per-case results and the verdict."""
        return await self._send(calls.get_regression_run(run_id))

    async def regression_runs(self, incident_id: str) -> list[Record]:
        """``GET /api/incidents/{id}/regression-runs``: newest first."""
        return await self._send(calls.regression_runs(incident_id))

    async def compare_regression(self, run_id: str) -> Record:
        """``GET /api/regression-runs/{id}/compare``: before and after side by side, per case."""
        return await self._send(calls.compare_regression(run_id))

    # -- live ---------------------------------------------------------------------------------------------
    async def _open_feed(self, after: str | None, read_timeout: float) -> httpx.Response:
        request = feed_request(self._http, after, read_timeout, self.timeout)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc
        if response.is_error:
            await response.aread()
            await response.aclose()
            raise error_from_response(response)
        return response

    def activity(self, after: str | None = None, *, ticks: bool = False) -> AsyncActivityStream:
        """``GET /api/activity``: entries as they happen (after the entry id ``after``, else from now on);
        ``async with client.activity() as feed: async for entry in feed: ...``."""
        return AsyncActivityStream(self._open_feed, after=after, ticks=ticks)

    async def wait_for_task(self, task_id: str, timeout: float | None = None, *,
                            on_state: StateCallback | None = None) -> Record:
        """The task once it is completed, failed or cancelled; ``on_state`` hears each state on the way.
        WaitTimeout after ``timeout`` seconds (None: no limit)."""
        waited = Waited("task", task_id, FINAL_TASK_STATES, "state", timeout, on_state)
        return await await_final(self._open_feed, lambda: self.get_task(task_id), waited)

    async def wait_for_fix_run(self, run_id: str, timeout: float | None = None, *,
                               on_state: StateCallback | None = None) -> Record:
        """The fix run once it is completed or failed (see :meth:`wait_for_task`)."""
        waited = Waited("fix_run", run_id, FINAL_RUN_STATES, "status", timeout, on_state)
        return await await_final(self._open_feed, lambda: self.get_fix_run(run_id), waited)

    async def wait_for_regression_run(self, run_id: str, timeout: float | None = None, *,
                                      on_state: StateCallback | None = None) -> Record:
        """The regression run once it is completed or failed (see :meth:`wait_for_task`)."""
        waited = Waited("regression_run", run_id, FINAL_RUN_STATES, "status", timeout, on_state)
        return await await_final(self._open_feed, lambda: self.get_regression_run(run_id), waited)
