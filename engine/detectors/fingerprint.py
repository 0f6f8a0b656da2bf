"""Error fingerprints: the same bug gives the same text whatever ids, numbers or paths it mentions (pure).

``KeyError: 'user_42'`` and ``KeyError: 'user_7'`` both give ``KeyError: <str>``; ``ValueError: ...`` stays apart.
Of a Python traceback only the exception line and the innermost frame's function are kept: the exception line is
the first line after the last ``File "..."`` frame that reads ``Name(.Name)*: ...`` (or a bare ``Name``), so a
multi-line message (a pydantic ``ValidationError`` lists its fields on the lines after) keeps its first line. Of
``at fn (...)`` frames (JavaScript, Java) the first message line and the first frame; of any other text its first
non-blank line. That line is cut to ``_MAX_LINE_CHARS`` before masking, and every mask is a linear regex (each
starts only where a run of its characters starts), so a long adversarial text costs microseconds, not seconds.
Then URLs, emails, file paths, quoted strings, UUIDs, hex (memory addresses, digests, commit ids), random ids
(letters and digits mixed, ``req_8f3KJ2x9`` -> ``req_<id>``) and numbers are masked and the spacing collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_FINGERPRINT_CHARS", "error_text", "fingerprint"]

MAX_FINGERPRINT_CHARS = 160  # characters of a fingerprint kept
_MAX_INPUT_CHARS = 20_000  # characters of an error text read at most
_MAX_LINE_CHARS = 1_000  # characters of the essential line masked at most (only 160 are kept in the end)
_MAX_FRAME_CHARS = 100  # characters of the frame's function name kept

_PY_TRACEBACK = "Traceback (most recent call last)"
_PY_FRAME = re.compile(r'^[ \t]*File "[^"\n]*", line \d+, in ([^\s]+)', re.MULTILINE)
_PY_EXCEPTION = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::|$)")  # matched at a line's start
_AT_FRAME = re.compile(r"^[ \t]+at (?:async )?([\w$.<>\[\]/-]+)", re.MULTILINE)

# A run of letters and digits that mixes them at least _ID_SWITCHES times is a random id, not a word.
_ID_MIN_CHARS = 8
_ID_SWITCHES = 3
_ALNUM_RUN = re.compile(rf"(?<![A-Za-z0-9])[A-Za-z0-9]{{{_ID_MIN_CHARS},}}(?![A-Za-z0-9])")
_SWITCH = re.compile(r"[A-Za-z](?=[0-9])|[0-9](?=[A-Za-z])")


def _mask_id(match: re.Match[str]) -> str:
    token = match.group()
    return "<id>" if len(_SWITCH.findall(token)) >= _ID_SWITCHES else token


# (pattern, mask), applied in this order: the wider shapes before the numbers inside them. Every pattern starts
# only where a run of its characters starts (a lookbehind), so none rescans a run from each of its positions.
_MASKS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]*://\S+"), "<url>"),
    (re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    # absolute paths (/x/y, ~/x, C:\x\y) and relative ones that end in a file name with an extension
    (re.compile(r"(?<![\w.])(?:~|[A-Za-z]:)?(?:[/\\][\w.@~+-]+){2,}"
                r"|(?<![\w.@~+/\\-])(?:[\w.@~+-]+/)+[\w@~+-]+\.[A-Za-z]\w*"), "<path>"),
    (re.compile(r"(?<![A-Za-z0-9])'[^'\n]{0,500}'(?![A-Za-z0-9])|\"[^\"\n]{0,500}\"|`[^`\n]{0,500}`"), "<str>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    # digests and commit ids: one case (a mixed-case run is a random id, masked next)
    (re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b|\b(?=[0-9A-F]*[0-9])(?=[0-9A-F]*[A-F])"
                r"[0-9A-F]{7,}\b|\b[0-9a-f]{32,}\b|\b[0-9A-F]{32,}\b"), "<hex>"),
    (_ALNUM_RUN, _mask_id),
    # digits not glued to a letter (user_42, 10.5, 2024-01-02), and any run of 3+ digits (u12345, Http404);
    # short digit runs after a letter stay (utf8, Int64, base64)
    (re.compile(r"(?<![A-Za-z0-9])\d+(?:\.\d+)*|(?<!\d)\d{3,}"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def _python_exception(text: str) -> str:
    """The exception line of a Python traceback (+ the innermost frame's function)."""
    frames = list(_PY_FRAME.finditer(text))
    after = frames[-1].end() if frames else text.find(_PY_TRACEBACK) + len(_PY_TRACEBACK)
    lines = text[after:].splitlines()[1:]  # the rest of the frame's (or the header's) own line is not one
    exception = next((line for line in lines if line[:1].strip() and _PY_EXCEPTION.match(line)), "")
    if not exception:  # an indented or unusual traceback: its last non-blank line
        exception = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    exception = exception.strip()[:_MAX_LINE_CHARS]
    return f"{exception} (in {frames[-1].group(1)[:_MAX_FRAME_CHARS]})" if frames else exception


def _essential(text: str) -> str:
    """The part of an error text that names the bug: exception line (+ innermost frame) or the first line."""
    if _PY_TRACEBACK in text:
        return _python_exception(text)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")[:_MAX_LINE_CHARS]
    frame = _AT_FRAME.search(text)
    return f"{first} (at {frame.group(1)[:_MAX_FRAME_CHARS]})" if frame else first


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
