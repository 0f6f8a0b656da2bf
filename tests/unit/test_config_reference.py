"""The configuration reference is generated from the settings model and cannot drift from it."""

from __future__ import annotations

from pathlib import Path

from config.reference import reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"


def test_the_committed_reference_is_what_the_model_generates() -> None:
    assert DOC.read_text() == reference_markdown(), "docs/config-reference.md is stale: run scripts/config_reference"


def test_every_key_has_a_meaning() -> None:
    rows = [line for line in reference_markdown().splitlines() if line.startswith("| `")]
    assert len(rows) > 100
    blank = [row.split(" | ")[0] for row in rows if row.rstrip().endswith("|  |")]
    assert blank == [], f"give these fields a comment in config/: {blank}"


def test_nested_keys_are_listed_with_their_path() -> None:
    text = reference_markdown()
    for key in ("workers[].repo.allowed_paths", "sources.<name>.secret", "detectors.workers.<name>.max_steps",
                "fix.replay_timeout", "api_keys[].scopes"):
        assert f"| `{key}` |" in text
