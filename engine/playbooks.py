"""Playbooks: one short markdown per failure class (what it means, how to find the cause, how to fix), shipped in
``config/playbooks/<class>.md`` and served with each incident. Read once, when the app starts."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from engine.detectors.model import FAILURE_CLASSES
from engine.errors import ConfigError, ConfigIssue

__all__ = ["load_playbooks"]

MAX_PLAYBOOK_BYTES = 65_536  # bytes of one playbook; a larger file is a mistake, not a playbook


def load_playbooks(directory: Path | None = None) -> dict[str, str]:
    """failure class -> its playbook's markdown, for every class in FAILURE_CLASSES. ``directory`` defaults to
    the shipped ``config/playbooks``. A missing, empty or oversized file -> ConfigError naming each one."""
    base = directory if directory is not None else Path(str(resources.files("config") / "playbooks"))
    books: dict[str, str] = {}
    issues: list[ConfigIssue] = []
    for cls in FAILURE_CLASSES:
        path = base / f"{cls}.md"
        try:
            raw = path.read_bytes()
        except OSError as exc:
            issues.append(ConfigIssue(str(path), cls, f"playbook cannot be read: {exc.strerror or exc}"))
            continue
        text = raw.decode("utf-8", errors="replace").strip()
        if not text or len(raw) > MAX_PLAYBOOK_BYTES:
            issues.append(ConfigIssue(str(path), cls, f"playbook must hold 1 to {MAX_PLAYBOOK_BYTES} bytes"))
            continue
        books[cls] = text + "\n"
    if issues:
        raise ConfigError(issues)
    return books
