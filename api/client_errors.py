"""The Python client's one exception root, built from the server's ``{"error": ...}`` answers.

::

    ClientError              any failed call: ``status`` (None when no HTTP answer), ``message``, ``body``
    ├── NotFound             404: the task, event, incident, run or worker does not exist (or is another project's)
    ├── Unauthorized         401 / 403: no key, a wrong key, or a key without the route's scope
    ├── Refused              other 4xx, and 503: the server understood the request and declined it
    ├── ServerError          other 5xx: the server failed; its log line carries the answer's ``request_id``
    ├── ServerUnreachable    no HTTP answer at all: connection refused, DNS, timeout, a dropped connection
    └── WaitTimeout          a ``wait_for_*`` call reached its deadline before the task or run ended
"""

from __future__ import annotations

import re
from typing import Any

import httpx

__all__ = [
    "ClientError",
    "NotFound",
    "Refused",
    "ServerError",
    "ServerUnreachable",
    "Unauthorized",
    "WaitTimeout",
    "error_from_response",
    "unreachable",
]

_ERRNO = re.compile(r"^\[Errno -?[0-9]+\] ")  # "[Errno 111] Connection refused" -> "Connection refused"


class ClientError(Exception):
    """A call to the Taskyard server failed. ``message`` is the server's ``error`` text (mecha's messages, e.g.
    ``task not found``) or what went wrong on the way; ``body`` the parsed answer, when there was one."""

    def __init__(self, status: int | None, message: str, body: Any = None, *,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.retry_after = retry_after  # seconds, from the answer's Retry-After header

    def __str__(self) -> str:
        return self.message


class NotFound(ClientError):
    """404: check the id (ids are 32 hex characters) and that the API key belongs to the record's project."""


class Unauthorized(ClientError):
    """401 or 403: pass ``api_key`` (or set ``TASKYARD_API_KEY`` for the CLI) with a key that has the scope the
    route needs (read, submit, ingest or admin)."""


class Refused(ClientError):
    """The server declined the request: a bad value (400, 422), a conflict (409), a full queue or a rate limit
    (429: retry after ``retry_after`` seconds), or no online worker (503). The message says which."""


class ServerError(ClientError):
    """The server failed (5xx). Look for the answer's ``request_id`` in the server's log."""


class ServerUnreachable(ClientError):
    """No HTTP answer: check the URL (``--url`` / ``TASKYARD_URL``) and that ``taskyard serve`` is running."""


class WaitTimeout(ClientError, TimeoutError):
    """A wait reached its deadline; the task or run is still going. Wait again, or read it later."""


def _message(response: httpx.Response, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        detail = body.get("detail")
        return body["error"] + (f": {detail}" if isinstance(detail, str) and detail else "")
    text = " ".join(response.text.split())[:200]
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


def error_from_response(response: httpx.Response) -> ClientError:
    """The error for an answer that is not a success (the body must have been read)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    status = response.status_code
    retry = response.headers.get("retry-after")
    retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
    cls: type[ClientError]
    if status == 404:
        cls = NotFound
    elif status in (401, 403):
        cls = Unauthorized
    elif 400 <= status < 500 or status == 503:
        cls = Refused
    else:
        cls = ServerError
    return cls(status, _message(response, body), body, retry_after=retry_after)


def unreachable(url: str, exc: httpx.TransportError) -> ServerUnreachable:
    """One line naming the URL and the reason, from an httpx transport error."""
    if isinstance(exc, httpx.TimeoutException):
        reason = "timed out"
    elif isinstance(exc, httpx.LocalProtocolError):  # its text quotes the offending header: maybe the key
        reason = "the request could not be sent (a header holds characters HTTP cannot carry)"
    else:
        reason = _ERRNO.sub("", str(exc).strip().split("\n")[-1]) or type(exc).__name__
    return ServerUnreachable(None, f"cannot reach {url}: {reason}")
