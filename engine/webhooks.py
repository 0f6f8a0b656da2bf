"""The alert webhook store: subscriptions, delivery records and delivery logs. Each function returns an Op.

A subscription (``ty:webhook:<id>``) belongs to a project and names the event types it takes
(``ty:p:<project>:hooks:e:<type>`` sets index it per type; ``ty:p:<project>:hooks:task`` holds those taking a
``task.*`` event, so finishing a task costs one EXISTS when nobody listens). Its secret is stored to sign
deliveries and is never answered after the subscription is made.

A delivery (``ty:hookd:<id>``) is one event for one subscription: made with its ``deliver_webhook`` engine job
by ``webhook_emit.lua`` (see :mod:`engine.alerts`), moved on by each attempt. Each attempt is logged, newest
first, in the subscription's ``ty:webhook:<id>:log`` (capped at ``MAX_LOG``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine import keys
from engine.models import iso_ms
from engine.store import Op

__all__ = [
    "DELIVERY_STATES",
    "EVENTS",
    "INCIDENT_EVENTS",
    "MAX_LOG",
    "TASK_EVENTS",
    "TEST_EVENT",
    "Delivery",
    "Webhook",
    "create",
    "delete",
    "delivery",
    "get",
    "list_all",
    "log",
    "record_attempt",
]

INCIDENT_EVENTS = ("incident.created", "incident.regressed", "incident.resolved")
TASK_EVENTS = ("task.failed", "task.completed")
EVENTS = (*INCIDENT_EVENTS, *TASK_EVENTS, "fix_run.completed", "regression_run.completed")
TEST_EVENT = "webhook.test"  # sent by POST /api/webhooks/{id}/test only; not subscribable
DELIVERY_STATES = ("pending", "retrying", "succeeded", "failed")
MAX_LOG = 100  # delivery attempts kept per subscription; the oldest are dropped
MAX_WEBHOOKS = 100  # subscriptions listed per project at most


@dataclass(frozen=True)
class Webhook:
    id: str
    project: str
    url: str
    events: tuple[str, ...]
    classes: tuple[str, ...]  # empty: every failure class
    created_at_ms: int
    secret: str = field(repr=False)

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Webhook:
        return cls(id=h["id"], project=h["project"], url=h["url"], events=tuple(json.loads(h["events"])),
                   classes=tuple(json.loads(h.get("classes") or "[]")), created_at_ms=int(h["created_at"]),
                   secret=h.get("secret", ""))

    def to_public(self) -> dict[str, Any]:
        """What GET answers: never the secret, only whether there is one."""
        return {"id": self.id, "url": self.url, "events": list(self.events), "classes": list(self.classes),
                "has_secret": bool(self.secret), "created_at": iso_ms(self.created_at_ms)}


@dataclass(frozen=True)
class Delivery:
    id: str
    webhook_id: str
    project: str
    type: str
    created_at_ms: int
    data: str  # the event's data as JSON text
    status: str
    attempts: int

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Delivery:
        return cls(id=h["id"], webhook_id=h["webhook"], project=h["project"], type=h["type"],
                   created_at_ms=int(h["created_at"]), data=h.get("data", "{}"), status=h["status"],
                   attempts=int(h.get("attempts") or 0))

    def envelope(self) -> dict[str, Any]:
        """The body every generic receiver gets: the same bytes on every attempt."""
        return {"id": self.id, "type": self.type, "created_at": iso_ms(self.created_at_ms),
                "project": self.project, "data": json.loads(self.data)}


def _hash(raw: list[str] | dict[str, str]) -> dict[str, str]:
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True))


def create(hook: Webhook) -> Op[None]:
    """Store a subscription and index it under each of its events, in one transaction."""
    commands: list[tuple] = [
        ("HSET", keys.key("webhook", id=hook.id), "id", hook.id, "project", hook.project, "url", hook.url,
         "events", json.dumps(list(hook.events)), "classes", json.dumps(list(hook.classes)),
         "secret", hook.secret, "created_at", hook.created_at_ms),
        ("ZADD", keys.key("webhooks", project=hook.project), hook.created_at_ms, hook.id)]
    commands += [("SADD", keys.key("hooks_event", project=hook.project, event=e), hook.id) for e in hook.events]
    if any(e in TASK_EVENTS for e in hook.events):
        commands.append(("SADD", keys.key("hooks_task", project=hook.project), hook.id))
    return Op(lambda _raw: None, commands=tuple(commands))


def get(webhook_id: str, *, project: str | None = None) -> Op[Webhook | None]:
    """The subscription (with its secret), or None (none, or another project's when ``project`` is given)."""
    def parse(raw: Any) -> Webhook | None:
        h = _hash(raw)
        if not h or (project is not None and h.get("project") != project):
            return None
        return Webhook.from_hash(h)

    return Op(parse, command=("HGETALL", keys.key("webhook", id=webhook_id)))


def list_all(project: str, *, limit: int = MAX_WEBHOOKS) -> Op[list[Webhook]]:
    """The project's subscriptions, newest first."""
    return Op(lambda raw: [Webhook.from_hash(_hash(r)) for r in raw if r], script="webhook_list",
              args=(project, limit))


def delete(webhook_id: str, *, project: str) -> Op[bool]:
    """Remove a subscription and its log; False when the project has no such subscription."""
    return Op(lambda raw: bool(int(raw)), script="webhook_delete", args=(webhook_id, project))


def delivery(delivery_id: str) -> Op[Delivery | None]:
    return Op(lambda raw: Delivery.from_hash(_hash(raw)) if raw else None,
              command=("HGETALL", keys.key("hook_delivery", id=delivery_id)))


def log(webhook_id: str, *, limit: int = MAX_LOG) -> Op[list[dict[str, Any]]]:
    """The subscription's delivery attempts, newest first."""
    return Op(lambda raw: [json.loads(e) for e in raw],
              command=("LRANGE", keys.key("webhook_log", id=webhook_id), 0, limit - 1))


def record_attempt(item: Delivery, *, status: str, attempt: int, entry: dict[str, Any]) -> Op[None]:
    """An attempt's outcome: the delivery's status and attempt count, and the entry at the head of the log."""
    log_key = keys.key("webhook_log", id=item.webhook_id)
    return Op(lambda _raw: None, commands=(
        ("HSET", keys.key("hook_delivery", id=item.id), "status", status, "attempts", attempt),
        ("LPUSH", log_key, json.dumps(entry, ensure_ascii=False, separators=(",", ":"))),
        ("LTRIM", log_key, 0, MAX_LOG - 1)))
