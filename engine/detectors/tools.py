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
from collections.abc import Mapping, Sequence, Set
from typing import Any

from config.detectors import Thresholds
from engine.detectors.events import Event, ToolNames, detection, payload, seq_of, tool_name
from engine.detectors.fingerprint import error_text
from engine.detectors.model import Detection, TraceFacts

__all__ = ["TOOL_ERROR_KINDS", "TOOL_VERSION", "classify_tool_failure", "detect_tool_error"]

TOOL_VERSION = "tool_error/2"  # /2: "function" wording is a tool only when it names one called
TOOL_ERROR_KINDS = ("error", "timeout", "unknown_tool", "malformed_args")

_ARG_KEYS = ("args", "arguments", "input", "parameters")
_EXPLICIT_KINDS = {"error": "error", "timeout": "timeout", "timed_out": "timeout", "unknown_tool": "unknown_tool",
                   "unknown": "unknown_tool", "not_found": "unknown_tool", "malformed_args": "malformed_args",
                   "invalid_args": "malformed_args", "invalid_arguments": "malformed_args",
                   "bad_args": "malformed_args", "validation": "malformed_args"}
# "unknown tool", "no such tool: x", "tool 'x' not found": the wording says a tool. The same wording about a
# "function" says a tool only when it names one the trace called ("no such function: JSON_EXTRACT" is SQL, and
# "invalid function argument" / "unsupported function type" are ordinary errors).
_UNKNOWN_WORDS = r"(?:unknown|unrecognized|unrecognised|unsupported|undefined|invalid|no such)"
_NOT_A_NAME = (r"(?!\s+(?:arguments?|args|call|calls|input|inputs|output|result|parameters?|schema|type|types"
               r"|signature|response|use|usage)\b)")
_NAME = r"['\"`]?([A-Za-z_][\w.:-]*?)['\"`]?"
_MISSING = r"(?:not found|does not exist|is not (?:available|defined|registered|supported))"


def _unknown_pattern(noun: str) -> re.Pattern[str]:
    return re.compile(rf"\b{_UNKNOWN_WORDS}\s+{noun}(?:\s+name)?\b{_NOT_A_NAME}(?:\s*[:=]?\s*{_NAME}(?![\w.:-]))?"
                      rf"|\b{noun}(?:\s+name)?(?:[\s:]+{_NAME})?\s*{_MISSING}", re.IGNORECASE)


_UNKNOWN_TOOL = _unknown_pattern("tools?")
_UNKNOWN_FUNCTION = _unknown_pattern("functions?")
_STOP_NAMES = frozenset({"is", "was", "does", "not", "name", "named", "called", "for", "in", "the", "a", "an"})


def _unknown_name(match: re.Match[str]) -> str:
    name = (match.group(1) or match.group(2) or "").rstrip(".:-")
    return "" if name.lower() in _STOP_NAMES else name[:100]


def _unknown_tool(message: str, known: Set[str]) -> tuple[bool, str]:
    """(whether the message says a tool is unknown, the tool it names or "")."""
    match = _UNKNOWN_TOOL.search(message)
    if match is not None:
        return True, _unknown_name(match)
    for match in _UNKNOWN_FUNCTION.finditer(message):
        name = _unknown_name(match)
        if name and name in known:
            return True, name
    return False, ""


_TIMEOUT = re.compile(r"\btim(?:ed|es)?[\s_-]?out\b|\btimeout\b|\bdeadline exceeded\b", re.IGNORECASE)
_MALFORMED = re.compile(r"\b(?:malformed|invalid|bad|unparseable)\s+(?:tool\s+)?"
                        r"(?:json|arguments?|args|parameters?|input)\b"
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


def classify_tool_failure(data: Mapping[str, Any], known_tools: Set[str] = frozenset()) -> str | None:
    """The kind of a failed tool outcome (one of ``TOOL_ERROR_KINDS``), or None when it did not fail.
    ``known_tools``: the tools the trace called (an "unknown function: x" is an unknown tool only when x is one)."""
    return _kind(data, known_tools) if _failed(data) else None


def _kind(data: Mapping[str, Any], known: Set[str]) -> str:
    for key in ("error_kind", "kind"):
        explicit = data.get(key)
        if isinstance(explicit, str) and explicit.lower() in _EXPLICIT_KINDS:
            return _EXPLICIT_KINDS[explicit.lower()]
    message = error_text(data)
    if data.get("unknown") is True or _unknown_tool(message, known)[0]:
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
    called: set[str] = set()  # the tools called so far
    for event in events:
        kind = event.get("type")
        if kind == "tool_call":
            data = payload(event)
            tool = tools.call(data)
            called.add(tool)
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
            failure = _kind(data, called)
            tool = tools.result(data)
        elif kind == "error":
            # An error event is a tool's only when it names one (a ``tool`` field) or its wording says a tool is
            # unknown ("unknown tool: x", or "unknown function: x" naming a tool the trace called).
            data = payload(event)
            named = tool_name(data) if "tool" in data or "tool_name" in data else ""
            unknown, unknown_name = _unknown_tool(error_text(data), called)
            if not named and not unknown:
                continue
            failure = _kind(data, called)
            tool = named or unknown_name or tools.last or "<unnamed>"
        else:
            continue
        seq = seq_of(event)
        found.append(detection("tool_error", f"{tool}:{failure}", confidence=0.9, evidence=[seq], critical=seq,
                               summary=f"tool {tool} {_SUMMARY[failure]}", version=TOOL_VERSION))
    return found
