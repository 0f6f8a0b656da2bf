"""Judging a regression run (pure): each replayed case before and after the fix, the run's counts and verdict,
and the side-by-side comparison.

A side (one replayed task) **fails** when the detectors find the incident's failure class in its new trace.
A case is ``error`` when a side could not be judged (its task never ran, was cancelled, has no trace, or did
not finish in time); else ``not_fixed`` when the after side fails, or when the fix **broke** the run (the after
side shows a failure class the before side did not, or ended other than ``completed`` where the before side
completed: a "fix" that deletes the agent must not pass as one); ``fixed`` when only the before side fails;
and ``not_reproduced`` when neither does: a failure that does not show before the fix proves nothing about the
fix, so it is never counted as fixed. The run's verdict: ``not_fixed`` if any case is; else ``error`` if any
case is; else ``fixed`` if any case is; else ``not_reproduced``. So ``fixed`` means: at least one case
reproduced the failure before the fix, and no case showed it after.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CASE_RESULTS", "VERDICTS", "case_result", "compare", "settle", "side_failed", "summarize"]

CASE_RESULTS = ("fixed", "not_fixed", "not_reproduced", "error")
VERDICTS = ("fixed", "not_fixed", "not_reproduced", "error")
MAX_OUTPUT_DIFF_CHARS = 20_000  # characters of the before/after output diff in a comparison


def side_failed(detections: Sequence[Mapping[str, Any]], failure_class: str) -> bool:
    """Whether a replayed run shows the incident's failure class."""
    return any(d.get("failure_class") == failure_class for d in detections)


def case_result(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """One case's result from its two judged sides (each ``{"failed": bool}`` or ``{"error": str}``)."""
    if before.get("error") or after.get("error") or "failed" not in before or "failed" not in after:
        return "error"
    if after["failed"]:
        return "not_fixed"
    return "fixed" if before["failed"] else "not_reproduced"


def broken(before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    """Why the after side counts as a failure although the incident's class is gone, or None."""
    gone_wrong = sorted({d["failure_class"] for d in after.get("detections", [])}
                        - {d["failure_class"] for d in before.get("detections", [])})
    if gone_wrong:
        return "new failures after the fix: " + ", ".join(gone_wrong)
    if before.get("state") == "completed" and after.get("state") not in (None, "completed"):
        return f"the task ended {after.get('state')} after the fix (it completed before)"
    return None


def settle(case: dict[str, Any]) -> str:
    """Judge a case whose sides are judged: sets ``result``, and on the after side ``failed`` and ``broken``
    when the fix broke the run. Answers the result."""
    before, after = case.get("before") or {}, case.get("after") or {}
    result = case_result(before, after)
    if result in ("fixed", "not_reproduced"):
        reason = broken(before, after)
        if reason is not None:
            after["failed"] = True
            after["broken"] = reason
            result = "not_fixed"
    case["result"] = result
    return result


def summarize(cases: Sequence[Mapping[str, Any]]) -> tuple[dict[str, int], str]:
    """The counts (over sides that were judged) and the verdict of a run's cases (each with ``result``)."""
    counts = {"before_fail": 0, "before_pass": 0, "after_fail": 0, "after_pass": 0}
    for case in cases:
        for side in ("before", "after"):
            judged = case.get(side) or {}
            if "failed" in judged and not judged.get("error"):
                counts[f"{side}_{'fail' if judged['failed'] else 'pass'}"] += 1
    results = {case.get("result") for case in cases}
    if not cases:
        verdict = "error"
    elif "not_fixed" in results:
        verdict = "not_fixed"
    elif "error" in results or None in results:
        verdict = "error"
    elif "fixed" in results:
        verdict = "fixed"
    else:
        verdict = "not_reproduced"
    return counts, verdict


def _delta(before: Any, after: Any) -> float | int | None:
    if isinstance(before, int | float) and isinstance(after, int | float):
        return after - before
    return None


def compare(cases: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per case, side by side: detections, duration, tokens, cost and a unified diff of the outputs."""
    out = []
    for case in cases:
        before, after = case.get("before") or {}, case.get("after") or {}
        b_classes = {(d["failure_class"], d["signature"]) for d in before.get("detections", [])}
        a_classes = {(d["failure_class"], d["signature"]) for d in after.get("detections", [])}
        b_out, a_out = before.get("output") or "", after.get("output") or ""
        diff = "".join(difflib.unified_diff(b_out.splitlines(keepends=True), a_out.splitlines(keepends=True),
                                            fromfile="before", tofile="after"))
        out.append({
            "task_id": case.get("task_id"), "worker": case.get("worker"), "result": case.get("result"),
            "before": _side_view(before), "after": _side_view(after),
            "changes": {
                "detections_gone": [{"failure_class": c, "signature": s} for c, s in sorted(b_classes - a_classes)],
                "detections_new": [{"failure_class": c, "signature": s} for c, s in sorted(a_classes - b_classes)],
                "duration_ms": _delta(before.get("duration_ms"), after.get("duration_ms")),
                "tokens": _delta(before.get("tokens"), after.get("tokens")),
                "cost_usd": _delta(before.get("cost_usd"), after.get("cost_usd")),
                "output_changed": b_out != a_out,
            },
            "output_diff": diff[:MAX_OUTPUT_DIFF_CHARS],
        })
    return out


def _side_view(side: Mapping[str, Any]) -> dict[str, Any]:
    return {name: side.get(name) for name in ("task_id", "trace_id", "state", "failed", "error", "duration_ms",
                                              "tokens", "cost_usd", "events")} | {
        "detections": list(side.get("detections", []))}
