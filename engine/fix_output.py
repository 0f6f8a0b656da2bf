"""What a fix-agent worker answered, as a plan and an optional unified diff (pure; never raises on a str).

Read in this order, the first that fits wins:

1. the whole answer is a JSON object ``{"plan": str, "diff": str | null}`` (a missing ``diff`` is null);
2. the last ```` ```json ```` fenced block, else the last balanced ``{...}`` in the text, that is such an object;
3. a unified diff in the text: the ```` ```diff ```` / ```` ```patch ```` fenced blocks (or plain fences holding a
   diff), else from the first ``diff --git`` line, or ``--- `` line followed by ``+++ ``, to the end of its hunks;
   the plan is the rest of the text;
4. no diff: the plan is the whole text.

The plan is clipped to :data:`MAX_PLAN_CHARS`; a diff over :data:`MAX_DIFF_BYTES` is dropped and the plan says
so. A diff has LF line endings and ends with a newline; an empty one is None.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["EMPTY_OUTPUT", "MAX_DIFF_BYTES", "MAX_PLAN_CHARS", "NO_PLAN", "FixProposal", "parse_output"]

MAX_PLAN_CHARS = 20_000  # characters of plan kept
MAX_DIFF_BYTES = 1_048_576  # bytes (1 MiB, UTF-8) of diff accepted; a larger one is dropped
MAX_JSON_TRIES = 50  # balanced {...} candidates parsed at most, newest first
NO_PLAN = "(no plan given)"
EMPTY_OUTPUT = "(empty output)"
_CLIPPED = "\n(plan clipped)"
_FENCE = re.compile(r"^[ \t]*(`{3,})[ \t]*([\w+-]*)[^\n`]*\n(.*?)^[ \t]*\1`*[ \t]*$", re.MULTILINE | re.DOTALL)
_BRACE_OR_QUOTE = re.compile(r'[{}"]')
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)  # a JSON string, or its start up to the end
_HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_EXTENDED_HEADER = ("index ", "old mode ", "new mode ", "deleted file mode ", "new file mode ", "similarity index ",
                    "dissimilarity index ", "rename from ", "rename to ", "copy from ", "copy to ", "Binary files ")


@dataclass(frozen=True)
class FixProposal:
    plan: str  # what to change and why (never empty)
    diff: str | None  # a unified diff relative to the repository root, or None: no code change


def parse_output(text: str) -> FixProposal:
    """The plan and diff in a fix agent's answer ``text`` (see the module docstring for the order of reading)."""
    text = text.replace("\r\n", "\n")
    found = _whole_json(text) or _fenced_json(text) or _balanced_json(text)
    if found is not None:
        return _proposal(found[0], found[1])
    fenced = _fenced_diffs(text)
    if fenced is not None:
        return _proposal(*fenced)
    bare = _bare_diff(text)
    if bare is not None:
        return _proposal(*bare)
    return _proposal(text.strip() or EMPTY_OUTPUT, None)


def _proposal(plan: str, diff: str | None) -> FixProposal:
    plan = plan.strip() or NO_PLAN
    if diff is not None:
        diff = diff.replace("\r\n", "\n").lstrip("\n")
        if not diff.strip():
            diff = None
        elif len(diff) > MAX_DIFF_BYTES // 4 and len(diff.encode("utf-8", "surrogatepass")) > MAX_DIFF_BYTES:
            size = len(diff.encode("utf-8", "surrogatepass"))
            note = f"\n\n(The proposed diff was {size} bytes, more than the {MAX_DIFF_BYTES}-byte limit: dropped.)"
            return FixProposal(plan=_clip(plan, MAX_PLAN_CHARS - len(note)) + note, diff=None)
        elif not diff.endswith("\n"):
            diff += "\n"
    return FixProposal(plan=_clip(plan, MAX_PLAN_CHARS), diff=diff)


def _clip(plan: str, limit: int) -> str:
    return plan if len(plan) <= limit else plan[: limit - len(_CLIPPED)].rstrip() + _CLIPPED


def _as_proposal(data: Any) -> tuple[str, str | None] | None:
    if not isinstance(data, dict) or not isinstance(data.get("plan"), str):
        return None
    diff = data.get("diff")
    return (data["plan"], diff) if diff is None or isinstance(diff, str) else None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _whole_json(text: str) -> tuple[str, str | None] | None:
    stripped = text.strip()
    return _as_proposal(_loads(stripped)) if stripped.startswith("{") else None


def _fenced_json(text: str) -> tuple[str, str | None] | None:
    for match in reversed(list(_FENCE.finditer(text))):
        if match.group(2).lower() == "json":
            found = _as_proposal(_loads(match.group(3)))
            if found is not None:
                return found
    return None


def _balanced_json(text: str) -> tuple[str, str | None] | None:
    """The outermost ``{...}`` ending last that is a proposal. Braces pair up in one pass; inside a pair, JSON
    strings (with escapes) are skipped so a brace in a string does not count."""
    pairs: list[tuple[int, int]] = []
    stack: list[int] = []
    at = 0
    while (hit := _BRACE_OR_QUOTE.search(text, at)) is not None:
        i, char = hit.start(), hit.group()
        if char == "{":
            stack.append(i)
        elif char == "}" and stack:
            pairs.append((stack.pop(), i + 1))
        elif char == '"' and stack:
            string = _STRING.match(text, i)  # always matches at a quote
            at = string.end() if string is not None else i + 1
            continue
        at = i + 1
    pairs.sort(key=lambda pair: (-pair[1], pair[0]))
    for start, end in pairs[:MAX_JSON_TRIES]:
        found = _as_proposal(_loads(text[start:end]))
        if found is not None:
            return found
    return None


def _fenced_diffs(text: str) -> tuple[str, str] | None:
    """Every ```diff / ```patch block (and plain ``` blocks that start with a diff), joined; the plan is the
    text around them."""
    blocks = [match for match in _FENCE.finditer(text)
              if match.group(2).lower() in ("diff", "patch")
              or not match.group(2) and match.group(3).lstrip().startswith(("diff --git ", "--- "))]
    if not blocks:
        return None
    diff = "".join(block.group(3) for block in blocks)
    plan, at = [], 0
    for block in blocks:
        plan.append(text[at:block.start()])
        at = block.end()
    plan.append(text[at:])
    return _tidy("".join(plan)), diff


def _bare_diff(text: str) -> tuple[str, str] | None:
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("diff --git ")
                  or line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")), None)
    if start is None:
        return None
    end = _diff_end(lines, start)
    plan = "\n".join(lines[:start] + lines[end:])
    return _tidy(plan), "\n".join(lines[start:end]) + "\n"


def _tidy(plan: str) -> str:
    """The text left around a diff, without the run of blank lines where the diff was."""
    return re.sub(r"\n{3,}", "\n\n", plan)


def _diff_end(lines: list[str], start: int) -> int:
    """The line after the diff that begins at ``start``: file headers, extended headers and hunks, each hunk as long
    as its ``@@`` counts say (a blank line inside one is an empty context line) or up to a line a hunk cannot hold."""
    i, n = start, len(lines)
    while i < n:
        line = lines[i]
        if line.startswith("diff --git ") or line.startswith(_EXTENDED_HEADER) or line.startswith("\\ "):
            i += 1
        elif line.startswith("--- ") and i + 1 < n and lines[i + 1].startswith("+++ "):
            i += 2
        elif (hunk := _HUNK.match(line)) is not None:
            old = int(hunk.group(1)) if hunk.group(1) is not None else 1
            new = int(hunk.group(2)) if hunk.group(2) is not None else 1
            i += 1
            while i < n and (old > 0 or new > 0):
                body = lines[i]
                if body.startswith("\\ "):
                    pass
                elif body.startswith("+"):
                    new -= 1
                elif body.startswith("-"):
                    old -= 1
                elif body.startswith(" ") or body == "":
                    old, new = old - 1, new - 1
                else:
                    break
                i += 1
        else:
            break
    return i
