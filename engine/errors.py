"""Taskyard's one exception root.

Every error Taskyard raises on purpose is a :class:`TaskyardError`. The API maps each class to an HTTP
status and mecha's message in one place (``api/errors.py``); nothing else builds error responses.

::

    TaskyardError
    ├── ConfigError                 the configuration is invalid (lists every issue with file and key)
    ├── StoreUnavailable            Redis cannot be reached or answered with an error
    ├── ValidationFailed            a request is malformed (message is mecha's, e.g. "prompt is required")
    │   ├── InvalidBody             "invalid request body", the reason in ``detail``
    │   ├── WebhookInvalid          a webhook delivery failed its signature or shape check ("webhook validation failed")
    │   ├── Unprocessable           a well-formed request asking for something impossible (422)
    │   ├── PayloadTooLarge         a body over its limit (413)
    │   │   └── ArtifactTooLarge    an artifact upload over `artifacts.max_bytes`
    │   ├── UnsupportedContentType  an artifact whose content type is not allowed (415)
    │   └── OutboundRefused     an alert webhook URL that is not http(s) or reaches a private address (SSRF)
    ├── NotFound                    a record does not exist (or belongs to another project)
    │   ├── TaskNotFound / EventNotFound / WorkerNotFound / TraceNotFound / ArtifactNotFound
    │   ├── IncidentNotFound / WebhookNotFound / FixRunNotFound / RegressionRunNotFound
    │   └── UnknownSource           a webhook for a source the config does not define
    ├── Conflict                    the request contradicts stored state (e.g. a worker name already taken)
    ├── AdmissionRefused            the dispatcher would not take the task; nothing was stored
    │   ├── NoOnlineWorkers
    │   └── QueueFull
    ├── Unauthorized / Forbidden    authentication or scope failures
    │   └── InvalidSignature        a signed artifact URL that is tampered with or expired (403)
    ├── RateLimited                 a caller used up its rate limit (429 with Retry-After)
    ├── BackendError                a worker backend could not run a task (bad command, unreachable endpoint)
    ├── GitHubError                 a GitHub API call failed; ``retryable`` says whether a later try may work
    ├── GitError                    a git operation of the fix agent or replay failed (bad repo, unknown ref)
    │   ├── PathRefused             a proposed change touches paths outside the repo's ``allowed_paths``
    │   └── UnusableDiff            a proposed diff is empty, malformed or does not apply to the base
    ├── TemplateInvalid             a prompt template does not compile (found when the config is checked)
    ├── TemplateFailed              a template could not render for one event (undefined variable, unsafe access)
    └── FilterInvalid               a rule's filter has a bad shape (found when the config is checked)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AdmissionRefused",
    "ArtifactNotFound",
    "ArtifactTooLarge",
    "BackendError",
    "ConfigError",
    "ConfigIssue",
    "EventNotFound",
    "Conflict",
    "FilterInvalid",
    "FixRunNotFound",
    "Forbidden",
    "GitError",
    "GitHubError",
    "IncidentNotFound",
    "InvalidBody",
    "InvalidSignature",
    "NoOnlineWorkers",
    "NotFound",
    "OutboundRefused",
    "PathRefused",
    "PayloadTooLarge",
    "QueueFull",
    "RateLimited",
    "RegressionRunNotFound",
    "StoreUnavailable",
    "TaskNotFound",
    "TraceNotFound",
    "TaskyardError",
    "TemplateFailed",
    "TemplateInvalid",
    "Unauthorized",
    "UnknownSource",
    "Unprocessable",
    "UnsupportedContentType",
    "UnusableDiff",
    "ValidationFailed",
    "WebhookInvalid",
    "WebhookNotFound",
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
    """The request is malformed; the message says which rule it broke (mecha's words, kept verbatim so a client
    may compare them), and ``detail``, when set, says exactly what was wrong (answered as ``"detail"``)."""

    message = "invalid request body"

    def __init__(self, message: str | None = None, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        if detail:
            self.args = (f"{self.message}: {detail}",)  # str(exc), for logs and records: the whole reason


class InvalidBody(ValidationFailed):
    """A body that is not what the route takes: always mecha's exact ``invalid request body``, with the field and
    the reason in ``detail`` (``unknown field 'x'``, ``timeout must be seconds or a duration like 30s``)."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail=detail)


class WebhookInvalid(ValidationFailed):
    """A webhook delivery failed verification (signature, required headers, JSON body). The client only sees
    mecha's ``webhook validation failed``; ``reason`` says which check failed, for the logs: check the source's
    ``secret`` and that the sender posts ``application/json``."""

    message = "webhook validation failed"

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class NotFound(TaskyardError):
    """The record does not exist, or it belongs to a project the caller's key cannot see."""

    message = "not found"


class TaskNotFound(NotFound):
    """No task with that id in the caller's project."""

    message = "task not found"


class EventNotFound(NotFound):
    message = "event not found"


class TraceNotFound(NotFound):
    message = "trace not found"


class IncidentNotFound(NotFound):
    """No incident with that id in the caller's project. List them with GET /api/incidents."""

    message = "incident not found"


class WebhookNotFound(NotFound):
    """No alert webhook with that id in the caller's project. List them with GET /api/webhooks."""

    message = "webhook not found"


class OutboundRefused(ValidationFailed):
    """An alert webhook URL Taskyard will not call: not http(s), a host that does not resolve, or one that
    resolves to a private, loopback, link-local, multicast, unspecified or reserved address (SSRF guard). If the
    target is meant to be internal, name its host or IP in ``outbound.allow_hosts``."""

    message = "webhook url refused"


class UnknownSource(NotFound):
    """A webhook was posted to a source the config does not define (``sources:``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown source: {name}")


class Unprocessable(ValidationFailed):
    """The request is well-formed but asks for something that cannot be (an unknown incident status, a PATCH
    body without a field to change); answered 422. The message names the field and what it accepts."""

    message = "unprocessable request"


class PayloadTooLarge(ValidationFailed):
    """A request body is over its limit (a webhook source's ``max_body_bytes``); answered 413 unread."""

    message = "request body too large"


class ArtifactTooLarge(PayloadTooLarge):
    """An artifact upload passed ``artifacts.max_bytes``; nothing was kept. Raise the limit in the config or
    upload a smaller file (compress it: application/gzip and application/zip are allowed by default)."""

    message = "artifact too large"


class UnsupportedContentType(ValidationFailed):
    """An artifact's content type is not in ``artifacts.content_types``. Send the right ``Content-Type`` (the
    header of a raw body, or of the file part of a multipart body), or add the type to the allowlist."""

    def __init__(self, content_type: str) -> None:
        super().__init__(f"unsupported content type: {content_type}")
        self.content_type = content_type


class ArtifactNotFound(NotFound):
    """No artifact with that id in the caller's project."""

    message = "artifact not found"


class FixRunNotFound(NotFound):
    """No fix run with that id in the caller's project. List an incident's runs with
    GET /api/incidents/{id}/fix-runs."""

    message = "fix run not found"


class RegressionRunNotFound(NotFound):
    """No regression run with that id in the caller's project."""

    message = "regression run not found"


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


class RateLimited(TaskyardError):
    """The caller's API key, project or webhook source used up its ``rate_limit``. Retry after ``retry_after``
    seconds; raise the limit (``burst``, ``per_second``) in the config if the traffic is expected."""

    message = "rate limit exceeded"

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__()
        self.retry_after = max(1, retry_after)  # seconds


class InvalidSignature(Forbidden):
    """A signed artifact URL whose signature does not match, or whose time ran out. Ask
    ``GET /artifacts/{id}`` (with an API key) for a fresh one."""

    message = "invalid or expired signature"


class BackendError(TaskyardError):
    """A worker backend could not run the task (command not found, endpoint unreachable, bad handler path)."""

    message = "backend error"


class GitHubError(TaskyardError):
    """A GitHub API call failed; the message names the call, the status and what to check (the token's
    permissions, the repository, the number). ``retryable`` is true for rate limits, 5xx answers and network
    errors: write-back keeps its place and tries again later. The message never contains the token."""

    message = "github api error"

    def __init__(self, message: str | None = None, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class GitError(TaskyardError):
    """A git operation of the fix agent or of regression replay failed: the configured ``repo.path`` is not a
    git repository, a ref does not exist, a branch name is taken, or git itself failed. The message names the
    repository and what to check."""

    message = "git operation failed"


class PathRefused(GitError):
    """A proposed change touches paths outside the repository's ``allowed_paths`` (or inside ``.git``);
    nothing was committed. ``paths`` lists the refused ones. Widen ``allowed_paths`` if the change is wanted."""

    def __init__(self, paths: list[str]) -> None:
        shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
        super().__init__(f"changes outside allowed_paths refused: {shown}")
        self.paths = paths


class UnusableDiff(GitError):
    """A proposed diff cannot be used: it is empty, not a unified diff, or does not apply to the base ref
    (the message carries git's reason). Nothing was committed."""

    message = "unusable diff"


class TemplateInvalid(TaskyardError):
    """A prompt or concurrency-key template does not compile. The message names the line and the syntax problem;
    fix the template (mecha's ``{{.var}}`` and Jinja's ``{{ var }}`` both work, Go's ``{{if}}``/``{{range}}`` do
    not: use Jinja's ``{% if %}``/``{% for %}``)."""

    message = "invalid template"


class TemplateFailed(TaskyardError):
    """A template could not render for one event: a variable it uses is undefined, it tried an unsafe access, or
    the result passed the size cap. Guard optional values with ``{{ x | default('') }}`` or ``{% if x is defined %}``.
    """

    message = "template failed"


class FilterInvalid(TaskyardError):
    """A rule's filter has a bad shape. ``problems`` lists ``(key, reason)`` pairs, key being the dotted config
    location of each bad clause; fix each one (a value is a scalar or a non-empty list, ``not:`` takes a mapping)."""

    message = "invalid filter"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in problems) or self.message)
