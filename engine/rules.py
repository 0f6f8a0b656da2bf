"""The rule book: which configured rules an incoming event matches.

Rules come from each worker's ``events:`` (mecha's worker YAML; the target is that worker) and from the top-level
``rules:`` (each names a worker or a pool). :meth:`RuleBook.build` compiles every filter and template once and
reports every bad rule at once, by file and config key, as one :class:`~engine.errors.ConfigError`. Matching is
pure: no Redis, no HTTP. Callers render ``rule.prompt`` with the event's attributes and dispatch.

Why an index: a webhook is checked against every rule of its source, and a config may hold hundreds. Rules are
indexed by ``(source, exact type)``; the few with globs in ``on`` (``*``, ``pull_request.*``) are kept per source
and tried with one compiled regex each. The candidates of a ``(source, type)`` pair are cached, so steady traffic
costs one dict lookup plus the filters of the rules that can match. Order is always config order: workers' rules
first (worker order, then ``events`` order), then top-level rules.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config.settings import RuleSpec, Settings
from engine.errors import ConfigError, ConfigIssue, FilterInvalid, TemplateInvalid
from engine.filters import Filter, compile_filter
from engine.templates import PromptTemplate, compile_template

__all__ = ["EventView", "Rule", "RuleBook", "Verdict"]

CANDIDATE_CACHE_SIZE = 4096  # (source, event type) pairs whose candidate rules are kept; cleared when full
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class EventView:
    """What rules see of an event: its source, its type (``pull_request.opened``, ``push``), the attributes the
    source extracted (``number``, ``base_branch``, ``labels``) and the raw payload for dotted filter paths."""

    source: str
    type: str
    attrs: Mapping[str, Any]
    payload: Any


@dataclass(frozen=True, eq=False)
class Rule:
    """One compiled rule. ``id`` is stable within a config (``pr-reviewer.events[0]``, ``rules[2]``);
    ``location`` is its config key (``workers[pr-reviewer].events[0]``). Exactly one of worker and pool is set."""

    id: str
    location: str
    source: str
    on: tuple[str, ...]
    filter: Filter
    prompt: PromptTemplate
    auto: bool
    worker: str | None
    pool: str | None
    concurrency_key: PromptTemplate | None
    on_conflict: str

    @property
    def uses(self) -> frozenset[str]:
        """Every event attribute name the rule may read (filter keys, prompt and key variables), so a caller can
        compute costly attributes (``diff``, ``file_list``) only when some matching rule uses them."""
        names = self.filter.keys | self.prompt.variables
        return names | self.concurrency_key.variables if self.concurrency_key else names

    def to_public(self) -> dict[str, Any]:
        """A JSON-able description, as written in the config."""
        return {
            "id": self.id,
            "location": self.location,
            "source": self.source,
            "on": list(self.on),
            "filter": self.filter.spec,
            "prompt": self.prompt.source,
            "auto": self.auto,
            "worker": self.worker,
            "pool": self.pool,
            "concurrency_key": self.concurrency_key.source if self.concurrency_key else None,
            "on_conflict": self.on_conflict,
        }


@dataclass(frozen=True)
class Verdict:
    """Whether one rule matched one event, and if not, why (the type, or the first failing filter clause)."""

    rule: Rule
    matched: bool
    reason: str | None

    def to_public(self) -> dict[str, Any]:
        return {
            "rule": self.rule.id,
            "location": self.rule.location,
            "worker": self.rule.worker,
            "pool": self.rule.pool,
            "auto": self.rule.auto,
            "matched": self.matched,
            "reason": self.reason,
        }


class RuleBook:
    """The compiled rules of one config, indexed for matching. Immutable once built; safe to share."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._rules = tuple(rules)
        self._exact: dict[tuple[str, str], list[int]] = {}
        self._globs: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        self._by_source: dict[str, list[int]] = {}
        self._cache: dict[tuple[str, str], tuple[Rule, ...]] = {}
        for index, rule in enumerate(self._rules):
            self._by_source.setdefault(rule.source, []).append(index)
            globs = [p for p in rule.on if _GLOB_CHARS & set(p)]
            for pattern in dict.fromkeys(p for p in rule.on if p not in globs):
                self._exact.setdefault((rule.source, pattern), []).append(index)
            if globs:
                regex = re.compile("|".join(fnmatch.translate(p) for p in globs))
                self._globs.setdefault(rule.source, []).append((index, regex))

    @classmethod
    def build(cls, settings: Settings, *, origins: Mapping[str, str] | None = None,
              default_file: str = "taskyard.yaml") -> RuleBook:
        """Compile every rule of ``settings``. Raises ConfigError listing every bad filter and template, each with
        its file (``origins`` maps a worker name to the ``workers_dir`` file it came from) and config key."""
        issues: list[ConfigIssue] = []
        rules: list[Rule] = []
        for worker in settings.workers:
            file = (origins or {}).get(worker.name, default_file)
            for i, event_spec in enumerate(worker.events):
                rule = _compile(event_spec, rule_id=f"{worker.name}.events[{i}]",
                                location=f"workers[{worker.name}].events[{i}]", worker=worker.name, file=file,
                                issues=issues)
                if rule is not None:
                    rules.append(rule)
        for i, spec in enumerate(settings.rules):
            rule = _compile(spec, rule_id=f"rules[{i}]", location=f"rules[{i}]", worker=spec.worker,
                            file=default_file, issues=issues)
            if rule is not None:
                rules.append(rule)
        if issues:
            raise ConfigError(issues)
        return cls(rules)

    def __len__(self) -> int:
        return len(self._rules)

    def rules(self) -> list[Rule]:
        """Every rule, in config order."""
        return list(self._rules)

    def get(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self._rules if rule.id == rule_id), None)

    def candidates(self, source: str, type: str) -> list[Rule]:
        """The rules whose ``source`` and ``on`` accept this event type (filters not yet checked), config order."""
        key = (source, type)
        found = self._cache.get(key)
        if found is None:
            indexes = set(self._exact.get(key, ()))
            indexes.update(index for index, regex in self._globs.get(source, ()) if regex.match(type))
            found = tuple(self._rules[index] for index in sorted(indexes))
            if len(self._cache) >= CANDIDATE_CACHE_SIZE:
                self._cache.clear()  # event types are few; only a flood of made-up ones gets here
            self._cache[key] = found
        return list(found)

    def match(self, event: EventView) -> list[Rule]:
        """The rules the event matches (type and filter), in config order. ``auto: false`` rules are included."""
        return [rule for rule in self.candidates(event.source, event.type)
                if rule.filter.passes(event.attrs, event.payload)]

    def evaluate(self, event: EventView) -> list[Verdict]:
        """A verdict for every rule of the event's source, matched or not with the reason, in config order (for
        dry runs: "why did my rule not fire?")."""
        accepting = {id(rule) for rule in self.candidates(event.source, event.type)}
        verdicts: list[Verdict] = []
        for index in self._by_source.get(event.source, ()):
            rule = self._rules[index]
            if id(rule) in accepting:
                reason = rule.filter.check(event.attrs, event.payload)
            else:
                reason = f"event type {event.type!r} is not one of {', '.join(rule.on)}"
            verdicts.append(Verdict(rule, reason is None, reason))
        return verdicts


def _compile(spec: RuleSpec, *, rule_id: str, location: str, worker: str | None, file: str,
             issues: list[ConfigIssue]) -> Rule | None:
    """One rule, or None after adding an issue for each bad part (filter clauses, prompt, concurrency key)."""
    before = len(issues)
    compiled_filter: Filter | None = None
    try:
        compiled_filter = compile_filter(spec.filter, where=f"{location}.filter")
    except FilterInvalid as exc:
        issues.extend(ConfigIssue(file, key, reason) for key, reason in exc.problems)
    templates: dict[str, PromptTemplate | None] = {}
    for field, text in (("prompt", spec.prompt), ("concurrency_key", spec.concurrency_key)):
        if text is None:
            templates[field] = None
            continue
        try:
            templates[field] = compile_template(text)
        except TemplateInvalid as exc:
            issues.append(ConfigIssue(file, f"{location}.{field}", exc.message))
    prompt = templates.get("prompt")
    if len(issues) > before or compiled_filter is None or prompt is None:
        return None
    return Rule(
        id=rule_id,
        location=location,
        source=spec.source,
        on=tuple(spec.on),
        filter=compiled_filter,
        prompt=prompt,
        auto=spec.auto,
        worker=worker,
        pool=spec.pool,
        concurrency_key=templates.get("concurrency_key"),
        on_conflict=spec.on_conflict,
    )
