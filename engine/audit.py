"""The audit trail: what the engine did with each event, as a capped Redis stream, newest first on read.

Actions: ``event_received``, ``event_duplicate``, ``rule_matched``, ``rule_skipped``, ``task_sent``,
``dispatch_refused``, ``event_failed``, ``policy_decision``, ``write_back``, ``write_back_failed``. Every
detail passes through :func:`engine.registry.redact` before it is stored, so a token never lands here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engine import keys
from engine.errors import TaskyardError
from engine.models import iso_ms
from engine.registry import redact
from engine.store import Op

__all__ = ["AUDIT_MAX_ENTRIES", "Entry", "Trail", "encode", "matches", "origin", "page", "page_forward",
           "record_many"]

logger = logging.getLogger(__name__)

AUDIT_MAX_ENTRIES = 100_000  # entries kept (approximately: XADD MAXLEN ~)
SCAN_BATCH = 1000  # entries read per round trip while filtering
MAX_SCANNED = 20_000  # entries a filtered query reads at most before answering with what it found
# An event's or task's entries are read from its creation on, less this margin: stream ids come from the Redis
# server's clock, created_at from the clock of the process that made the record.
CLOCK_MARGIN_MS = 60_000


@dataclass(frozen=True)
class Entry:
    id: str
    at_ms: int
    action: str
    project: str
    event: str | None
    task: str | None
    detail: dict[str, Any]

    def to_public(self) -> dict[str, Any]:
        return {"id": self.id, "at": iso_ms(self.at_ms), "action": self.action, "event": self.event,
                "task": self.task, "detail": self.detail}


def encode(action: str, detail: dict[str, Any]) -> tuple[str, str, str, str]:
    """(action, event, task, redacted detail JSON) of one entry; ``detail`` may name ``event`` and ``task``."""
    rest = dict(detail)
    return (action, rest.pop("event", None) or "", rest.pop("task", None) or "",
            json.dumps(redact(rest), separators=(",", ":"), default=str))


def record_many(entries: list[tuple[str, dict[str, Any]]], *, project: str) -> Op[list[str]]:
    """Several entries (action, detail with optional ``event`` and ``task``) of one project in one round trip."""
    commands = []
    for action, detail in entries:
        action, event, task, text = encode(action, detail)
        commands.append(("XADD", keys.key("audit"), "MAXLEN", "~", AUDIT_MAX_ENTRIES, "*", "action", action,
                         "project", project, "event", event, "task", task, "detail", text))
    return Op(list, commands=tuple(commands))


def page(*, before: str | None, since_ms: int | None, count: int) -> Op[list[Entry]]:
    """Up to ``count`` entries newest first, older than stream id ``before`` and not older than ``since_ms``."""
    high = f"({before}" if before else "+"
    low = str(since_ms) if since_ms is not None else "-"
    return Op(lambda raw: [_entry(i, f) for i, f in raw],
              command=("XREVRANGE", keys.key("audit"), high, low, "COUNT", count))


def page_forward(*, after: str | None, since_ms: int, count: int) -> Op[list[Entry]]:
    """Up to ``count`` entries oldest first, newer than stream id ``after``, not older than ``since_ms``."""
    low = f"({after}" if after else str(since_ms)
    return Op(lambda raw: [_entry(i, f) for i, f in raw],
              command=("XRANGE", keys.key("audit"), low, "+", "COUNT", count))


def origin(kind: str, record_id: str) -> Op[tuple[str | None, int | None]]:
    """(project, created_at ms) of the event or task ``record_id`` (``kind`` ``event`` or ``task``), or
    (None, None) when there is no such record: where its audit entries start."""
    def parse(raw: Any) -> tuple[str | None, int | None]:
        project, created = raw
        return (project, int(float(created))) if project and created else (None, None)
    return Op(parse, command=("HMGET", keys.key(kind, id=record_id), "project", "created_at"))


def matches(entry: Entry, *, project: str, event: str | None, task: str | None, action: str | None) -> bool:
    return (entry.project == project and (event is None or entry.event == event)
            and (task is None or entry.task == task) and (action is None or entry.action == action))


def _entry(entry_id: str, flat: Any) -> Entry:
    f = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))
    return Entry(id=entry_id, at_ms=int(entry_id.split("-")[0]), action=f.get("action", ""),
                 project=f.get("project", ""),
                 event=f.get("event") or None, task=f.get("task") or None,
                 detail=json.loads(f["detail"]) if f.get("detail") else {})


class Trail:
    """The audit entries of the jobs running on each thread: collected while a job runs, then written in one
    round trip when it ends (:meth:`batch`), or handed to the job's last Lua call (:meth:`take`). Entries go to
    the project of the event the job read (``project``)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def project(self) -> str:
        return getattr(self._local, "project", "")

    @project.setter
    def project(self, value: str) -> None:
        self._local.project = value

    def add(self, action: str, **detail: Any) -> None:
        pending = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        pending.append((action, detail))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        """The pending entries, to ride along with the job's last write."""
        pending, self._local.pending = getattr(self._local, "pending", []), []
        return pending

    @contextmanager
    def batch(self, runner: Any) -> Iterator[None]:
        """Around one job: starts an empty trail, writes what is left of it at the end (best effort: the work
        itself is already recorded)."""
        self._local.pending, self._local.project = [], ""
        try:
            yield
        finally:
            pending = self.take()
            if pending:
                try:
                    runner.run(record_many(pending, project=self.project))
                except TaskyardError:
                    logger.warning("audit entries lost", extra={"entries": len(pending)})
