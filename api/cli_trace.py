"""``taskyard trace ID``: a trace as a readable timeline, one row per event: seq, time since the first event,
type, tool or model, tokens, cost, and what went wrong (errors, failed tool results, a failed end).

Tokens and cost are read where docs/api.md says the server reads them: ``tokens_in`` / ``input_tokens`` /
``prompt_tokens`` and ``tokens_out`` / ``output_tokens`` / ``completion_tokens``, at the top of the payload or in
``payload.usage``; ``cost_usd``."""

from __future__ import annotations

import json
from typing import Any

from api.cli_render import Column, Output, clip, parse_time

__all__ = ["render_timeline", "timeline_rows"]

_IN = ("tokens_in", "input_tokens", "prompt_tokens")
_OUT = ("tokens_out", "output_tokens", "completion_tokens")
_FAILED_END = frozenset({"failed", "crashed", "timeout", "cancelled"})
DETAIL_CHARS = 80  # characters of an event's detail in a row


def _count(payload: dict[str, Any], names: tuple[str, ...]) -> int | None:
    usage = payload.get("usage")
    for where in (payload, usage if isinstance(usage, dict) else {}):
        for name in names:
            value = where.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _error_of(kind: str, payload: dict[str, Any]) -> str | None:
    """What went wrong in this event, or None."""
    if kind == "error":
        found = payload.get("message") or payload.get("error") or payload
        return found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)
    if kind == "session_end" and payload.get("status") in _FAILED_END:
        return f"{payload['status']}: {payload.get('error') or ''}".rstrip(": ")
    if kind == "tool_result" and (payload.get("error") or payload.get("ok") is False):
        return str(payload.get("error") or "tool failed")
    if kind == "validator_check" and payload.get("passed") is False:
        return str(payload.get("reason") or payload.get("message") or "check failed")
    return None


def _detail(kind: str, payload: dict[str, Any]) -> str:
    if kind in ("tool_call", "tool_result") and "args" in payload:
        return json.dumps(payload["args"], ensure_ascii=False, separators=(",", ":"))
    if kind == "session_end":
        return str(payload.get("status") or "completed")
    if kind == "task_started":
        return f"attempt {payload.get('attempt', 1)}"
    rest = {k: v for k, v in payload.items() if k not in ("tool", "name", "model", "usage", "cost_usd", *_IN, *_OUT)}
    return json.dumps(rest, ensure_ascii=False, separators=(",", ":")) if rest else ""


def timeline_rows(trace: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per event: seq, offset (seconds after the first event), type, what (tool or model), tokens
    (``in/out``), cost, error and detail."""
    start = parse_time(events[0].get("timestamp")) if events else None
    start = start or parse_time(trace.get("created_at"))
    rows = []
    for event in events:
        raw = event.get("payload")
        payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
        kind = str(event.get("type", ""))
        at = parse_time(event.get("timestamp"))
        tokens_in, tokens_out = _count(payload, _IN), _count(payload, _OUT)
        cost = payload.get("cost_usd")
        rows.append({
            "seq": event.get("seq"),
            "offset": (at - start).total_seconds() if at and start else None,
            "type": kind,
            "what": payload.get("tool") or payload.get("model") or payload.get("name"),
            "tokens": f"{tokens_in or 0}/{tokens_out or 0}" if tokens_in is not None or tokens_out is not None
            else None,
            "cost": f"${cost:.4f}" if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
            "error": _error_of(kind, payload),
            "detail": _detail(kind, payload),
        })
    return rows


def render_timeline(out: Output, trace: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """The trace's summary line, then its timeline (errors in red)."""
    summary = [f"trace {trace.get('id')}", out.state(trace.get("status")),
               f"{trace.get('event_count', len(events))} events",
               f"tokens {trace.get('tokens_in', 0)} in / {trace.get('tokens_out', 0)} out",
               f"cost ${float(trace.get('cost_usd') or 0):.4f}"]
    if trace.get("worker"):
        summary.insert(2, f"worker {trace['worker']}")
    if trace.get("duration_ms") is not None:
        summary.append(f"{trace['duration_ms'] / 1000:.2f}s")
    out.write("  ".join(summary))
    rows = timeline_rows(trace, events)
    for row in rows:
        row["when"] = f"+{row['offset']:.3f}s" if row["offset"] is not None else "-"
        row["note"] = clip(row["error"] or row["detail"], DETAIL_CHARS)
    out.table(rows, [
        Column("SEQ", lambda r: r["seq"], right=True), Column("TIME", lambda r: r["when"], right=True),
        Column("TYPE", lambda r: r["type"], style=lambda r: "red" if r["error"] else None),
        Column("TOOL/MODEL", lambda r: r["what"]), Column("TOKENS", lambda r: r["tokens"], right=True),
        Column("COST", lambda r: r["cost"], right=True),
        Column("DETAIL", lambda r: r["note"], style=lambda r: "red" if r["error"] else None)], empty="no events")
