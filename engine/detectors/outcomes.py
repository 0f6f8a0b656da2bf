"""How runs ended: crash, timeout, lost_worker, exit_nonzero, empty_output, validator_failure, cost_spike (pure).

A trace is read run by run (a retried task has one run per attempt, :func:`engine.detectors.events.runs`), so an
attempt that crashed is found even when the retry completed. What the trace's events cannot show (a task that
failed with ``worker lost`` before any event was written) comes from :class:`TraceFacts`.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence

from config.detectors import Thresholds
from engine.detectors.events import (
    END,
    Event,
    Run,
    detection,
    first_str,
    number,
    payload,
    runs,
    seq_of,
    tool_name,
)
from engine.detectors.fingerprint import error_text, fingerprint
from engine.detectors.model import Detection, TraceFacts

__all__ = ["OUTCOME_VERSIONS", "UNCAUGHT_CONFIDENCE", "detect_cost_spike", "detect_crash", "detect_empty_output",
           "detect_exit_nonzero", "detect_lost_worker", "detect_timeout", "detect_validator_failure"]

# Bump a class's version when what it reports for the same trace changes (signatures above all).
# crash/2: fingerprints changed (exception line of multi-line messages, random ids masked) and a failed run whose
# error is an uncaught exception is a crash; exit_nonzero/2: an attempt that will retry is not judged.
OUTCOME_VERSIONS = {"crash": "crash/2", "timeout": "timeout/1", "lost_worker": "lost_worker/1",
                    "exit_nonzero": "exit_nonzero/2", "empty_output": "empty_output/1",
                    "validator_failure": "validator_failure/1", "cost_spike": "cost_spike/1"}

UNCAUGHT_CONFIDENCE = 0.8  # a crash read from a failed run's error text
_FATAL_LEVELS = frozenset({"fatal", "critical", "panic"})
_TIMEOUT_ERROR = re.compile(r"^\s*timeout after\b", re.IGNORECASE)
_WORKER_LOST = re.compile(r"\bworker lost\b", re.IGNORECASE)
_WORKER_STOPPING = re.compile(r"^\s*worker stopping\b", re.IGNORECASE)
# An uncaught exception as a worker records it ("<ExceptionType>: message", workers/backends/handler.py), or a
# Python traceback. "exit code 1: ...", "timeout after 5s" and "HTTP 500: ..." are not.
_UNCAUGHT = re.compile(r"^\s*[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b|Traceback \(most recent call last\)")
# httpx transport failures an endpoint worker records the same way: the endpoint could not be reached, which is
# not the agent crashing.
_TRANSPORT = re.compile(r"^\s*(?:httpx\.)?(?:ConnectError|ReadError|WriteError|CloseError|NetworkError|ProxyError"
                        r"|RemoteProtocolError|LocalProtocolError|ProtocolError|TransportError|UnsupportedProtocol"
                        r"|ConnectTimeout|ReadTimeout|WriteTimeout|PoolTimeout|TimeoutException|TooManyRedirects)\b")
_EMPTY_RESULTS = frozenset({"", "null", '""', "''", "{}", "[]"})  # a completed task's result that says nothing


def _who(facts: TraceFacts) -> str:
    return facts.worker or "-"


def _fatal(event: Event) -> bool:
    data = payload(event)
    level = data.get("level") or data.get("severity")
    return (data.get("fatal") is True or data.get("uncaught") is True or data.get("unhandled") is True
            or (isinstance(level, str) and level.lower() in _FATAL_LEVELS))


# --- crash -----------------------------------------------------------------------------------------------------

def _uncaught(run: Run, facts: TraceFacts) -> str:
    """The error of a failed run that ended on an uncaught exception (``KeyError: 'x'``, a traceback), or ""."""
    end = run.end_payload
    if run.status != "failed" or end.get("closed_by") == "taskyard":
        return ""
    error = first_str(end, ("error",))
    if not _UNCAUGHT.search(error[:2000]) or _WORKER_STOPPING.match(error):
        return ""
    if facts.worker_kind == "endpoint" and _TRANSPORT.match(error):
        return ""
    return error


def _crash_of_run(run: Run, facts: TraceFacts) -> tuple[str, list[int], int | None, float] | None:
    """(error text, evidence, critical seq, confidence) when the run crashed, else None."""
    end = run.end_payload
    crash_signature = first_str(end, ("crash_signature",))
    errors = [e for e in run.events if e.get("type") == "error"]
    fatal = [e for e in errors if _fatal(e)]
    if not (run.status == "crashed" or crash_signature or fatal):
        uncaught = _uncaught(run, facts)
        if not uncaught or run.end is None:
            return None
        end_seq = seq_of(run.end)
        return uncaught, [end_seq], end_seq, UNCAUGHT_CONFIDENCE
    evidence = [seq_of(e) for e in fatal]
    if run.end is not None and (run.status == "crashed" or crash_signature):
        evidence.append(seq_of(run.end))
    if crash_signature:
        text = crash_signature
    elif fatal:
        text = error_text(payload(fatal[0]))
    else:
        text = error_text(end) or (error_text(payload(errors[-1])) if errors else "")
        if errors:
            evidence.append(seq_of(errors[-1]))
    critical = seq_of(fatal[0]) if fatal else (seq_of(errors[-1]) if errors else min(evidence, default=None))
    return text, evidence, critical, 0.95


def detect_crash(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    """A run whose ``session_end`` says ``crashed`` or carries a ``crash_signature``, or an ``error`` event marked
    fatal (``fatal``/``uncaught``/``unhandled`` true, or level fatal/critical/panic); or a run that ended
    ``failed`` with an error that reads as an uncaught exception (``KeyError: 'x'``: how a handler's exception is
    recorded; a Python traceback), with confidence ``UNCAUGHT_CONFIDENCE`` (the error is read, not declared).
    Every attempt counts, one that will retry too: a retry that succeeds does not make the exception less of a
    bug, and every attempt with the same exception has the same signature (one detection). Not a crash: a run
    Taskyard closed, a worker stopping, an endpoint that could not be reached (``ConnectError: ...``), and errors
    that do not name an exception (``exit code 1: ...``, ``timeout after 5s``, ``HTTP 500: ...``). Signature:
    the fingerprint of the error."""
    found = []
    for run in runs(events):
        crash = _crash_of_run(run, facts)
        if crash is None:
            continue
        text, evidence, critical, confidence = crash
        signature = fingerprint(text) or "crashed (no error text)"
        found.append(detection("crash", signature, confidence=confidence, evidence=evidence, critical=critical,
                               summary=f"crashed: {signature}", version=OUTCOME_VERSIONS["crash"]))
    if not found and facts.status == "crashed":
        errors = [e for e in events if e.get("type") == "error"]
        text = error_text(payload(errors[-1])) if errors else (facts.task_error or "")
        signature = fingerprint(text) or "crashed (no error text)"
        critical = seq_of(errors[-1]) if errors else None
        found.append(detection("crash", signature, confidence=0.8, evidence=[critical] if critical else [],
                               critical=critical, summary=f"crashed: {signature}", version=OUTCOME_VERSIONS["crash"]))
    return found


# --- timeout and lost_worker ----------------------------------------------------------------------------------

def _pending_tool(run: Run) -> str:
    """The tool a run was waiting on when it ended (a tool_call with no tool_result after it), or ""."""
    pending = ""
    for event in run.events:
        kind = event.get("type")
        if kind == "tool_call":
            pending = tool_name(payload(event)) or "<unnamed>"
        elif kind == "tool_result":
            pending = ""
    return pending


def detect_timeout(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    """A run that ended with status ``timeout``, or a task that failed with ``timeout after ...``. Signature:
    ``<worker>/tool:<name>`` when it was waiting on a tool, else ``<worker>/run``."""
    found = []
    version = OUTCOME_VERSIONS["timeout"]
    for run in runs(events):
        if run.end is None or run.status != "timeout":
            continue
        tool = _pending_tool(run)
        where = f"tool:{tool}" if tool else "run"
        end = seq_of(run.end)
        found.append(detection("timeout", f"{_who(facts)}/{where}", confidence=1.0, evidence=[end], critical=end,
                               summary=f"timed out{f' waiting on {tool}' if tool else ''}", version=version))
    if not found and (facts.status == "timeout" or _TIMEOUT_ERROR.match(facts.task_error or "")):
        last = seq_of(events[-1]) if events else None
        found.append(detection("timeout", f"{_who(facts)}/run", confidence=0.9, evidence=[last] if last else [],
                               critical=last,
                               summary=f"timed out ({(facts.task_error or facts.status)[:100]})", version=version))
    return found


def detect_lost_worker(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    """A run that lost its worker: Taskyard closed the trace with ``worker lost``, or a run began again (another
    ``task_started``) while the previous one had not ended, or the task failed with ``worker lost``."""
    found = []
    version = OUTCOME_VERSIONS["lost_worker"]
    for run in runs(events):
        if run.cut and run.started is not None:
            start = seq_of(run.started)
            found.append(detection("lost_worker", _who(facts), confidence=0.9,
                                   evidence=[start, seq_of(run.events[-1])], critical=seq_of(run.events[-1]),
                                   summary="a run stopped without ending its trace and the task started again",
                                   version=version))
        elif run.end is not None and _WORKER_LOST.search(first_str(run.end_payload, ("error",))):
            end = seq_of(run.end)
            found.append(detection("lost_worker", _who(facts), confidence=1.0, evidence=[end], critical=end,
                                   summary="the task failed: worker lost", version=version))
    if not found and _WORKER_LOST.search(facts.task_error or ""):
        found.append(detection("lost_worker", _who(facts), confidence=1.0, evidence=[], critical=None,
                               summary="the task failed: worker lost", version=version))
    return found


# --- exit_nonzero and empty_output ----------------------------------------------------------------------------

def detect_exit_nonzero(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    """A command worker's run that exited with a code other than 0 (a run killed for its timeout or cancelled is
    a timeout, not this). An attempt that will retry (``will_retry``) is not judged: the retry's own end decides;
    nor is one the worker ended because it was stopping (``worker stopping: ...``: the command was killed, not
    failing). Signature: ``<worker>:exit <code>``."""
    if facts.worker_kind != "command":
        return []
    found = []
    for run in runs(events):
        ending = run.end_payload
        code = ending.get("exit_code")
        if (not isinstance(code, int) or isinstance(code, bool) or code == 0
                or run.status in ("timeout", "cancelled") or ending.get("will_retry") is True
                or _WORKER_STOPPING.match(first_str(ending, ("error",)))):
            continue
        end = seq_of(run.end) if run.end is not None else None
        found.append(detection("exit_nonzero", f"{_who(facts)}:exit {code}", confidence=1.0,
                               evidence=[end] if end else [], critical=end, summary=f"the command exited with {code}",
                               version=OUTCOME_VERSIONS["exit_nonzero"]))
    return found


def detect_empty_output(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    """A completed run with no output: the task's result is blank (or ``null``, ``{}``, ``[]``, ``""``), or the
    final ``session_end`` reports an ``output`` that is blank. A result not known (None) is not judged."""
    ends = [e for e in events if e.get("type") == END]
    last = ends[-1] if ends else None
    completed = facts.status == "completed" or facts.task_state == "completed"
    if not completed:
        return []
    output = payload(last).get("output") if last is not None else None
    blank_end = isinstance(output, str) and output.strip() in _EMPTY_RESULTS or output in ({}, [])
    blank_task = facts.task_result is not None and facts.task_result.strip() in _EMPTY_RESULTS
    if not (blank_end or blank_task):
        return []
    critical = seq_of(last) if last is not None else None
    return [detection("empty_output", _who(facts), confidence=0.9, evidence=[critical] if critical else [],
                      critical=critical, summary="completed without any output",
                      version=OUTCOME_VERSIONS["empty_output"])]


# --- validator_failure ----------------------------------------------------------------------------------------

def _failed_check(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    passed = data.get("passed", data.get("ok", data.get("success")))
    if passed is False or (isinstance(passed, str) and passed.strip().lower() in ("false", "no", "0")):
        return True
    status = data.get("status", data.get("result"))
    return isinstance(status, str) and status.strip().lower() in ("fail", "failed", "failure")


def detect_validator_failure(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    """A ``validator_check`` with ``passed: false`` (or ``status: failed``). Signature: the validator's name."""
    found = []
    for event in events:
        if event.get("type") != "validator_check" or not _failed_check(event.get("payload")):
            continue
        data = payload(event)
        name = first_str(data, ("validator", "name", "check"))[:100] or "<unnamed>"
        reason = first_str(data, ("message", "reason", "error", "detail"))
        seq = seq_of(event)
        found.append(detection("validator_failure", name, confidence=1.0, evidence=[seq], critical=seq,
                               summary=f"validator {name} failed" + (f": {reason[:120]}" if reason else ""),
                               version=OUTCOME_VERSIONS["validator_failure"]))
    return found


# --- cost_spike -----------------------------------------------------------------------------------------------

def _cost_of(events: Sequence[Event], facts: TraceFacts) -> float:
    in_events = sum(number(payload(e).get("cost_usd")) for e in events if e.get("type") == "llm_call")
    return max(number(facts.cost_usd), in_events)


def detect_cost_spike(events: Sequence[Event], facts: TraceFacts, limits: Thresholds) -> list[Detection]:
    """A completed run costing more than ``cost_spike_factor`` x the median of the worker's recent runs
    (``facts.recent_costs``, which should not include this run), judged only with at least
    ``cost_spike_min_runs`` recent runs and a cost of at least ``cost_spike_min_usd``."""
    if facts.status != "completed" or len(facts.recent_costs) < limits.cost_spike_min_runs:
        return []
    cost = _cost_of(events, facts)
    median = statistics.median(number(c) for c in facts.recent_costs)
    if cost < limits.cost_spike_min_usd or cost <= limits.cost_spike_factor * median:
        return []
    ratio = cost / median if median > 0 else float("inf")
    confidence = 1.0 if median <= 0 else min(1.0, 0.6 + 0.4 * (ratio / limits.cost_spike_factor - 1))
    shown = f"{ratio:.1f}x the worker's recent median" if median > 0 else "while the worker's recent median is"
    return [detection("cost_spike", _who(facts), confidence=confidence, evidence=[], critical=None,
                      summary=f"cost ${cost:.4f}, {shown} ${median:.4f}", version=OUTCOME_VERSIONS["cost_spike"])]
