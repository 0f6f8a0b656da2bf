"""Which paths a proposed fix may change (pure): repo-relative posix paths checked against a repository's
``allowed_paths``. Used by :mod:`engine.git_ops` before anything is written or applied."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence

__all__ = ["clean_path", "path_allowed", "refused_paths"]


def path_allowed(path: str, allowed_paths: Sequence[str]) -> bool:
    """Whether a repo-relative posix ``path`` may be changed under ``allowed_paths``.

    The path must be relative and normalised, with no ``..`` component and no ``.git`` component (any case). An
    entry ``"."`` or ``""`` allows the whole repository; ``"agents/"`` allows everything under ``agents``; ``"config"``
    allows the file ``config`` and everything under the directory ``config`` (not ``configs/x``). Entries lose a
    leading ``./`` and are normalised; an entry that is absolute or climbs out with ``..`` allows nothing.
    """
    return clean_path(path) and any(_entry_allows(entry, path) for entry in allowed_paths)


def refused_paths(paths: Iterable[str], allowed_paths: Sequence[str]) -> list[str]:
    """The paths :func:`path_allowed` refuses, sorted and without duplicates."""
    return sorted({p for p in paths if not path_allowed(p, allowed_paths)})


def clean_path(path: str) -> bool:
    """Relative, normalised, posix, and clear of ``..``, ``.`` and ``.git`` components."""
    if not path or path.startswith("/") or "\\" in path or "\0" in path or posixpath.normpath(path) != path:
        return False
    return not any(part in (".", "..") or part.rstrip(". ").casefold() == ".git" for part in path.split("/"))


def _entry_allows(entry: str, path: str) -> bool:
    while entry.startswith("./"):
        entry = entry[2:]
    if entry in ("", "."):
        return True
    norm = posixpath.normpath(entry)
    if not clean_path(norm):
        return False
    return path.startswith(norm + "/") or (path == norm and not entry.endswith("/"))
