"""Playbooks: every failure class ships one, and a missing or empty one stops the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.detectors.model import FAILURE_CLASSES
from engine.errors import ConfigError
from engine.playbooks import load_playbooks


def test_every_failure_class_has_a_playbook_with_the_three_parts() -> None:
    books = load_playbooks()
    assert set(books) == set(FAILURE_CLASSES)
    for cls, text in books.items():
        assert text.startswith(f"# {cls}\n")
        for part in ("**What it means.**", "**Find the cause.**", "**Fix.**"):
            assert part in text, (cls, part)


def test_a_missing_or_empty_playbook_is_a_config_error_naming_it(tmp_path: Path) -> None:
    for cls in FAILURE_CLASSES[2:]:
        (tmp_path / f"{cls}.md").write_text(f"# {cls}\n")
    (tmp_path / f"{FAILURE_CLASSES[1]}.md").write_text("  \n")
    with pytest.raises(ConfigError) as caught:
        load_playbooks(tmp_path)
    assert [(i.key, i.reason.split(":")[0]) for i in caught.value.issues] == [
        (FAILURE_CLASSES[0], "playbook cannot be read"), (FAILURE_CLASSES[1], "playbook must hold 1 to 65536 bytes")]
