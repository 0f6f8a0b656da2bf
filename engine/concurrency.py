"""Concurrency keys of rules (``concurrency_key`` + ``on_conflict``): claim, confirm, abandon, release.

A rule's rendered key names at most one live task at a time. Each decision is one call of ``conc.lua``, so two
events racing for the same key (two pushes to one pull request, on two replicas) cannot both take it. Waiting
dispatches are entries in a list, each carrying the task id its dispatch will admit; whenever the key is found
free with entries waiting, the first entry gets it (a "handoff", which the caller then admits), and an entry
leaves the list only when its admission is confirmed, so a crash at any point leaves it to be handed off again.
"""

from __future__ import annotations

import json
from typing import Any

from engine import keys
from engine.store import Op

__all__ = ["CLAIM_TTL_MS", "Claim", "abandon", "claim", "confirm", "defer", "entry_of", "key_of", "release"]

CLAIM_TTL_MS = 60_000  # milliseconds a claim lasts before its admission confirms it (a crash frees it then)

Claim = tuple[str, str | None, dict[str, Any] | None]  # (status, live holder, entry handed the key)


def key_of(project: str, rule: str, value: str) -> str:
    return keys.key("conc", project=project, rule=rule, value=value)


def entry_of(*, event: str, rule: str, prompt: str, value: str, task: str) -> str:
    """A waiting entry, encoded the one way the list compares it (LREM needs the same bytes)."""
    return json.dumps({"event": event, "rule": rule, "prompt": prompt, "value": value, "task": task},
                      sort_keys=True, separators=(",", ":"))


def claim(key: str, task_id: str, mode: str, entry: str) -> Op[Claim]:
    """("claimed"|"busy"|"queued"|"replaced", live holder or None, entry handed the key or None)."""
    def parse(raw: list[str]) -> Claim:
        handoff = json.loads(raw[2]) if len(raw) > 2 else None
        return raw[0], (raw[1] or None) if len(raw) > 1 else None, handoff

    return Op(parse, script="conc", args=("claim", key, key + ":wait", task_id, mode, entry, CLAIM_TTL_MS))


def confirm(key: str, task_id: str, entry: str) -> Op[bool]:
    """True when ``task_id`` still holds the key (now for good); False when it passed to a newer task."""
    return Op(lambda raw: raw[0] == "ok", script="conc",
              args=("confirm", key, key + ":wait", task_id, "", entry, CLAIM_TTL_MS))


def abandon(key: str, task_id: str, entry: str) -> Op[dict[str, Any] | None]:
    """Drop ``task_id``'s claim and entry; answers the entry handed the key next, if any."""
    return Op(_handoff, script="conc", args=("abandon", key, key + ":wait", task_id, "", entry, CLAIM_TTL_MS))


def release(key: str, task_id: str) -> Op[dict[str, Any] | None]:
    """Free the key held by a finished task; answers the entry handed the key next, if any."""
    return Op(_handoff, script="conc", args=("release", key, key + ":wait", task_id, "", "", CLAIM_TTL_MS))


def defer(key: str, task_id: str) -> Op[None]:
    """A handed-off admission was refused for now: free the key, keep the entry first in line."""
    return Op(lambda raw: None, script="conc", args=("defer", key, key + ":wait", task_id, "", "", CLAIM_TTL_MS))


def _handoff(raw: list[str]) -> dict[str, Any] | None:
    return json.loads(raw[1]) if raw[0] == "handoff" else None
