"""Error fingerprints: the same bug gives the same text whatever ids, numbers or paths it mentions (pure).

``KeyError: 'user_42'`` and ``KeyError: 'user_7'`` both give ``KeyError: <str>``; ``ValueError: ...`` stays apart.
Of a stack trace only the exception line and the innermost frame's function are kept (Python tracebacks, and
``at fn (...)`` frames of JavaScript and Java); of any other text its first non-blank line. Then URLs, emails,
file paths, quoted strings, UUIDs, hex (memory addresses, digests, commit ids) and numbers are masked and the
spacing collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_FINGERPRINT_CHARS", "error_text", "fingerprint"]

MAX_FINGERPRINT_CHARS = 160  # characters of a fingerprint kept
_MAX_INPUT_CHARS = 20_000  # characters of an error text read at most

_PY_TRACEBACK = "Traceback (most recent call last)"
_PY_FRAME = re.compile(r'^\s*File "[^"]*", line \d+, in (\S+)', re.MULTILINE)
_PY_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?::.*)?$")
_AT_FRAME = re.compile(r"^\s+at (?:async )?([\w$.<>\[\]/-]+)", re.MULTILINE)

# (pattern, mask), applied in this order: the wider shapes before the numbers inside them.
_MASKS = (
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+"), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    # absolute paths (/x/y, ~/x, C:\x\y) and relative ones that end in a file name with an extension
    (re.compile(r"(?:(?<![\w.])(?:~|[A-Za-z]:)?(?:[/\\][\w.@~+-]+){2,}|\b(?:[\w.@~+-]+/)+[\w@~+-]+\.[A-Za-z]\w*)"),
     "<path>"),
    (re.compile(r"(?<![A-Za-z0-9])'[^'\n]{0,500}'(?![A-Za-z0-9])|\"[^\"\n]{0,500}\"|`[^`\n]{0,500}`"), "<str>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{7,}\b|\b[0-9a-fA-F]{32,}\b"), "<hex>"),
    # digits not glued to a letter (user_42, 10.5, 2024-01-02), and any run of 3+ digits (u12345, Http404);
    # short digit runs after a letter stay (utf8, Int64, base64)
    (re.compile(r"(?<![A-Za-z0-9])\d+(?:\.\d+)*|(?<!\d)\d{3,}"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def _essential(text: str) -> str:
    """The part of an error text that names the bug: exception line (+ innermost frame) or the first line."""
    if _PY_TRACEBACK in text:
        frames = _PY_FRAME.findall(text)
        lines = [line for line in text.splitlines() if line.strip()]
        exception = next((line.strip() for line in reversed(lines) if _PY_EXCEPTION.match(line)), lines[-1].strip())
        return f"{exception} (in {frames[-1]})" if frames else exception
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    frame = _AT_FRAME.search(text)
    return f"{first} (at {frame.group(1)})" if frame else first


def fingerprint(text: str) -> str:
    """The normalised signature of an error text ("" for a blank one)."""
    essential = _essential(text[:_MAX_INPUT_CHARS])
    for pattern, mask in _MASKS:
        essential = pattern.sub(mask, essential)
    return essential.strip()[:MAX_FINGERPRINT_CHARS]


_TYPE_KEYS = ("type", "exception", "error_type", "exc_type")
_MESSAGE_KEYS = ("message", "error", "msg", "detail", "reason")
_STACK_KEYS = ("stack", "traceback", "stacktrace", "stack_trace")


def error_text(data: Mapping[str, Any], *, depth: int = 0) -> str:
    """The text of an error payload: ``type: message``, or its stack trace when it has one (``error`` may itself
    be an object of the same shape)."""
    for key in _STACK_KEYS:
        stack = data.get(key)
        if isinstance(stack, str) and stack.strip():
            return stack
    kind = next((v.strip() for k in _TYPE_KEYS if isinstance(v := data.get(k), str) and v.strip()), "")
    message = ""
    for key in _MESSAGE_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            message = value.strip()
            break
        if isinstance(value, dict) and depth < 3:
            message = error_text(value, depth=depth + 1)
            if message:
                break
    if kind and message and not message.startswith(kind):
        return f"{kind}: {message}"
    return message or kind
