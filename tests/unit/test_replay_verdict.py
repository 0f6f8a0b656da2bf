"""Judging regression runs: per-case results, counts and the verdict, and the side-by-side comparison."""

from __future__ import annotations

import pytest

from engine.replay_verdict import case_result, compare, settle, side_failed, summarize

LOOP = {"failure_class": "loop", "signature": "tool:search"}
CRASH = {"failure_class": "crash", "signature": "boom"}


def test_a_side_fails_only_on_the_incidents_class() -> None:
    assert side_failed([LOOP], "loop") is True
    assert side_failed([CRASH], "loop") is False
    assert side_failed([], "loop") is False


@pytest.mark.parametrize(("before", "after", "result"), [
    ({"failed": True}, {"failed": False}, "fixed"),
    ({"failed": True}, {"failed": True}, "not_fixed"),
    ({"failed": False}, {"failed": True}, "not_fixed"),
    ({"failed": False}, {"failed": False}, "not_reproduced"),
    ({"error": "cancelled"}, {"failed": False}, "error"),
    ({"failed": True}, {"error": "no trace"}, "error"),
    ({}, {"failed": False}, "error"),
])
def test_each_case_is_judged_from_both_sides(before: dict, after: dict, result: str) -> None:
    assert case_result(before, after) == result


def _case(result: str, before: bool | None, after: bool | None) -> dict:
    side = lambda failed: {} if failed is None else {"failed": failed}  # noqa: E731
    return {"result": result, "before": side(before), "after": side(after)}


def test_fixed_needs_a_reproduced_failure_and_no_failure_after() -> None:
    counts, verdict = summarize([_case("fixed", True, False), _case("not_reproduced", False, False)])
    assert verdict == "fixed"
    assert counts == {"before_fail": 1, "before_pass": 1, "after_fail": 0, "after_pass": 2}


def test_a_failure_that_never_reproduces_is_not_counted_as_fixed() -> None:
    assert summarize([_case("not_reproduced", False, False)] * 3)[1] == "not_reproduced"


def test_any_failure_after_the_fix_means_not_fixed_even_beside_errors() -> None:
    cases = [_case("fixed", True, False), _case("not_fixed", True, True), _case("error", None, None)]
    assert summarize(cases)[1] == "not_fixed"


def test_an_error_keeps_a_partial_success_from_claiming_fixed() -> None:
    counts, verdict = summarize([_case("fixed", True, False), _case("error", True, None)])
    assert verdict == "error" and counts["before_fail"] == 2 and counts["after_pass"] == 1


def test_no_cases_is_an_error() -> None:
    assert summarize([])[1] == "error"


def test_the_comparison_shows_what_changed_per_case() -> None:
    case = {"task_id": "t1", "worker": "w", "result": "fixed",
            "before": {"detections": [LOOP, CRASH], "duration_ms": 900, "tokens": 50, "cost_usd": 0.5,
                       "output": "made 5 calls\n"},
            "after": {"detections": [CRASH], "duration_ms": 300, "tokens": 20, "cost_usd": 0.1,
                      "output": "made 2 calls\n"}}
    [view] = compare([case])
    assert view["changes"]["detections_gone"] == [LOOP] and view["changes"]["detections_new"] == []
    assert view["changes"]["duration_ms"] == -600 and view["changes"]["tokens"] == -30
    assert view["changes"]["cost_usd"] == pytest.approx(-0.4) and view["changes"]["output_changed"] is True
    assert "-made 5 calls" in view["output_diff"] and "+made 2 calls" in view["output_diff"]


def test_the_comparison_of_a_side_that_never_ran_has_no_deltas() -> None:
    [view] = compare([{"task_id": "t", "before": {"error": "cancelled"}, "after": {"duration_ms": 5}}])
    assert view["changes"]["duration_ms"] is None and view["before"]["error"] == "cancelled"


def _judged(state: str, *classes: str, failed: bool) -> dict:
    return {"state": state, "failed": failed,
            "detections": [{"failure_class": c, "signature": "s"} for c in classes]}


def test_a_fix_that_breaks_the_run_is_not_fixed_even_without_the_incidents_class() -> None:
    # the "fix" deleted the agent: the loop is gone, but the task now fails with a new failure class
    case = {"before": _judged("completed", "loop", failed=True),
            "after": _judged("failed", "exit_nonzero", failed=False)}
    assert settle(case) == "not_fixed"
    assert case["after"]["failed"] is True and "exit_nonzero" in case["after"]["broken"]
    assert summarize([case]) == ({"before_fail": 1, "before_pass": 0, "after_fail": 1, "after_pass": 0},
                                 "not_fixed")


def test_a_run_that_completed_before_and_not_after_is_broken() -> None:
    case = {"before": _judged("completed", "loop", failed=True), "after": _judged("failed", failed=False)}
    assert settle(case) == "not_fixed" and "ended failed" in case["after"]["broken"]


def test_a_failing_run_that_now_completes_cleanly_is_fixed() -> None:
    case = {"before": _judged("failed", "timeout", failed=True), "after": _judged("completed", failed=False)}
    assert settle(case) == "fixed" and "broken" not in case["after"]
