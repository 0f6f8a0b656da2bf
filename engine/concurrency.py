"""Concurrency keys of rules (``concurrency_key`` + ``on_conflict``): claim, confirm, abandon, release.

A rule's rendered key names at most one live task at a time. Each decision is one call of ``conc.lua``, so two
events racing for the same key (two pushes to one pull request, on two replicas) cannot both take it, and a
dispatch queued behind a holder is always handed on when the holder's ``task_finished`` releases the key.
"""

from __future__ import annotations

import json
from typing import Any

from engine import keys
from engine.store import Op

__all__ = ["CLAIM_TTL_MS", "abandon", "claim", "confirm", "key_of", "release"]

CLAIM_TTL_MS = 60_000  # milliseconds a claim lasts before its admission confirms it (a crash frees it then)


def key_of(project: str, rule: str, value: str) -> str:
    return keys.key("conc", project=project, rule=rule, value=value)


def claim(key: str, task_id: str, mode: str, waiting: dict[str, Any]) -> Op[tuple[str, str | None]]:
    """("claimed", None) | ("busy", holder) | ("queued", holder) | ("replaced", holder)."""
    return Op(_pair, script="conc", args=("claim", key, key + ":wait", task_id, mode,
                                          json.dumps(waiting, separators=(",", ":")), CLAIM_TTL_MS))


def confirm(key: str, task_id: str) -> Op[bool]:
    """True when ``task_id`` still holds the key (now for good); False when it passed to a newer task."""
    return Op(lambda raw: raw[0] == "ok", script="conc", args=("confirm", key, key + ":wait", task_id, "", "", 0))


def abandon(key: str, task_id: str) -> Op[None]:
    return Op(lambda raw: None, script="conc", args=("abandon", key, key + ":wait", task_id, "", "", 0))


def release(key: str, task_id: str) -> Op[dict[str, Any] | None]:
    """Free the key held by a finished task; answers the next waiting dispatch, if any."""
    def parse(raw: list[str]) -> dict[str, Any] | None:
        return json.loads(raw[1]) if raw[0] == "next" else None

    return Op(parse, script="conc", args=("release", key, key + ":wait", task_id, "", "", 0))


def _pair(raw: list[str]) -> tuple[str, str | None]:
    return raw[0], (raw[1] if len(raw) > 1 else None)
