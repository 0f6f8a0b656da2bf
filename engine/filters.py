"""Rule filters: a mapping of clauses that must all pass for an event to match a rule.

Compiled once when the rule book is built (bad shapes are config errors, with their location), then checked per
event without allocation-heavy work. A clause is ``key: expected``:

- ``key`` names an extracted attribute of the event (``base_branch``, ``labels``) or, when the event has no
  attribute of that name, a dotted path into the raw payload (``pull_request.draft``, ``repository.full_name``).
  A path that meets a list maps over its items (``pull_request.labels.name`` is every label's name); a number
  picks one item (``commits.0.id``).
- ``expected`` is a scalar (equality), a non-empty list (any of them) or a string with ``*``, ``?`` or ``[``
  (a shell-style glob matched case-sensitively: ``feature/*``). Write ``[*]`` for a literal star.
- ``not: {...}`` passes when the inner clauses do NOT all pass. A missing value fails a clause, so it passes
  under ``not``.

Comparison is on text, as mecha compares, with both sides normalised the same way: booleans are ``true`` and
``false``, ``None`` is ``null``, integers are their digits and a float that is a whole number compares as one
(so YAML ``number: 12`` matches a payload's ``12`` and ``"12"``). When the event's value is a list, the clause
passes if any item matches.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import FilterInvalid
from engine.lazy_json import resolved

__all__ = ["Filter", "compile_filter", "filter_text"]

NOT_KEY = "not"  # the reserved clause key for negation
MAX_SHOWN_CHARS = 60  # characters of a value quoted in a mismatch reason
_GLOB_CHARS = frozenset("*?[")
_MISSING: Any = object()


def filter_text(value: Any) -> str:
    """The text a value compares as: ``True`` -> ``true``, ``None`` -> ``null``, ``12.0`` -> ``12``."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str, sort_keys=True, separators=(",", ":"))
    return str(value)


def _shown(text: str) -> str:
    return repr(text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "...")


def _shown_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(filter_text(item)) for item in value) + "]"
    return _shown(filter_text(value))


def _resolve(node: Any, parts: tuple[str, ...]) -> Any:
    """The value at a dotted path, or _MISSING. A list met on the way is mapped over (or indexed by a number)."""
    node = resolved(node)  # a payload not decoded yet is decoded now
    for index, part in enumerate(parts):
        if isinstance(node, Mapping):
            node = node.get(part, _MISSING)
            if node is _MISSING:
                return _MISSING
        elif isinstance(node, (list, tuple)):
            if part.isdigit():
                position = int(part)
                if position >= len(node):
                    return _MISSING
                node = node[position]
            else:
                found = [value for item in node if (value := _resolve(item, parts[index:])) is not _MISSING]
                return found if found else _MISSING
        else:
            return _MISSING
    return node


class _Clause:
    """``key: expected``, compiled: exact texts in a set, globs as compiled regexes."""

    __slots__ = ("key", "_path", "_exact", "_globs", "_expected")

    def __init__(self, key: str, expected: Any) -> None:
        values = list(expected) if isinstance(expected, list) else [expected]
        texts = [filter_text(value) for value in values]
        self.key = key
        self._path = tuple(key.split("."))
        self._exact = frozenset(t for v, t in zip(values, texts, strict=True)
                                if not (isinstance(v, str) and _GLOB_CHARS & set(v)))
        self._globs = tuple(re.compile(fnmatch.translate(t)) for v, t in zip(values, texts, strict=True)
                            if isinstance(v, str) and _GLOB_CHARS & set(v))
        shown = ", ".join(_shown(text) for text in texts)
        self._expected = f"any of {shown}" if isinstance(expected, list) else shown

    def _matches(self, value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return any(self._matches(item) for item in value)
        text = filter_text(value)
        return text in self._exact or any(glob.match(text) for glob in self._globs)

    def passes(self, attrs: Mapping[str, Any], payload: Any) -> bool:
        value = attrs[self.key] if self.key in attrs else _resolve(payload, self._path)
        return value is not _MISSING and self._matches(value)

    def check(self, attrs: Mapping[str, Any], payload: Any) -> str | None:
        value = attrs[self.key] if self.key in attrs else _resolve(payload, self._path)
        if value is _MISSING:
            return f"filter {self.key}: missing in payload"
        if self._matches(value):
            return None
        return f"filter {self.key}: {_shown_value(value)} does not match {self._expected}"


class _Not:
    """``not: {...}``: passes when the inner filter fails."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Filter) -> None:
        self._inner = inner

    def passes(self, attrs: Mapping[str, Any], payload: Any) -> bool:
        return not self._inner.passes(attrs, payload)

    def check(self, attrs: Mapping[str, Any], payload: Any) -> str | None:
        if self._inner.passes(attrs, payload):
            shown = json.dumps(self._inner.spec, default=str, separators=(", ", ": "))
            return f"filter not {shown} matched"
        return None


class Filter:
    """A compiled filter. ``spec`` is the mapping as written; ``keys`` every key it reads (``not`` included), so
    a caller can compute costly attributes only for the filters that use them."""

    __slots__ = ("spec", "keys", "_clauses")

    def __init__(self, spec: dict[str, Any], keys: frozenset[str], clauses: tuple[_Clause | _Not, ...]) -> None:
        self.spec = spec
        self.keys = keys
        self._clauses = clauses

    def passes(self, attrs: Mapping[str, Any], payload: Any) -> bool:
        """Whether every clause passes: :meth:`check` without building the reason (matching's hot path)."""
        return all(clause.passes(attrs, payload) for clause in self._clauses)

    def check(self, attrs: Mapping[str, Any], payload: Any) -> str | None:
        """None when every clause passes, else why the first failing one failed."""
        for clause in self._clauses:
            reason = clause.check(attrs, payload)
            if reason is not None:
                return reason
        return None

    def __bool__(self) -> bool:
        """False for the empty filter, which every event passes."""
        return bool(self._clauses)

    def __repr__(self) -> str:
        return f"Filter({self.spec!r})"


def _scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list, tuple, set))


def _compile(spec: Any, where: str, problems: list[tuple[str, str]]) -> Filter:
    if not isinstance(spec, Mapping):
        problems.append((where, "must be a mapping of keys to values"))
        return Filter({}, frozenset(), ())
    clauses: list[_Clause | _Not] = []
    keys: set[str] = set()
    for key, expected in spec.items():
        at = f"{where}.{key}"
        if key == NOT_KEY:
            if not isinstance(expected, Mapping) or not expected:
                problems.append((at, "must be a non-empty mapping of clauses (not: {key: value})"))
                continue
            inner = _compile(expected, at, problems)
            clauses.append(_Not(inner))
            keys |= inner.keys
            continue
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            problems.append((at, "a key must be an attribute name or a dotted payload path (a.b.c)"))
            continue
        if isinstance(expected, Mapping):
            problems.append((at, "must be a value or a list of values, not a mapping (negate with not: {...})"))
            continue
        if isinstance(expected, (list, tuple)):
            if not expected:
                problems.append((at, "must not be an empty list (it could never match)"))
                continue
            bad = [i for i, item in enumerate(expected) if not _scalar(item)]
            for i in bad:
                problems.append((f"{at}[{i}]", "must be a single value, not a list or a mapping"))
            if bad:
                continue
            expected = list(expected)
        clauses.append(_Clause(key, expected))
        keys.add(key)
    return Filter(_plain(spec), frozenset(keys), tuple(clauses))


def _plain(value: Any) -> Any:
    """A JSON-able copy of the spec as written (for the rule's public description)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def compile_filter(spec: Mapping[str, Any], *, where: str = "filter") -> Filter:
    """Compile a filter mapping; raises FilterInvalid listing every bad clause by its location under ``where``."""
    problems: list[tuple[str, str]] = []
    compiled = _compile(spec, where, problems)
    if problems:
        raise FilterInvalid(problems)
    return compiled
