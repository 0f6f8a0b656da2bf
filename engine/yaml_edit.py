"""A small text-level YAML editor: set one top-level key of a mapping document and keep everything else as the
user wrote it (comments, key order, quoting, blank lines). Pure; PyYAML only checks the result.

The edit replaces the line ``key: ...`` at column 0 together with its continuation block (the lines after it that
are indented or are ``-`` items at column 0, with comments and blank lines between them), or appends the key at
the end. Comments inside the replaced block go with it; an inline comment on a one-line scalar is kept when the
new value is a scalar too. Every edit is checked by parsing: the key must read back as the value and every other
top-level key must be unchanged, else :class:`ValueError` (an anchor, a flow-style document, a duplicate key
PyYAML resolves differently): the caller reports the file as one it cannot edit safely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["dump_value", "one_line", "read_mapping", "set_in_mapping", "set_top_level"]

_DUMP_WIDTH = 1_000_000  # characters: long scalars stay on one line instead of being folded
_INDENT = "  "  # how a block value is indented under its key
_KEY_LINE = re.compile(r"""^(?:(?P<plain>[^\s#'"{}\[\],&*!|>%@`:-][^\n#]*?)|"(?P<dq>[^"\\\n]*)"|'(?P<sq>[^'\n]*)')"""
                       r"""[ \t]*:(?:[ \t]|$)""")


def read_mapping(text: str) -> dict[str, Any]:
    """The document as a dict; an empty (or comment-only) document is ``{}``. Not YAML, or YAML that is not a
    mapping -> :class:`ValueError` saying which."""
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:  # RecursionError: nesting deeper than PyYAML can follow
        raise ValueError(f"not valid YAML ({_first_line(exc)})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"the document is a {type(data).__name__}, not a mapping")
    return data


def dump_value(key: str, value: Any, *, newline: str = "\n") -> str:
    """``key: value`` as YAML lines ending in ``newline``: a scalar (or an empty mapping or list) on the key's line,
    a mapping or list as a block indented two spaces under it."""
    if isinstance(value, Mapping | list | tuple) and value:
        plain = _plain(value)
        body = yaml.safe_dump(plain, default_flow_style=False, sort_keys=False, allow_unicode=True, width=_DUMP_WIDTH)
        lines = [_INDENT + line if line else line for line in body.splitlines()]
        return newline.join([_dump_key(key) + ":", *lines]) + newline
    text = yaml.safe_dump({key: _plain(value)}, default_flow_style=True, sort_keys=False, allow_unicode=True,
                          width=_DUMP_WIDTH).strip()
    if not (text.startswith("{") and text.endswith("}")):  # pragma: no cover - PyYAML always wraps a flow mapping
        raise ValueError(f"cannot write {key!r} as one line")
    inner = text[1:-1].strip()
    if "\n" in inner:
        raise ValueError(f"cannot write the value of {key!r} on one line")
    return inner + newline


def one_line(value: Any) -> str:
    """``value`` as one line of YAML flow style (``{attempts: 3, backoff_s: 1.0}``, ``[a, b]``, ``200``)."""
    text = yaml.safe_dump(_plain(value), default_flow_style=True, allow_unicode=True, width=_DUMP_WIDTH).strip()
    return re.sub(r"\s*\n\s*", " ", text.removesuffix("...")).strip()


def set_top_level(text: str, key: str, value: Any) -> str:
    """``text`` with the top-level ``key`` set to ``value``: its line and continuation block replaced (a later
    duplicate of the key removed), or ``key: value`` appended. Raises :class:`ValueError` when ``text`` is not a
    YAML mapping or the edit would not read back as exactly that change."""
    before = read_mapping(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    blocks = _blocks_of(lines, key)
    if not blocks:
        body = text if not text or text.endswith(("\n", "\r")) else text + newline
        result = body + dump_value(key, value, newline=newline)
    else:
        start, end = blocks[0]
        replacement = dump_value(key, value, newline=newline)
        if end == start + 1 and not isinstance(value, Mapping | list | tuple):
            replacement = _keep_comment(lines[start], replacement, newline)
        out = list(lines)
        for other_start, other_end in reversed(blocks[1:]):
            del out[other_start:other_end]
        out[start:end] = [replacement]
        result = "".join(out)
    _check(before, result, key, value)
    return result


def set_in_mapping(text: str, key: str, subkey: str, value: Any) -> str:
    """``text`` with ``key``'s mapping holding ``subkey: value`` and every other entry unchanged. When ``key`` is a
    block mapping the entry is edited inside it (comments between the entries survive); otherwise (absent, a flow
    mapping, null) the whole merged mapping is written with :func:`set_top_level`. ``key`` holding something other
    than a mapping -> :class:`ValueError`."""
    before = read_mapping(text)
    current = before.get(key)
    if current is not None and not isinstance(current, dict):
        raise ValueError(f"{key!r} is a {type(current).__name__}, not a mapping")
    merged = {**(current or {}), subkey: _plain(value)}
    blocks = _blocks_of(text.splitlines(keepends=True), key)
    if current and len(blocks) == 1:
        try:
            result = _set_inside(text, blocks[0], subkey, value)
            _check(before, result, key, merged)
            return result
        except ValueError:
            pass  # not an indented block mapping we can edit in place: write the whole mapping
    return set_top_level(text, key, merged)


def _set_inside(text: str, block: tuple[int, int], subkey: str, value: Any) -> str:
    lines = text.splitlines(keepends=True)
    start, end = block
    body = lines[start + 1:end]
    if not _KEY_LINE.match(lines[start].rstrip("\r\n")) or lines[start].split(":", 1)[-1].split("#")[0].strip():
        raise ValueError("the mapping is written on the key's line")
    content = [line for line in body if line.strip() and not line.strip().startswith("#")]
    indent = content[0][: len(content[0]) - len(content[0].lstrip(" "))] if content else ""
    if not indent or any(not line.startswith(indent) for line in content):
        raise ValueError("not a block mapping indented by a steady amount")
    inner = "".join(line[len(indent):] if line.startswith(indent) else line.lstrip(" \t") for line in body)
    edited = set_top_level(inner, subkey, value)
    out = [indent + line if line.strip() else line for line in edited.splitlines(keepends=True)]
    return "".join(lines[: start + 1] + out + lines[end:])


def _blocks_of(lines: list[str], key: str) -> list[tuple[int, int]]:
    """(start, end) line ranges of every ``key:`` block at column 0, in order."""
    blocks = []
    i = 0
    while i < len(lines):
        if _key_of(lines[i]) == key:
            end = _block_end(lines, i)
            blocks.append((i, end))
            i = end
        else:
            i += 1
    return blocks


def _key_of(line: str) -> str | None:
    match = _KEY_LINE.match(line.rstrip("\r\n"))
    if match is None:
        return None
    for group in ("plain", "dq", "sq"):
        name = match.group(group)
        if name is not None:
            return name.rstrip() if group == "plain" else name
    return None  # pragma: no cover - one group always matches


def _block_end(lines: list[str], start: int) -> int:
    """The line after ``lines[start]``'s block: indented lines and ``-`` items at column 0, with the blank and
    comment lines between them (never the comment or blank lines after the block's last line)."""
    end = start + 1
    i = start + 1
    while i < len(lines):
        line = lines[i].rstrip("\r\n")
        stripped = line.strip()
        if stripped and (line[0] in " \t" and not stripped.startswith("#") or line == "-" or line.startswith("- ")):
            end = i + 1
        elif stripped and not stripped.startswith("#"):
            break
        i += 1
    return end


def _keep_comment(old_line: str, replacement: str, newline: str) -> str:
    comment = _inline_comment(old_line.rstrip("\r\n"))
    return replacement if comment is None else replacement[: -len(newline)] + "  " + comment + newline


def _inline_comment(line: str) -> str | None:
    """The ``# ...`` ending a one-line ``key: value``, outside quotes, or None."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"" and (i == 0 or line[i - 1] in " \t:[{,"):
            quote = char
        elif char == "#" and i > 0 and line[i - 1] in " \t":
            return line[i:]
    return None


def _check(before: dict[str, Any], text: str, key: str, value: Any) -> None:
    after = read_mapping(text)
    if key not in after or after[key] != _plain(value):
        raise ValueError(f"the edit of {key!r} does not read back as the value written")
    others_before = {k: v for k, v in before.items() if k != key}
    others_after = {k: v for k, v in after.items() if k != key}
    if others_before != others_after:
        changed = sorted(str(k) for k in set(others_before) | set(others_after)
                         if others_before.get(k) != others_after.get(k))
        raise ValueError(f"the edit of {key!r} would change other keys: {', '.join(changed)}")


def _plain(value: Any) -> Any:
    """``value`` as PyYAML reads it back: tuples become lists, mappings dicts."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dump_key(key: str) -> str:
    text = yaml.safe_dump({key: None}, default_flow_style=True, width=_DUMP_WIDTH).strip()
    return text[1:-1].rsplit(":", 1)[0].strip()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
