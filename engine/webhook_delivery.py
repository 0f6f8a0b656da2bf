"""The ``deliver_webhook`` engine job: one attempt at POSTing a delivery to its subscriber.

- Idempotent: a delivery that succeeded or failed for good is not sent again when its job is redelivered; the
  attempt number comes from the delivery record, not from the message.
- Every attempt checks the URL against the SSRF guard again (:mod:`engine.outbound`), signs the body
  (:mod:`engine.webhook_signing`), POSTs with a per-attempt timeout and without following redirects, and logs
  status, HTTP code, duration and the start of the answer in the subscription's delivery log.
- 2xx succeeds. Connection errors, timeouts, 429 and 5xx retry with exponential backoff (:data:`MAX_ATTEMPTS`
  in all); any other answer (3xx, other 4xx) and a refused URL fail at once.
- Slack and Discord incoming-webhook URLs (recognised by host and path prefix, :data:`NATIVE_TARGETS`) get
  their native shapes, ``{"text": ...}`` and ``{"content": ...}``, with a one-line summary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from engine import keys, webhooks
from engine.errors import OutboundRefused
from engine.event_jobs import Retry
from engine.outbound import Resolver, check_url, resolve
from engine.store import Op, Runner
from engine.webhook_signing import signature_headers
from engine.webhooks import Delivery, Webhook

__all__ = ["MAX_ATTEMPTS", "NATIVE_TARGETS", "WebhookDelivery", "backoff_s", "native_kind", "summary_line"]

logger = logging.getLogger(__name__)

ATTEMPT_TIMEOUT_S = 10.0  # seconds each step of an attempt may take (connect, each write, each read)
MAX_ATTEMPTS = 6  # attempts in all before a retryable failure becomes final
BACKOFF_BASE_S = 1.0  # seconds before the second attempt; doubles each attempt
BACKOFF_MAX_S = 60.0  # seconds, cap on the backoff
RESPONSE_CHARS = 500  # characters of the subscriber's answer kept in the log
USER_AGENT = "taskyard-webhooks"
# (host, path prefix, shape): incoming-webhook URLs that get their service's native message shape
NATIVE_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("hooks.slack.com", "/services/", "slack"),
    ("discord.com", "/api/webhooks/", "discord"),
    ("discordapp.com", "/api/webhooks/", "discord"),
)


def backoff_s(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): 1, 2, 4, 8, 16, capped at 60."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))


def native_kind(url: str, targets: Sequence[tuple[str, str, str]] = NATIVE_TARGETS) -> str | None:
    """"slack", "discord" or None (a generic receiver) for a URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return next((kind for h, prefix, kind in targets if host == h and parts.path.startswith(prefix)), None)


def summary_line(item: Delivery) -> str:
    """One line for a chat message."""
    data = json.loads(item.data)
    if item.type.startswith("incident."):
        return (f"[taskyard/{item.project}] {item.type}: {data.get('failure_class')} - {data.get('summary')} "
                f"(incident {data.get('id')}, {data.get('count')} occurrence(s))")
    if item.type.startswith("task."):
        detail = f": {data.get('error')}" if data.get("error") else ""
        return f"[taskyard/{item.project}] {item.type}: task {data.get('task_id')} on {data.get('worker')}{detail}"
    return f"[taskyard/{item.project}] {item.type}"


class WebhookDelivery:
    """Runs delivery attempts on a sync runner. ``transport`` is the httpx seam for tests; ``native`` the
    table of chat services recognised by URL."""

    def __init__(self, runner: Runner, allow_hosts: Collection[str], *, timeout_s: float = ATTEMPT_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None, resolver: Resolver = resolve,
                 native: Sequence[tuple[str, str, str]] = NATIVE_TARGETS) -> None:
        self.runner = runner
        self.allow_hosts = tuple(allow_hosts)
        self.resolver = resolver
        self.native = tuple(native)
        self._http = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=False,
                                  headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        self._http.close()

    def deliver(self, delivery_id: str, _attempt: int = 1) -> Retry | None:
        """One attempt; a Retry when the job should run again later."""
        item = self.runner.run(webhooks.delivery(delivery_id))
        if item is None or item.status in ("succeeded", "failed"):
            return None  # expired, or settled already (a redelivered job)
        hook = self.runner.run(webhooks.get(item.webhook_id, project=item.project))
        if hook is None:
            self.runner.run(Op(int, command=("HSET", keys.key("hook_delivery", id=item.id), "status", "failed",
                                             "error", "webhook deleted")))
            return None
        attempt = item.attempts + 1
        entry: dict[str, Any] = {"delivery_id": item.id, "event": item.type, "attempt": attempt,
                                 "at": int(time.time() * 1000), "code": None, "duration_ms": 0,
                                 "response": None, "error": None}
        retryable = False
        started = time.monotonic()
        try:
            check_url(hook.url, self.allow_hosts, resolver=self.resolver)
            code, text = self._post(hook, item)
        except OutboundRefused as exc:
            entry["error"] = exc.message
        except httpx.TimeoutException:
            entry["error"], retryable = "timeout", True
        except httpx.HTTPError as exc:
            entry["error"], retryable = f"connection error: {type(exc).__name__}", True
        else:
            entry["code"], entry["response"] = code, text
            if 300 <= code < 400:
                entry["error"] = "redirect not followed"
            elif code == 429 or code >= 500:
                retryable = True
        entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        ok = entry["code"] is not None and 200 <= entry["code"] < 300
        again = retryable and attempt < MAX_ATTEMPTS
        status = "succeeded" if ok else "retrying" if again else "failed"
        entry["status"] = status
        self.runner.run(webhooks.record_attempt(item, status=status, attempt=attempt, entry=entry))
        log = logger.info if ok else logger.warning
        log("webhook delivery attempt", extra={"delivery": item.id, "webhook": hook.id, "attempt": attempt,
                                               "status": status, "code": entry["code"], "error": entry["error"]})
        if again:
            return Retry(backoff_s(attempt), attempt + 1)
        return None

    def _post(self, hook: Webhook, item: Delivery) -> tuple[int, str]:
        """POST the delivery; its status code and the start of the answer (read no further than needed)."""
        kind = native_kind(hook.url, self.native)
        if kind == "slack":
            payload: dict[str, Any] = {"text": summary_line(item)}
        elif kind == "discord":
            payload = {"content": summary_line(item)}
        else:
            payload = item.envelope()
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json",
                   **signature_headers(hook.secret, item.id, int(time.time()), body)}
        with self._http.stream("POST", hook.url, content=body, headers=headers) as answer:
            head = b""
            for chunk in answer.iter_bytes():
                head += chunk
                if len(head) >= RESPONSE_CHARS * 4:  # enough bytes for RESPONSE_CHARS characters of UTF-8
                    break
            return answer.status_code, head.decode("utf-8", "replace")[:RESPONSE_CHARS]
