"""tool_error: a tool call that failed, by tool and by kind of failure (pure).

Kinds: ``error`` (a hard error: ``error`` set, ``ok``/``success`` false, ``is_error`` true, ``status: error``),
``timeout``, ``unknown_tool`` (the agent called a tool that does not exist) and ``malformed_args`` (arguments
that are not valid JSON, or that the tool refused as invalid). Sources: ``tool_result`` events, ``tool_call``
events whose arguments are a broken JSON text, and ``error`` events that name a tool or say a tool is unknown.
A failed call the agent retried successfully is still a tool_error (it cost a step); it is never a crash here.

Signature: ``<tool>:<kind>``. A ``tool_result`` without a tool name takes it from its ``tool_call`` (by
``call_id`` / ``tool_call_id`` / ``id``), else from the latest ``tool_call``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from config.detectors import Thresholds
from engine.detectors.events import Event, ToolNames, detection, payload, seq_of, tool_name
from engine.detectors.fingerprint import error_text
from engine.detectors.model import Detection, TraceFacts

__all__ = ["TOOL_ERROR_KINDS", "TOOL_VERSION", "classify_tool_failure", "detect_tool_error"]

TOOL_VERSION = "tool_error/1"
TOOL_ERROR_KINDS = ("error", "timeout", "unknown_tool", "malformed_args")

_ARG_KEYS = ("args", "arguments", "input", "parameters")
_EXPLICIT_KINDS = {"error": "error", "timeout": "timeout", "timed_out": "timeout", "unknown_tool": "unknown_tool",
                   "unknown": "unknown_tool", "not_found": "unknown_tool", "malformed_args": "malformed_args",
                   "invalid_args": "malformed_args", "invalid_arguments": "malformed_args",
                   "bad_args": "malformed_args", "validation": "malformed_args"}
_UNKNOWN = re.compile(r"\b(?:unknown|unrecognized|unrecognised|unsupported|undefined|invalid|no such)\s+"
                      r"(?:tool|function)(?:\s+name)?\b|\b(?:tool|function)\s+['\"`]?[\w.:-]*['\"`]?\s*"
                      r"(?:not found|does not exist|is not (?:available|defined|registered))", re.IGNORECASE)
_NAMED_UNKNOWN = re.compile(r"(?:tool|function)(?:\s+name)?[\s:]+['\"`]?([\w.-]+)", re.IGNORECASE)
_TIMEOUT = re.compile(r"\btim(?:ed|es)?[\s_-]?out\b|\btimeout\b|\bdeadline exceeded\b", re.IGNORECASE)
_MALFORMED = re.compile(r"\b(?:malformed|invalid|bad|unparseable)\s+(?:json|arguments?|args|parameters?|input)\b"
                        r"|\bmissing (?:required )?(?:argument|parameter|field)|\bunexpected keyword argument\b"
                        r"|\bvalidation error|\bjsondecodeerror\b|\bcould not parse (?:the )?(?:arguments|args|json)",
                        re.IGNORECASE)
_FAILED_STATUSES = frozenset({"error", "failed", "failure", "timeout"})


def _failed(data: Mapping[str, Any]) -> bool:
    error = data.get("error")
    status = data.get("status")
    return (data.get("ok") is False or data.get("success") is False or data.get("is_error") is True
            or data.get("unknown") is True or data.get("timed_out") is True
            or (isinstance(status, str) and status.lower() in _FAILED_STATUSES)
            or (isinstance(error, str) and bool(error.strip())) or (isinstance(error, dict) and bool(error)))


def classify_tool_failure(data: Mapping[str, Any]) -> str | None:
    """The kind of a failed tool outcome (one of ``TOOL_ERROR_KINDS``), or None when it did not fail."""
    return _kind(data) if _failed(data) else None


def _kind(data: Mapping[str, Any]) -> str:
    for key in ("error_kind", "kind"):
        explicit = data.get(key)
        if isinstance(explicit, str) and explicit.lower() in _EXPLICIT_KINDS:
            return _EXPLICIT_KINDS[explicit.lower()]
    message = error_text(data)
    if data.get("unknown") is True or _UNKNOWN.search(message):
        return "unknown_tool"
    if data.get("timed_out") is True or data.get("status") == "timeout":
        return "timeout"
    if _MALFORMED.search(message):  # before the timeout wording: "invalid arguments: timeout must be > 0"
        return "malformed_args"
    if _TIMEOUT.search(message):
        return "timeout"
    return "error"


def _broken_json_args(data: Mapping[str, Any]) -> bool:
    for key in _ARG_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            text = value.strip()
            if text[:1] in ("{", "["):
                try:
                    json.loads(text)
                except ValueError:
                    return True
            return False
    return False


_SUMMARY = {"error": "failed", "timeout": "timed out", "unknown_tool": "is not a known tool",
            "malformed_args": "was called with malformed arguments"}


def detect_tool_error(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    found = []
    tools = ToolNames()
    for event in events:
        kind = event.get("type")
        if kind == "tool_call":
            data = payload(event)
            tool = tools.call(data)
            if data.get("unknown") is True:
                failure = "unknown_tool"
            elif data.get("malformed") is True or _broken_json_args(data):
                failure = "malformed_args"
            else:
                continue
        elif kind == "tool_result":
            data = payload(event)
            if not _failed(data):
                continue
            failure = _kind(data)
            tool = tools.result(data)
        elif kind == "error":
            data = payload(event)
            message = error_text(data)
            named = tool_name(data) if "tool" in data or "tool_name" in data else ""
            unknown = _UNKNOWN.search(message)
            if not named and not unknown:
                continue
            failure = _kind(data)
            tool = named
            if not tool and unknown:
                match = _NAMED_UNKNOWN.search(message, unknown.start())
                tool = match.group(1) if match else tools.last
            tool = tool or "<unnamed>"
        else:
            continue
        seq = seq_of(event)
        found.append(detection("tool_error", f"{tool}:{failure}", confidence=0.9, evidence=[seq], critical=seq,
                               summary=f"tool {tool} {_SUMMARY[failure]}", version=TOOL_VERSION))
    return found
