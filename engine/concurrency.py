"""Concurrency keys of rules (``concurrency_key`` + ``on_conflict``): claim, confirm, abandon, release, defer.

A rule's rendered key names at most one live task at a time. Each decision is one call of ``conc.lua`` (its
header says exactly what each does), so two events racing for the same key (two pushes to one pull request, on
two replicas) cannot both take it. Waiting dispatches are entries in a list, each carrying the task id its
dispatch will admit; whenever the key is found free with entries waiting, the first entry gets it (a
"handoff", which the caller then admits), and an entry leaves the list only when its admission is confirmed or
abandoned, so a crash at any point leaves it to be handed off again (by a release, a claim, or the sweep).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine import keys
from engine.clock import now_ms
from engine.store import Op

__all__ = ["CLAIM_TTL_MS", "Claim", "abandon", "claim", "confirm", "defer", "entry_of", "key_of", "release"]

CLAIM_TTL_MS = 60_000  # milliseconds a claim counts as live before its task exists (a crash frees it then)

Claim = tuple[str, str | None, dict[str, Any] | None]  # (status, live holder, entry handed the key)


def key_of(project: str, rule: str, value: str) -> str:
    """The key of one rendered value. The value is hashed: it is text from a payload (a title could be
    ``x:wait`` and land on another key's wait list)."""
    digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]
    return keys.key("conc", project=project, rule=rule, value=digest)


def entry_of(*, event: str, rule: str, value: str, task: str) -> str:
    """A waiting entry, encoded the one way the list compares it. The prompt is kept apart (it may differ
    between tries of one dispatch, when a lazily fetched diff changed); the task id is the identity."""
    return json.dumps({"event": event, "rule": rule, "value": value, "task": task}, sort_keys=True,
                      separators=(",", ":"))


def _call(op: str, key: str, task_id: str, *, mode: str = "", entry: str = "", prompt: str = "") -> tuple:
    return ("conc", (op, key, key + ":wait", task_id, mode, entry, CLAIM_TTL_MS, now_ms(), prompt))


def claim(key: str, task_id: str, mode: str, entry: str, prompt: str) -> Op[Claim]:
    """("claimed"|"busy"|"queued"|"replaced", live holder or None, entry handed the key or None)."""
    def parse(raw: list[str]) -> Claim:
        handoff = json.loads(raw[2]) if len(raw) > 2 else None
        return raw[0], (raw[1] or None) if len(raw) > 1 else None, handoff

    script, args = _call("claim", key, task_id, mode=mode, entry=entry, prompt=prompt)
    return Op(parse, script=script, args=args)


def confirm(key: str, task_id: str, entry: str) -> Op[tuple[bool, dict[str, Any] | None]]:
    """(still held, entry handed the key): not held when the key passed to a newer task (cancel_running); an
    entry is handed the key when the admitted task turned out to be over already (a duplicate admission)."""
    def parse(raw: list[str]) -> tuple[bool, dict[str, Any] | None]:
        return raw[0] != "lost", (json.loads(raw[1]) if raw[0] == "handoff" else None)

    script, args = _call("confirm", key, task_id, entry=entry)
    return Op(parse, script=script, args=args)


def abandon(key: str, task_id: str, entry: str) -> Op[dict[str, Any] | None]:
    """Drop ``task_id``'s entry (and its claim); answers the entry handed the key next, if any."""
    script, args = _call("abandon", key, task_id, entry=entry)
    return Op(_handoff, script=script, args=args)


def release(key: str, task_id: str) -> Op[dict[str, Any] | None]:
    """Free the key held by a finished task (or, with ``task_id`` "", poke a key whose holder is gone);
    answers the entry handed the key next, if any."""
    script, args = _call("release", key, task_id)
    return Op(_handoff, script=script, args=args)


def defer(key: str, task_id: str) -> Op[None]:
    """A handed-off admission was refused for now: free the key, keep the entry first in line."""
    script, args = _call("defer", key, task_id)
    return Op(lambda raw: None, script=script, args=args)


def _handoff(raw: list[str]) -> dict[str, Any] | None:
    return json.loads(raw[1]) if raw[0] == "handoff" else None
