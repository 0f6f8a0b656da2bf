"""The builtin fix runner: deterministic, config-level edits for the failure classes a setting can fix (pure).

- ``loop``: the agent's settings file gets ``max_repeats`` (identical calls in a row it may make, one fewer than
  the detector's ``loop_repeats``) and ``max_steps``;
- ``step_budget`` / ``time_budget``: ``max_steps`` / ``max_duration_s`` at the detector's budget;
- ``timeout``: the worker's YAML (``repo.worker_file``) gets a larger ``timeout:``;
- ``tool_error`` of kind ``error`` or ``timeout``: ``tool_retries.<tool>`` with attempts and backoff;
- ``prompt_injection``: an input-guard file of marker patterns and ``input_guard:`` pointing at it.

Every other class, and a case the files already cover, is :class:`Unsupported` with one actionable sentence.
Files are read through the ``read`` callable and edited at text level (:mod:`engine.yaml_edit`), so the user's
comments and other keys stay as they were; the result holds only the files that change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config import defaults
from config.base import parse_duration
from config.detectors import Thresholds
from engine.yaml_edit import one_line, read_mapping, set_in_mapping, set_top_level

__all__ = ["AGENT_CONFIG_HEADER", "GUARD_MARKERS", "BuiltinFix", "FixFacts", "Unsupported", "builtin_fix"]

AGENT_CONFIG_HEADER = "# Agent settings (edited by Taskyard's builtin fix runner)\n"
TIMEOUT_FACTOR = 2.0  # x the worker's current timeout
OBSERVED_FACTOR = 1.5  # x the observed run duration
MAX_TIMEOUT_S = 86_400  # seconds (24 h): the most a timeout fix raises a worker's timeout to
RETRY_ATTEMPTS = 3  # attempts per tool call, the first one included
RETRY_BACKOFF_S = 1.0  # seconds before the first retry
_G = r"[\W_]+"  # a gap between two words in a marker: spaces, newlines, punctuation


def _w(*parts: str) -> str:
    """Words (or alternations) in a row, any gap between them."""
    return _G.join(parts)


_ROLE = r"(?:\w+" + _G + r"){0,2}(?:ai|assistant|model|chatbot|bot|agent|persona|character)\b"
_PRIOR = r"(?:previous|prior|above|earlier|preceding|original|initial|system)"
# Case-insensitive regexes (each carries its own (?i)) for the marker kinds of engine.detectors.injection:
# instruction override, role override, system spoof.
GUARD_MARKERS: tuple[str, ...] = (
    r"(?i)\b" + _w(r"(?:ignore|disregard|forget|override|bypass)", r"(?:(?:all|any|every|the|your|my|of|these|those)"
                   + _G + r"){0,3}" + _PRIOR, r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines"
                   r"|context|commands)\b"),
    r"(?i)\b" + _w(r"(?:ignore|disregard|forget)", r"(?:all|everything)", r"(?:of" + _G + r")?(?:the" + _G
                   + r")?(?:previous|prior|above|preceding)\b"),
    r"(?i)\b" + _w("forget", "(?:everything|all)", "(?:" + _w("you", "(?:were|" + _w("have", "been") + ")", "told")
                   + r"|above|before)\b"),
    r"(?i)\b" + _w("do", "not", "follow", "(?:your|the|any)", _PRIOR, r"instructions\b"),
    r"(?i)\b" + _w("you", "are", "now", "(?:" + _w("(?:an?|the|my)", _ROLE) + r"|(?:dan|jailbroken|unrestricted"
                   r"|unfiltered|uncensored)\b|" + _w("in", "(?:developer|god|jailbreak|dan)", r"mode\b") + ")"),
    r"(?i)\b" + _w("from", "now", "on", "you", "(?:are|" + _w("will", "be") + "|" + _w("will", "act", "as") + ")",
                   "(?:an?|the|my)", _ROLE),
    r"(?i)\b" + _w("pretend", "(?:" + _w("to", "be") + "|" + _w("you", "are") + ")", "(?:an?|the)", _ROLE),
    r"(?i)\b" + _w("(?:developer|jailbreak|dan)", "mode", r"(?:enabled|activated|on)\b"),
    r"(?i)\b" + _w("enable", "(?:developer|jailbreak|dan)", r"mode\b"),
    r"(?i)<\|\s*im_start\s*\|>\s*system\b", r"(?i)<\|\s*system\s*\|>", r"(?i)<<\s*sys\s*>>",
    r"(?i)\[\s*/?\s*inst\s*\]", r"(?i)\b" + _w("system", r"prompt\s*:"),
)
_GUARD_HEADER = ("# Input guard (written by Taskyard's builtin fix runner for a prompt_injection incident).\n"
                 "# markers: case-insensitive regular expressions for instruction-override, role-override and\n"
                 "# system-spoof phrases; input or a tool result matching one is refused before it reaches the\n"
                 "# model.\n")
_HINTS = {
    "crash": "handle the failing case in the agent code and add a test with the input from the trace",
    "exit_nonzero": "fix the command line, install what is missing on the worker host, or fix the script's error path",
    "empty_output": "make the agent print its final answer on stdout and fail the run when it has nothing to say",
    "validator_failure": "give the agent the validator's rules in its prompt and let it retry once, or fix the "
                         "validator if it is wrong",
    "cost_spike": "pin the model in the worker's config and cap calls and context size as for the budget classes",
    "token_budget": "truncate or summarise tool results before they enter the context, and drop old turns",
    "lost_worker": "give the worker more memory or lower its concurrency, and stream large inputs",
}
_UNSET = object()


@dataclass(frozen=True)
class FixFacts:
    """What the builtin runner knows about an incident and the repository it may edit."""

    incident_id: str
    failure_class: str
    signature: str
    worker: str
    agent_config: str  # repo-relative path of the agent's own YAML settings (default "taskyard-agent.yaml")
    worker_file: str | None  # repo-relative path of the worker's taskyard YAML (has ``timeout:``), if in the repo
    guard_file: str  # repo-relative path for an input-guard file
    thresholds: Thresholds  # the detector limits the incident's runs were judged by
    timeout_s: float | None  # seconds: the worker's current timeout
    observed_duration_s: float | None  # seconds: how long the affected run took


@dataclass(frozen=True)
class BuiltinFix:
    plan: str  # plain text: what was wrong, what changed (file: key old -> new), why
    files: dict[str, str]  # repo-relative path -> full new text (only files that change)


@dataclass(frozen=True)
class Unsupported:
    reason: str  # one actionable sentence


class _Refused(Exception):
    """Raised inside a handler to answer :class:`Unsupported` with its message."""


def builtin_fix(facts: FixFacts, read: Callable[[str], str | None]) -> BuiltinFix | Unsupported:
    """The config-level fix for ``facts``'s incident, or why there is none. ``read(path)``: a repository file's
    text, None when absent."""
    handler = _HANDLERS.get(facts.failure_class)
    if handler is None:
        hint = _HINTS.get(facts.failure_class, "it is not a failure class Taskyard knows")
        return Unsupported(f"no builtin fix for {facts.failure_class}: {hint} (see the playbook)")
    try:
        return handler(facts, read)
    except _Refused as exc:
        return Unsupported(str(exc))


class _Doc:
    """One YAML file being edited: its text before, its text now, and the changes made, one line each."""

    def __init__(self, path: str, read: Callable[[str], str | None], *, header: str | None) -> None:
        self.path = path
        self.old = read(path)
        if self.old is None and header is None:
            raise _Refused(f"{path} is not in the repository")
        self.text = self.old if self.old is not None else header or ""
        self.data = self._parse(self.text)
        self.changes: list[str] = []

    def _parse(self, text: str) -> dict[str, Any]:
        try:
            return read_mapping(text)
        except ValueError as exc:
            raise _Refused(f"{self.path} is not a YAML mapping: {exc}; fix the file, then run the fix again") from exc

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any, *, inside: str | None = None) -> None:
        """Set ``key`` (or ``key``'s entry ``inside``) to ``value``, unless it already has it."""
        container = self.data.get(key) if inside is not None else self.data
        old = container.get(inside if inside is not None else key, _UNSET) if isinstance(container, dict) else _UNSET
        if old is not _UNSET and type(old) is type(value) and old == value:
            return
        try:
            self.text = (set_top_level(self.text, key, value) if inside is None
                         else set_in_mapping(self.text, key, inside, value))
        except ValueError as exc:
            raise _Refused(f"{self.path} cannot be edited safely ({exc}): set {key} by hand") from exc
        self.data = self._parse(self.text)
        name = key if inside is None else f"{key}.{inside}"
        self.changes.append(f"{self.path}: {name} {_show(old)} -> {_show(value)}")


def _result(problem: str, docs: list[_Doc], why: str, *, already: str) -> BuiltinFix:
    changed = [doc for doc in docs if doc.changes and doc.text != doc.old]
    if not changed:
        raise _Refused(already)
    lines = [f"Problem: {problem}", *(f"Change: {c}" for doc in changed for c in doc.changes), f"Why: {why}"]
    return BuiltinFix(plan="\n".join(lines) + "\n", files={doc.path: doc.text for doc in changed})


def _loop(f: FixFacts, read: Callable[[str], str | None]) -> BuiltinFix:
    prefix, _, names = f.signature.partition(":")
    tools = [name for name in names.split("+") if name]
    subject = (f"the LLM {names}" if prefix == "llm" else
               f"tool {tools[0]}" if len(tools) == 1 else f"tools {' and '.join(tools)}" if tools else f.signature)
    doc = _Doc(f.agent_config, read, header=AGENT_CONFIG_HEADER)
    repeats = f.thresholds.loop_repeats - 1
    current = _int(doc.get("max_repeats"))
    doc.set("max_repeats", repeats if current is None else min(current, repeats))
    steps = _int(doc.get("max_steps"))
    if steps is None or steps > f.thresholds.max_steps:
        doc.set("max_steps", f.thresholds.max_steps)
    return _result(
        f"loop ({f.signature}): the agent repeated calls to {subject} without making progress.", [doc],
        f"the agent now stops after {doc.get('max_repeats')} identical calls in a row and {doc.get('max_steps')} "
        f"steps per run, before the loop detector ({f.thresholds.loop_repeats} in a row) fires; make the "
        "failing call return an actionable error too (see the playbook).",
        already=f"{f.agent_config} already has these settings (max_repeats: {doc.get('max_repeats')}, max_steps: "
                f"{doc.get('max_steps')}), yet {subject} looped: check that the agent reads and honours them "
                "(see the playbook)")


def _step_budget(f: FixFacts, read: Callable[[str], str | None]) -> BuiltinFix:
    limit = f.thresholds.max_steps
    return _cap(f, read, "max_steps", limit, f"{limit} steps", f"runs made more than {limit} LLM and tool calls",
                "if the task is legitimately large, raise max_steps for the worker under detectors.workers instead")


def _time_budget(f: FixFacts, read: Callable[[str], str | None]) -> BuiltinFix:
    limit = int(f.thresholds.max_duration)
    return _cap(f, read, "max_duration_s", limit, f"{limit} s", f"runs took longer than {_human(limit)}",
                "put timeouts on slow tools and model calls too (see the playbook)")


def _cap(f: FixFacts, read: Callable[[str], str | None], key: str, limit: int, shown: str, problem: str,
         advice: str) -> BuiltinFix:
    """``key`` in the agent's settings at the detector's budget ``limit``; a cap already at or under it means the
    agent ignores it."""
    doc = _Doc(f.agent_config, read, header=AGENT_CONFIG_HEADER)
    current = _number(doc.get(key))
    if current is not None and current <= limit:
        raise _Refused(f"{f.agent_config} already caps {key} at {current:g}, yet runs went past {shown}: the agent "
                       f"does not honour {key}; see the playbook")
    doc.set(key, limit)
    return _result(f"{f.failure_class} ({f.signature}): {problem}.", [doc],
                   f"the agent stops itself at {shown}, the detector's budget, instead of running on; {advice}.",
                   already=f"{f.agent_config} is unchanged")


def _timeout(f: FixFacts, read: Callable[[str], str | None]) -> BuiltinFix:
    if f.worker_file is None:
        raise _Refused("the worker's YAML is not known: set repo.worker_file to its path in the repository, or "
                       "raise the worker's timeout by hand")
    doc = _Doc(f.worker_file, read, header=None)
    written = doc.get("timeout")
    try:
        in_file = parse_duration(written) if written is not None else None
    except ValueError as exc:
        raise _Refused(f"{f.worker_file}: timeout {written!r} is not a duration; fix it by hand") from exc
    current = f.timeout_s if f.timeout_s is not None else in_file if in_file is not None else defaults.TASK_TIMEOUT_S
    target = max(TIMEOUT_FACTOR * current, OBSERVED_FACTOR * (f.observed_duration_s or 0.0))
    new_s = min(math.ceil(round(target / 60, 6)) * 60, MAX_TIMEOUT_S)
    if new_s <= current:
        raise _Refused(f"the worker's timeout is already {_human(current)} and the builtin runner goes no higher "
                       f"than {_human(MAX_TIMEOUT_S)}: cut the work or fail the slow call fast (see the playbook)")
    if in_file is not None and in_file >= new_s:
        raise _Refused(f"{f.worker_file} already sets timeout: {written} (the worker runs with {_human(current)}): "
                       "deploy that setting instead of raising it again")
    doc.set("timeout", f"{new_s // 3600}h" if new_s % 3600 == 0 else f"{new_s // 60}m")
    observed = (f" (the run took {_human(f.observed_duration_s)})" if f.observed_duration_s is not None else "")
    return _result(
        f"timeout ({f.signature}): runs of {f.worker or f.signature} were killed at their {_human(current)} "
        f"timeout{observed}.", [doc],
        f"the new timeout is the larger of {TIMEOUT_FACTOR:g} x the current one and {OBSERVED_FACTOR:g} x the "
        f"observed duration, in whole minutes (at most {_human(MAX_TIMEOUT_S)}); if one slow call is the cause, "
        "putting a timeout on it is the better fix (see the playbook).", already=f"{f.worker_file} is unchanged")


def _tool_error(f: FixFacts, read: Callable[[str], str | None]) -> BuiltinFix:
    tool, _, kind = f.signature.rpartition(":")
    if kind in ("unknown_tool", "malformed_args"):
        raise _Refused(f"no builtin fix for a tool_error of kind {kind}: a retry cannot fix a wrong call; fix the "
                       f"schema and description of {tool or 'the tool'} in the agent's prompt and validate its "
                       "arguments with a clear error (see the playbook)")
    if kind not in ("error", "timeout") or not tool:
        raise _Refused(f"no builtin fix for tool_error {f.signature!r}: expected a <tool>:error or <tool>:timeout "
                       "signature")
    doc = _Doc(f.agent_config, read, header=AGENT_CONFIG_HEADER)
    retries = doc.get("tool_retries")
    entry = retries.get(tool) if isinstance(retries, dict) else None
    if retries is not None and not isinstance(retries, dict) or entry is not None and not isinstance(entry, dict):
        raise _Refused(f"{f.agent_config}: tool_retries must map each tool to its retry settings; fix it by hand")
    new = dict(entry or {})
    new["attempts"] = max(_int(new.get("attempts")) or 0, RETRY_ATTEMPTS)
    new["backoff_s"] = max(_number(new.get("backoff_s")) or 0.0, RETRY_BACKOFF_S)
    doc.set("tool_retries", new, inside=tool)
    what = "timed out" if kind == "timeout" else "failed"
    return _result(
        f"tool_error ({f.signature}): calls to {tool} {what}.", [doc],
        f"a transient failure of {tool} is retried (up to {new['attempts']} attempts, backoff from "
        f"{new['backoff_s']:g} s) instead of failing the step; if it keeps failing, fix the tool or what it calls.",
        already=f"{f.agent_config} already has these settings for {tool} ({_show(entry)}), yet its calls still "
                "fail: the tool or what it calls needs fixing (see the playbook)")


def _prompt_injection(f: FixFacts, read: Callable[[str], str | None]) -> BuiltinFix:
    parts = f.signature.split(":")
    source = (f"tool results of {':'.join(parts[1:-1])}" if parts[0] == "tool_result" and len(parts) > 2
              else "user input" if parts[0] == "user_input" else "input")
    guard = _Doc(f.guard_file, read, header=_GUARD_HEADER)
    markers = guard.get("markers") or []
    if not isinstance(markers, list):
        raise _Refused(f"{f.guard_file}: markers must be a list of regular expressions; fix it by hand")
    added = [m for m in GUARD_MARKERS if m not in markers]
    guard.set("markers", [*markers, *added])
    if guard.changes:  # a one-line summary instead of both lists of regexes
        guard.changes = [f"{f.guard_file}: markers +{len(added)} ({len(markers) + len(added)} in all)"]
    if guard.get("action") is None:
        guard.set("action", "refuse")
    if guard.old is None:
        guard.changes = [f"{f.guard_file}: new file, {len(GUARD_MARKERS)} markers, action: refuse"]
    agent = _Doc(f.agent_config, read, header=AGENT_CONFIG_HEADER)
    agent.set("input_guard", f.guard_file)
    return _result(
        f"prompt_injection ({f.signature}): {source} carried instruction- or role-override markers.", [guard, agent],
        f"the agent refuses input matching a marker in {f.guard_file} before it reaches the model; also mark "
        "untrusted content as data and review what the affected runs changed (see the playbook).",
        already=f"already guarded: {f.guard_file} holds every marker and {f.agent_config} points at it, yet markers "
                f"reached the agent: check that it applies the guard to {source} (see the playbook)")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _human(seconds: float) -> str:
    whole = int(math.ceil(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    shown = " ".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return shown or "0s"


def _show(value: Any) -> str:
    return "(unset)" if value is _UNSET else value if isinstance(value, str) else one_line(value)


_HANDLERS: dict[str, Callable[[FixFacts, Callable[[str], str | None]], BuiltinFix]] = {
    "loop": _loop, "step_budget": _step_budget, "time_budget": _time_budget, "timeout": _timeout,
    "tool_error": _tool_error, "prompt_injection": _prompt_injection,
}
