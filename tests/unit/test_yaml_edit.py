"""The text-level YAML editor: one top-level key changes, everything else stays as the user wrote it."""

from __future__ import annotations

import pytest
import yaml

from engine.yaml_edit import dump_value, one_line, read_mapping, set_in_mapping, set_top_level

SETTINGS = """\
# The agent's settings
model: claude  # the model we pay for
max_steps: 500

tool_retries:
  # the web is flaky
  web: {attempts: 2}
  fetch:
    attempts: 4

# logging
log_level: info
"""


def test_replacing_a_scalar_changes_only_its_line_and_keeps_its_inline_comment() -> None:
    edited = set_top_level(SETTINGS, "model", "haiku")
    assert edited == SETTINGS.replace("model: claude  # the model", "model: haiku  # the model")


def test_replacing_a_scalar_without_comment_changes_one_line() -> None:
    edited = set_top_level(SETTINGS, "max_steps", 200)
    assert edited == SETTINGS.replace("max_steps: 500", "max_steps: 200")


def test_replacing_a_block_takes_its_continuation_lines_but_not_the_comment_after_it() -> None:
    edited = set_top_level(SETTINGS, "tool_retries", {"search": {"attempts": 3}})
    assert edited == SETTINGS.replace(
        "tool_retries:\n  # the web is flaky\n  web: {attempts: 2}\n  fetch:\n    attempts: 4\n",
        "tool_retries:\n  search:\n    attempts: 3\n")
    assert "# logging\nlog_level: info\n" in edited


def test_a_column_zero_comment_between_block_lines_belongs_to_the_block() -> None:
    text = "a:\n  x: 1\n# inside\n  y: 2\nb: 3\n"
    assert set_top_level(text, "a", 5) == "a: 5\nb: 3\n"


def test_list_items_at_column_zero_are_part_of_the_block() -> None:
    text = "markers:\n- one\n- two\naction: warn\n"
    assert set_top_level(text, "markers", ["three"]) == "markers:\n  - three\naction: warn\n"


def test_a_missing_key_is_appended_at_the_end_with_a_newline_added_if_needed() -> None:
    assert set_top_level("a: 1", "b", 2) == "a: 1\nb: 2\n"
    assert set_top_level("a: 1\n# tail\n", "b", 2) == "a: 1\n# tail\nb: 2\n"
    assert set_top_level("", "timeout", "20m") == "timeout: 20m\n"


def test_mappings_and_lists_are_written_as_blocks_indented_two_spaces() -> None:
    assert dump_value("r", {"web": {"attempts": 3, "backoff_s": 1.0}}) == (
        "r:\n  web:\n    attempts: 3\n    backoff_s: 1.0\n")
    assert dump_value("m", ["a", "b"]) == "m:\n  - a\n  - b\n"
    assert dump_value("e", {}) == "e: {}\n"
    assert dump_value("n", None) == "n: null\n"


def test_scalars_that_yaml_would_misread_are_quoted_and_read_back() -> None:
    for value in ("yes", "10:30", "null", "#hash", "a: b", "1e3", "", " padded "):
        assert read_mapping(set_top_level("k: 1\n", "k", value)) == {"k": value}


def test_a_duplicate_key_is_set_once_and_its_later_copy_removed() -> None:
    text = "a: 1\nb: 2\na: 3\nc: 4\n"
    assert set_top_level(text, "a", 9) == "a: 9\nb: 2\nc: 4\n"


def test_crlf_files_keep_crlf_line_endings() -> None:
    edited = set_top_level("a: 1\r\nb: 2\r\n", "c", {"x": 1})
    assert edited == "a: 1\r\nb: 2\r\nc:\r\n  x: 1\r\n"


def test_read_mapping_reads_empty_documents_as_empty_and_refuses_non_mappings() -> None:
    assert read_mapping("") == {}
    assert read_mapping("# only a comment\n") == {}
    with pytest.raises(ValueError, match="not a mapping"):
        read_mapping("- a\n- b\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        read_mapping("a: [1, 2\n")


def test_an_edit_that_would_break_an_alias_is_refused() -> None:
    with pytest.raises(ValueError):
        set_top_level("base: &b 1\nother: *b\n", "base", 2)


def test_a_flow_style_document_cannot_be_appended_to() -> None:
    with pytest.raises(ValueError):
        set_top_level("{a: 1}\n", "b", 2)


def test_set_top_level_refuses_a_document_that_is_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="not a mapping"):
        set_top_level("- a\n", "b", 2)


def test_set_in_mapping_adds_an_entry_inside_a_block_keeping_its_comments() -> None:
    edited = set_in_mapping(SETTINGS, "tool_retries", "search", {"attempts": 3, "backoff_s": 1.0})
    assert "  # the web is flaky\n  web: {attempts: 2}\n" in edited
    assert "    attempts: 4\n  search:\n    attempts: 3\n    backoff_s: 1.0\n\n# logging\n" in edited
    data = read_mapping(edited)
    assert data["tool_retries"] == {"web": {"attempts": 2}, "fetch": {"attempts": 4},
                                    "search": {"attempts": 3, "backoff_s": 1.0}}
    assert {k: v for k, v in data.items() if k != "tool_retries"} == {
        k: v for k, v in yaml.safe_load(SETTINGS).items() if k != "tool_retries"}


def test_set_in_mapping_replaces_an_existing_entry_in_place() -> None:
    edited = set_in_mapping(SETTINGS, "tool_retries", "web", {"attempts": 3})
    assert "  # the web is flaky\n  web:\n    attempts: 3\n  fetch:\n" in edited


def test_set_in_mapping_rewrites_a_flow_mapping_whole_and_creates_a_missing_one() -> None:
    assert set_in_mapping("r: {a: 1}\nz: 0\n", "r", "b", 2) == "r:\n  a: 1\n  b: 2\nz: 0\n"
    assert set_in_mapping("z: 0\n", "r", "b", 2) == "z: 0\nr:\n  b: 2\n"


def test_set_in_mapping_refuses_a_key_that_is_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="not a mapping"):
        set_in_mapping("r: [1]\n", "r", "b", 2)


def test_one_line_shows_values_in_flow_style() -> None:
    assert one_line({"attempts": 3, "backoff_s": 1.0}) == "{attempts: 3, backoff_s: 1.0}"
    assert one_line(200) == "200"
    assert one_line(["a", "b"]) == "[a, b]"
