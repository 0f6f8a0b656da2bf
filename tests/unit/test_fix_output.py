"""Reading a fix agent's answer: JSON first, then a diff in the text, else a plan alone; never an exception."""

from __future__ import annotations

import json
import random

from engine.fix_output import EMPTY_OUTPUT, MAX_DIFF_BYTES, MAX_PLAN_CHARS, NO_PLAN, FixProposal, parse_output

DIFF = ("diff --git a/agent.py b/agent.py\n--- a/agent.py\n+++ b/agent.py\n@@ -1,3 +1,3 @@\n import os\n-x = 1\n"
        "+x = 2\n y = 3\n")


def test_a_whole_json_answer_gives_its_plan_and_diff() -> None:
    answer = json.dumps({"plan": "raise x", "diff": DIFF})
    assert parse_output(f"\n  {answer}\n") == FixProposal(plan="raise x", diff=DIFF)


def test_a_json_answer_with_null_or_missing_diff_has_no_diff() -> None:
    assert parse_output('{"plan": "nothing to change", "diff": null}') == FixProposal("nothing to change", None)
    assert parse_output('{"plan": "nothing to change"}') == FixProposal("nothing to change", None)


def test_json_whose_plan_is_not_a_string_is_not_an_answer() -> None:
    assert parse_output('{"plan": 3, "diff": null}') == FixProposal('{"plan": 3, "diff": null}', None)


def test_a_fenced_json_block_in_prose_is_the_answer_and_the_last_one_wins() -> None:
    text = ('Example:\n```json\n{"plan": "example", "diff": null}\n```\nMy answer:\n```json\n'
            + json.dumps({"plan": "real", "diff": DIFF}, indent=2) + "\n```\nDone.")
    assert parse_output(text) == FixProposal("real", DIFF)


def test_the_last_balanced_object_in_prose_is_the_answer_even_with_braces_in_strings() -> None:
    text = 'I think {this} matters. ' + json.dumps({"plan": "use {x} and \"}\"", "diff": None}) + " Thanks."
    assert parse_output(text) == FixProposal('use {x} and "}"', None)


def test_a_fenced_diff_block_is_the_diff_and_the_prose_around_it_the_plan() -> None:
    text = f"Change x to 2 because y.\n\n```diff\n{DIFF}```\n\nThat fixes it."
    assert parse_output(text) == FixProposal("Change x to 2 because y.\n\nThat fixes it.", DIFF)


def test_several_fenced_patches_are_joined_and_a_plain_fence_holding_a_diff_counts() -> None:
    other = "--- a/b.txt\n+++ b/b.txt\n@@ -1 +1 @@\n-a\n+b\n"
    text = f"Two files.\n```patch\n{DIFF}```\nand\n```\n{other}```\n"
    assert parse_output(text) == FixProposal("Two files.\n\nand", DIFF + other)


def test_a_bare_git_diff_ends_with_its_hunks_and_the_rest_is_the_plan() -> None:
    text = f"Plan: set x to 2.\n\n{DIFF}\nThis keeps y.\n- a bullet, not a diff line\n"
    result = parse_output(text)
    assert result.diff == DIFF
    assert result.plan == "Plan: set x to 2.\n\nThis keeps y.\n- a bullet, not a diff line"


def test_a_bare_diff_without_git_header_and_with_a_blank_context_line_is_read_whole() -> None:
    diff = "--- a/f.md\n+++ b/f.md\n@@ -1,3 +1,3 @@\n one\n\n-two\n+2\n\\ No newline at end of file\n"
    assert parse_output("fix:\n" + diff + "end") == FixProposal("fix:\nend", diff)


def test_a_diff_alone_has_no_plan_given() -> None:
    assert parse_output(DIFF) == FixProposal(NO_PLAN, DIFF)


def test_text_without_a_diff_is_all_plan() -> None:
    assert parse_output("  The tool is down; nothing to change.\n") == FixProposal(
        "The tool is down; nothing to change.", None)
    assert parse_output("--- not a diff\njust dashes") == FixProposal("--- not a diff\njust dashes", None)


def test_empty_output_says_so() -> None:
    assert parse_output("") == FixProposal(EMPTY_OUTPUT, None)
    assert parse_output(" \n\t") == FixProposal(EMPTY_OUTPUT, None)


def test_crlf_line_endings_become_lf_in_json_and_bare_diffs() -> None:
    crlf = DIFF.replace("\n", "\r\n")
    assert parse_output(json.dumps({"plan": "p", "diff": crlf})).diff == DIFF
    assert parse_output("Plan\r\n" + crlf).diff == DIFF


def test_a_diff_gets_a_final_newline_and_a_blank_diff_is_none() -> None:
    assert parse_output(json.dumps({"plan": "p", "diff": DIFF.rstrip("\n")})).diff == DIFF
    assert parse_output(json.dumps({"plan": "p", "diff": " \n\n "})) == FixProposal("p", None)


def test_a_diff_over_the_limit_is_dropped_and_the_plan_says_so() -> None:
    huge = DIFF + "".join(f"+line {i} " + "é" * 60 + "\n" for i in range(10_000))
    assert len(huge) < MAX_DIFF_BYTES < len(huge.encode())  # over the limit in bytes, not in characters
    result = parse_output(json.dumps({"plan": "big change", "diff": huge}))
    assert result.diff is None
    assert result.plan.startswith("big change") and f"more than the {MAX_DIFF_BYTES}-byte limit" in result.plan


def test_a_diff_at_the_limit_is_kept() -> None:
    diff = "+" + "x" * (MAX_DIFF_BYTES - 2) + "\n"
    assert parse_output(json.dumps({"plan": "p", "diff": diff})).diff == diff


def test_a_long_plan_is_clipped() -> None:
    result = parse_output(json.dumps({"plan": "word " * 10_000, "diff": None}))
    assert len(result.plan) <= MAX_PLAN_CHARS and result.plan.endswith("(plan clipped)")
    dropped = parse_output(json.dumps({"plan": "word " * 10_000, "diff": "+" + "x" * MAX_DIFF_BYTES}))
    assert len(dropped.plan) <= MAX_PLAN_CHARS and "limit: dropped" in dropped.plan


def test_deeply_nested_braces_do_not_raise() -> None:
    assert parse_output("{" * 50_000 + "}" * 50_000).diff is None
    assert parse_output('{"plan": ' + "[" * 100_000).diff is None


def test_random_text_never_raises_and_always_gives_a_well_formed_proposal() -> None:
    rng = random.Random(20240601)
    pieces = ["{", "}", '"', "\\", "`", "```", "```json\n", "```diff\n", "\n", "\r\n", "\r", " ",
              "diff --git a/x b/x\n", "--- a/x\n", "+++ b/x\n", "@@ -1,2 +1,3 @@\n", "@@ -0,0 +1 @@\n", "+", "-",
              "\\ No newline\n", '"plan"', '"diff"', ":", ",", "null", "plan", "é", "\u2028", "\x00", "\ud800",
              "x" * 50, '{"plan": "p", "diff": "']
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        result = parse_output(text)
        assert isinstance(result, FixProposal)
        assert result.plan and len(result.plan) <= MAX_PLAN_CHARS
        assert result.diff is None or (result.diff.endswith("\n") and "\r\n" not in result.diff
                                       and result.diff.strip())
