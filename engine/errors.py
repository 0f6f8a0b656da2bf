"""Taskyard's one exception root.

Every error Taskyard raises on purpose is a :class:`TaskyardError`. The API maps each class to an HTTP
status and mecha's message in one place (``api/errors.py``); nothing else builds error responses.

::

    TaskyardError
    ├── ConfigError                 the configuration is invalid (lists every issue with file and key)
    ├── StoreUnavailable            Redis cannot be reached or answered with an error
    ├── ValidationFailed            a request is malformed (message is mecha's, e.g. "prompt is required")
    ├── NotFound                    a record does not exist (or belongs to another project)
    │   ├── TaskNotFound
    │   └── WorkerNotFound
    ├── Conflict                    the request contradicts stored state (e.g. a worker name already taken)
    ├── AdmissionRefused            the dispatcher would not take the task; nothing was stored
    │   ├── NoOnlineWorkers
    │   └── QueueFull
    ├── Unauthorized / Forbidden    authentication or scope failures
    └── BackendError                a worker backend could not run a task (bad command, unreachable endpoint)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AdmissionRefused",
    "BackendError",
    "ConfigError",
    "ConfigIssue",
    "Conflict",
    "Forbidden",
    "NoOnlineWorkers",
    "NotFound",
    "QueueFull",
    "StoreUnavailable",
    "TaskNotFound",
    "TaskyardError",
    "Unauthorized",
    "ValidationFailed",
    "WorkerNotFound",
]


class TaskyardError(Exception):
    """Root of every error Taskyard raises on purpose. ``message`` is safe to show to a client."""

    message: str = "internal error"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration: the file, the dotted key inside it, and why it is wrong."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.reason}"


class ConfigError(TaskyardError):
    """The configuration is invalid. Fix each listed key in the named file; `taskyard config check` lists them."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("invalid configuration:\n" + "\n".join(f"  {i}" for i in issues))


class StoreUnavailable(TaskyardError):
    """Redis could not be reached. Check `redis_url` and that the server is up; the API answers 503 meanwhile."""

    message = "store unavailable"


class ValidationFailed(TaskyardError):
    """The request is malformed; the message says which rule it broke."""

    message = "invalid request body"


class NotFound(TaskyardError):
    """The record does not exist, or it belongs to a project the caller's key cannot see."""

    message = "not found"


class TaskNotFound(NotFound):
    """No task with that id in the caller's project."""

    message = "task not found"


class WorkerNotFound(NotFound):
    """No worker definition with that name. List them with GET /workers."""

    message = "worker not found"


class Conflict(TaskyardError):
    """The request contradicts stored state; the message says which."""

    message = "conflict"


class AdmissionRefused(TaskyardError):
    """The dispatcher refused the task and stored nothing. ``decision`` tells which workers were tried and why."""

    def __init__(self, message: str | None = None, *, decision: dict | None = None) -> None:
        super().__init__(message)
        self.decision = decision or {}


class NoOnlineWorkers(AdmissionRefused):
    """No worker that could take the task is online. Start a `taskyard worker` process, or name a worker."""

    message = "no online workers"


class QueueFull(AdmissionRefused):
    """Every candidate worker's queue is at its `max_queue_depth`. Retry after `retry_after` seconds."""

    message = "task queue full"
    retry_after: int = 1


class Unauthorized(TaskyardError):
    """No valid API key was given. Send `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

    message = "unauthorized"


class Forbidden(TaskyardError):
    """The API key is valid but lacks the scope this route needs (admin, submit, ingest or read)."""

    message = "forbidden"


class BackendError(TaskyardError):
    """A worker backend could not run the task (command not found, endpoint unreachable, bad handler path)."""

    message = "backend error"
