"""Write-back planning: which results ask for it, what policy allows, how long comments are cut."""

from __future__ import annotations

import json
from typing import cast

import pytest

from config.settings import PolicySpec, WorkerSpec
from engine.writeback import (
    Step,
    Target,
    TargetLike,
    WriteBackRequest,
    comment_marker,
    finished_keys,
    parse_result,
    plan,
)
from engine.writeback import StepResult as Result

PR = Target("octo", "repo", number=12, head_sha="abc123")
PUSH = Target("octo", "repo", number=None, head_sha="abc123")
ISSUE = Target("octo", "repo", number=7, head_sha=None)


def decisions(steps: list[Step]) -> dict[str, str]:
    return {step.key: step.decision for step in steps}


# -- parse_result ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "LGTM, ship it",
    "",
    "[1, 2, 3]",
    '{"summary": "no write-back keys here"}',
    '{"comment": null}',
    "{not json",
    '"comment"',
])
def test_ordinary_results_ask_for_nothing(text: str) -> None:
    assert parse_result(text) is None


def test_a_full_request_is_read() -> None:
    request = parse_result(json.dumps({
        "comment": "Looks good",
        "status": {"state": "success", "description": "review passed"},
        "labels": {"add": ["reviewed", "Reviewed", "lgtm"], "remove": ["needs-review"]},
        "extra": "ignored",
    }))
    assert request == WriteBackRequest(comment="Looks good", status="success", status_description="review passed",
                                       add_labels=("reviewed", "lgtm"), remove_labels=("needs-review",))


def test_short_forms_are_read() -> None:
    request = parse_result('  {"status": "failure", "labels": ["bug"]}\n')
    assert request is not None
    assert (request.status, request.status_description, request.add_labels) == ("failure", "", ("bug",))
    assert request.comment is None and request.problems == ()


def test_a_result_inside_one_fenced_block_is_read() -> None:
    request = parse_result('```json\n{"comment": "from a fence"}\n```')
    assert request is not None and request.comment == "from a fence"


@pytest.mark.parametrize(("body", "problem"), [
    ({"comment": 5}, "comment must be a non-empty string"),
    ({"comment": "   "}, "comment must be a non-empty string"),
    ({"status": "green"}, "status must be one of error, failure, pending, success"),
    ({"status": {"description": "no state"}}, "status must be one of"),
    ({"status": {"state": "success", "colour": "green"}}, "status has unknown keys: colour"),
    ({"labels": "bug"}, "labels must be a list of names or {add: [...], remove: [...]}"),
    ({"labels": {"add": ["ok"], "drop": ["x"]}}, "labels must be a list of names"),
    ({"labels": ["ok", 3]}, "labels must be a list of non-empty label names"),
    ({"labels": {"remove": [""]}}, "labels.remove must be a list of non-empty label names"),
    ({"labels": ["x" * 51]}, "labels: label names are at most 50 characters"),
])
def test_invalid_shapes_become_problems_not_exceptions(body: dict, problem: str) -> None:
    request = parse_result(json.dumps(body))
    assert request is not None
    assert any(p.startswith(problem) for p in request.problems), request.problems
    assert request.comment is None and request.status is None and request.add_labels == ()


def test_valid_fields_survive_a_sibling_problem() -> None:
    request = parse_result(json.dumps({"comment": "kept", "status": "nope"}))
    assert request is not None
    assert request.comment == "kept" and request.status is None and len(request.problems) == 1


# -- plan ------------------------------------------------------------------------------------------------------------


def test_default_policy_allows_everything_in_a_stable_order() -> None:
    request = WriteBackRequest(comment="hi", status="success", status_description="ok", add_labels=("bug",),
                               remove_labels=("wip",))
    steps = plan(request, PolicySpec(), PR)
    assert [(s.key, s.action, s.decision) for s in steps] == [
        ("comment", "comment", "allowed"),
        ("status", "status", "allowed"),
        ("label+bug", "add_label", "allowed"),
        ("label-wip", "remove_label", "allowed"),
    ]
    assert steps[0].args == {"owner": "octo", "repo": "repo", "number": 12, "body": "hi"}
    assert steps[1].args == {"owner": "octo", "repo": "repo", "sha": "abc123", "state": "success",
                             "description": "ok", "context": "taskyard", "target_url": None}
    json.dumps([s.args for s in steps])  # storable as is, for a later retry
    assert all(s.runnable for s in steps)


def test_policy_switches_deny_their_actions() -> None:
    request = WriteBackRequest(comment="hi", status="success", add_labels=("bug",))
    steps = plan(request, PolicySpec(comment=False, status=False, labels=False), PR)
    assert decisions(steps) == {"comment": "denied: policy.comment is off", "status": "denied: policy.status is off",
                                "label+bug": "denied: policy.labels is off"}
    assert not any(s.runnable for s in steps)


def test_blocked_and_unlisted_labels_are_denied_case_insensitively() -> None:
    policy = PolicySpec(blocked_labels=["Approved"], allowed_labels=["bug", "needs-review", "approved"])
    request = WriteBackRequest(add_labels=("bug", "approved", "security"), remove_labels=("NEEDS-REVIEW", "wip"))
    assert decisions(plan(request, policy, PR)) == {
        "label+bug": "allowed",
        "label+approved": "denied: label 'approved' is in blocked_labels",
        "label+security": "denied: label 'security' is not in allowed_labels",
        "label-NEEDS-REVIEW": "allowed",
        "label-wip": "denied: label 'wip' is not in allowed_labels",
    }


def test_a_push_has_no_number_so_comment_and_labels_are_skipped() -> None:
    request = WriteBackRequest(comment="hi", status="pending", add_labels=("bug",))
    assert decisions(plan(request, PolicySpec(), PUSH)) == {
        "comment": "skipped: the event has no issue or pull request number",
        "status": "allowed",
        "label+bug": "skipped: the event has no issue or pull request number",
    }


def test_an_issue_has_no_commit_so_status_is_skipped() -> None:
    steps = plan(WriteBackRequest(status="success"), PolicySpec(), ISSUE)
    assert decisions(steps) == {"status": "skipped: the event has no commit sha"}


def test_a_target_without_a_repository_skips_everything() -> None:
    class Loose:  # the shape event jobs pass: attributes straight from the event, possibly missing
        owner = None
        repo = "repo"
        number = "12"
        head_sha = None

    steps = plan(WriteBackRequest(comment="hi", add_labels=("bug",)), PolicySpec(), cast(TargetLike, Loose()))
    assert decisions(steps) == {"comment": "skipped: the event names no repository",
                                "label+bug": "skipped: the event names no repository"}


def test_a_long_comment_is_truncated_with_a_visible_note() -> None:
    body = "x" * 5000
    step = plan(WriteBackRequest(comment=body), PolicySpec(max_comment_chars=1000), PR)[0]
    assert step.decision == "truncated" and step.runnable
    assert len(step.args["body"]) == 1000
    assert step.args["body"].startswith("x" * 800)
    assert "Truncated by Taskyard: the result had 5,000 characters; the limit is 1,000." in step.args["body"]


def test_a_comment_at_the_limit_is_left_alone() -> None:
    step = plan(WriteBackRequest(comment="y" * 1000), PolicySpec(max_comment_chars=1000), PR)[0]
    assert step.decision == "allowed" and step.args["body"] == "y" * 1000


def test_the_default_limit_leaves_room_under_githubs_maximum() -> None:
    step = plan(WriteBackRequest(comment="z" * 70_000), PolicySpec(), PR)[0]
    assert step.decision == "truncated" and len(step.args["body"]) == 65_000
    assert len(step.args["body"] + "\n\n" + comment_marker("e" * 32 + "/" + "t" * 32)) < 65_536


def test_the_policy_shape_is_validated_on_workers() -> None:
    worker = WorkerSpec.model_validate({"name": "w", "handler": "m:f",
                                        "policy": {"labels": False, "allowed_labels": ["bug"]}})
    assert worker.policy.labels is False and worker.policy.allowed_labels == ["bug"]
    assert WorkerSpec.model_validate({"name": "w", "handler": "m:f"}).policy == PolicySpec()
    with pytest.raises(ValueError, match="max_comment_chars"):
        WorkerSpec.model_validate({"name": "w", "handler": "m:f", "policy": {"max_comment_chars": 0}})
    with pytest.raises(ValueError, match="extra"):
        WorkerSpec.model_validate({"name": "w", "handler": "m:f", "policy": {"comments": True}})


# -- markers and resumption ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["", "a b", "x-->", "a--b", "<script>"])
def test_markers_that_could_break_out_of_the_html_comment_are_refused(marker: str) -> None:
    with pytest.raises(ValueError):
        comment_marker(marker)


def test_finished_keys_are_successes_and_permanent_failures() -> None:
    results = [Result("comment", True, "101"), Result("status", False, "422", retryable=False),
               Result("label+bug", False, "503", retryable=True)]
    assert finished_keys(results) == {"comment", "status"}
