"""The configuration reference, generated from the settings model so it cannot drift from the code.

``reference_markdown()`` walks :class:`config.settings.Settings` and every model under it and lists each key
with its type, default and the comment written beside the field in the source (the model is the documentation).
``scripts/config_reference`` writes it to ``docs/config-reference.md``; a test fails when the file is stale.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from config.settings import Settings

__all__ = ["reference_markdown"]

_FIELD = re.compile(r"^\s+(\w+)\s*:[^#\n]*(?:#\s*(.+))?$")
_COMMENT = re.compile(r"^\s+#\s?(.*)$")
_NOT_PROSE = re.compile(r"^(?:type: ?ignore|noqa)")
_HEADER = """# Configuration reference

Generated from the settings model by `scripts/config_reference` (do not edit: a test fails when this file is
stale). Every key of `taskyard.yaml`, its type, its default and what it means. Durations are seconds or `500ms`,
`30s`, `10m`, `1h`, `1d`; `docs/configuration.md` explains the keys with examples.

| key | type | default | meaning |
|---|---|---|---|
"""


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment beside it in the class source (its own class or a base class)."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        above: list[str] = []  # a comment block just above a field describes it when it has no comment of its own
        for line in source.splitlines():
            comment = _COMMENT.match(line)
            if comment:
                above.append(comment.group(1).strip())
                continue
            match = _FIELD.match(line)
            if match and match.group(1) in cls.model_fields:
                own = (match.group(2) or "").strip()
                text = own if own and not _NOT_PROSE.match(own) else " ".join(above)
                if text:
                    found[match.group(1)] = text
            above = []
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``, nested)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    text = re.sub(r"\b(?:config|pathlib)\.[\w.]*\.(\w+)", r"\1", text)
    return re.sub(r"Annotated\[(\w+), [^\]]*\]", r"\1", text)


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "required"
    if isinstance(value, BaseModel):
        return "see below"
    return "`" + repr(value).replace("PosixPath(", "").replace("')", "'") + "`"


def _rows(model: type[BaseModel], prefix: str, seen: frozenset[type]) -> Iterator[str]:
    comments = _comments(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        meaning = field.description or comments.get(name, "")
        if not meaning and model.__name__ == "ThresholdOverride":
            meaning = f"this project's or worker's detectors.{name}"
        meaning = meaning.replace("|", "\\|")
        kind = _type_name(field.annotation).replace("|", "\\|")  # a bare | would end the table cell
        default = _default(field).replace("|", "\\|")
        yield f"| `{key}` | `{kind}` | {default} | {meaning} |"
        for sub in _models_in(field.annotation):
            if sub not in seen:
                many = "[]" if "list[" in str(field.annotation) else (
                    ".<name>" if "dict[" in str(field.annotation) else "")
                yield from _rows(sub, f"{key}{many}.", seen | {sub})


def reference_markdown() -> str:
    return _HEADER + "\n".join(_rows(Settings, "", frozenset({Settings}))) + "\n"
