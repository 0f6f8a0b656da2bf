"""What happens to a webhook event after the API stored it, run as engine jobs (``ty.engine`` queue).

- :meth:`EventJobs.process`: match the event against the rules, render each matching rule's prompt (fetching
  the lazy GitHub attributes ``diff`` and ``file_list`` only when a template uses them), apply the rule's
  concurrency key, and admit one task per rule that dispatches. Re-running it is harmless: each task is
  admitted with the idempotency key ``event:<event id>:<rule id>``.
- :meth:`EventJobs.task_finished` (queued by ``finalize`` in Lua when a task made by an event ends): move the
  event on (``completed`` / ``failed`` once all its tasks are final), release the rule's concurrency key to
  the next waiting dispatch, and write the task's result back to GitHub under the worker's policy. Write-back
  steps that succeeded are remembered per event, so a retry never repeats them.

The template context and lazy GitHub attributes live in :mod:`engine.event_context`, the GitHub calls of
write-back in :mod:`engine.write_back_job`, the sweep for lost jobs in :mod:`engine.event_sweep`.

Jobs answer a :class:`Retry` when they should run again later (a full queue, GitHub unavailable); the caller
(the Dramatiq actor) schedules it. Sync code: the jobs run on Dramatiq worker threads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config import defaults
from config.settings import PolicySpec, SourceSpec, WorkerSpec
from engine import audit, concurrency, events, keys, registry, tasks
from engine.admission import admission, refusal
from engine.clock import now_ms
from engine.errors import AdmissionRefused, GitHubError, QueueFull, TaskyardError, TemplateFailed
from engine.event_context import base_context, fetch_lazy, lazy_wanted
from engine.events import Event
from engine.github_api import GitHubClient
from engine.lazy_json import resolved
from engine.models import SubmitRequest
from engine.rules import EventView, Rule, RuleBook
from engine.store import Op, Runner
from engine.write_back_job import record_failure, write_back
from engine.writeback import Target, parse_result

__all__ = ["EventJobs", "JobOptions", "Retry"]

logger = logging.getLogger(__name__)

DENY_ALL = PolicySpec(comment=False, status=False, labels=False)
DEFS_TTL_MS = 1000  # milliseconds the jobs trust their cached worker definitions
DISPATCH_ATTEMPTS = 5  # tries to admit an event's tasks while every candidate queue is full or offline
WRITE_BACK_ATTEMPTS = 6  # tries to write a result back before the event becomes write_back_failed
BACKOFF_BASE_S = 2.0  # seconds before the second try; doubles each try
BACKOFF_MAX_S = 120.0  # seconds, cap on the backoff


@dataclass(frozen=True)
class Retry:
    """Run the job again after ``delay_s``; ``attempt`` is the number of the next try."""

    delay_s: float
    attempt: int


def backoff_s(attempt: int) -> float:
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))


@dataclass
class JobOptions:
    default_bound: int
    offline_after_ms: int


@dataclass
class EventJobs:
    runner: Runner
    rules: RuleBook
    sources: dict[str, SourceSpec]
    options: JobOptions
    github_client: Callable[[SourceSpec], GitHubClient]
    _defs: dict[str, WorkerSpec] = field(default_factory=dict)
    _defs_at: int = -DEFS_TTL_MS
    _trail: audit.Trail = field(default_factory=audit.Trail)  # audit entries of the job on each thread
    _local: threading.local = field(default_factory=threading.local)  # hand-offs of the job on each thread

    # -- matching and dispatch ----------------------------------------------------------------------------
    def process(self, event_id: str, attempt: int = 1) -> Retry | None:
        self._local.handoffs = []
        with self._trail.batch(self.runner):
            try:
                return self._process(event_id, attempt)
            finally:
                self._hand_off_all()

    def task_finished(self, task_id: str, attempt: int = 1) -> Retry | None:
        self._local.handoffs = []
        with self._trail.batch(self.runner):
            try:
                return self._task_finished(task_id, attempt)
            finally:
                self._hand_off_all()

    def _process(self, event_id: str, attempt: int) -> Retry | None:
        event = self.runner.run(events.get(event_id, detail=False, lazy_payload=True))
        if event is None:
            logger.warning("event to process is gone", extra={"event": event_id})
            return None
        self._trail.project = event.project
        if event.state != "received":
            return None  # processed already (a redelivered job)
        view = EventView(source=event.source, type=event.type, attrs=event.attrs, payload=event.payload)
        matched = self.rules.match(view)  # indexed: only the rules of this source and type are checked
        now = now_ms()
        if not matched:
            verdicts = self.rules.evaluate(view)  # why each rule did not match, for the event's history
            reasons = "; ".join(f"{v.rule.id}: {v.reason}" for v in verdicts) or "no rule for this source"
            self._move(event, "skipped", _clip(f"no rule matched ({reasons})"), expect=("received",))
            return None
        for rule in matched:
            self._audit("rule_matched", event=event.id, rule=rule.id, auto=rule.auto)
        try:
            context = self._template_context(event, view, matched)
            prompts = {rule.id: rule.prompt.render(context) for rule in matched if rule.auto}
            conc = {rule.id: rule.concurrency_key.render(context) for rule in matched
                    if rule.auto and rule.concurrency_key is not None}
        except (TemplateFailed, GitHubError) as exc:
            if isinstance(exc, GitHubError) and exc.retryable and attempt < DISPATCH_ATTEMPTS:
                return Retry(backoff_s(attempt), attempt + 1)
            self._fail(event, str(exc))
            return None

        matches: list[dict[str, Any]] = []
        defs = self._definitions()
        refused: TaskyardError | None = None
        for rule in matched:
            entry: dict[str, Any] = {"rule": rule.id, "worker": rule.worker, "pool": rule.pool, "auto": rule.auto}
            if not rule.auto:
                matches.append({**entry, "status": "matched"})
                continue
            try:
                entry.update(self._dispatch(event, rule, prompts[rule.id], conc.get(rule.id), defs, now))
            except AdmissionRefused as exc:
                refused = exc
                entry.update(status="refused", reason=str(exc))
                self._audit("dispatch_refused", event=event.id, rule=rule.id, reason=str(exc))
            except TaskyardError as exc:  # an unknown worker named by a rule
                entry.update(status="refused", reason=str(exc))
                self._audit("dispatch_refused", event=event.id, rule=rule.id, reason=str(exc))
            matches.append(entry)

        if refused is not None and attempt < DISPATCH_ATTEMPTS and isinstance(refused, (QueueFull, AdmissionRefused)):
            # Try again later: tasks already admitted stay (their idempotency keys make the retry skip them).
            self._store_matches(event, matches)
            return Retry(backoff_s(attempt), attempt + 1)
        live = [m for m in matches if m.get("task_id") or m.get("status") == "queued"]
        if not live and any(m["status"] == "refused" for m in matches):
            self._store_matches(event, matches)
            self._fail(event, "; ".join(f"{m['rule']}: {m['reason']}" for m in matches if m.get("reason")))
            return None
        waiting = [m for m in matches if m.get("status") == "queued"]
        if live or waiting:
            state = "dispatched"  # until every task, including those waiting on a concurrency key, has ended
        elif any(m["status"] == "skipped" for m in matches):
            state = "skipped"  # superseded: a task for the same concurrency key is still running
        else:
            state = "matched"  # only auto: false rules matched
        # follow: tasks may have finished before the matches were stored.
        self.runner.run(events.update(event_id=event.id, now_ms=now_ms(), state=state, expect=("received",),
                                      detail=f"{len(live)} task(s) from {len(matched)} matching rule(s)",
                                      fields={"matches": json.dumps(matches, separators=(",", ":"))},
                                      follow=state == "dispatched", audit=self._trail.take()))
        return None

    def _dispatch(self, event: Event, rule: Rule, prompt: str, conc_value: str | None,
                  defs: dict[str, WorkerSpec], now: int, *, handed: bool = False) -> dict[str, Any]:
        """Admit the rule's task for the event (its id derives from both: a retry admits the same task). With a
        concurrency key, claim it first unless ``handed`` (the key was handed to this dispatch). Entries handed
        the key along the way are queued on the job's hand-off list (see :meth:`_hand_off_all`)."""
        request = SubmitRequest(prompt=prompt, worker=rule.worker, pool=rule.pool,
                                context={"event": {"id": event.id, "source": event.source, "type": event.type,
                                                   "subject": event.subject, "rule": rule.id}},
                                idempotency_key=f"event:{event.id}:{rule.id}")
        task_id = event_task_id(event.id, rule.id)
        conc_key = entry = ""
        if conc_value is not None:
            conc_key = concurrency.key_of(event.project, rule.id, conc_value)
            entry = concurrency.entry_of(event=event.id, rule=rule.id, value=conc_value, task=task_id)
        if conc_key and not handed:
            existing = self._task_worker(task_id)
            if existing is not None:
                # A retried job: this rule's task exists already. Claiming again could take the key back from a
                # newer event (cancel_running) or report it busy (skip); the earlier try settled both.
                return {"status": "dispatched", "task_id": task_id, "worker": existing}
            outcome, holder, handoff = self.runner.run(concurrency.claim(conc_key, task_id, rule.on_conflict, entry,
                                                                         prompt))
            if handoff is not None:
                self._handoffs().append((conc_key, handoff))
            if outcome == "busy":
                self._audit("rule_skipped", event=event.id, rule=rule.id, reason=f"{conc_value} is taken")
                return {"status": "skipped", "reason": f"another task holds {conc_value}"}
            if outcome == "queued":
                return {"status": "queued", "reason": f"waits for {conc_value}", "key": conc_key,
                        "pending_task": task_id}
            if outcome == "replaced" and holder:
                cancelled, _ = self.runner.run(tasks.cancel(task_id=holder, project=event.project, now_ms=now))
                self._audit("task_superseded", event=event.id, task=holder, rule=rule.id, outcome=cancelled)
        try:
            result = self.runner.run(admission(
                request, defs, task_id=task_id, project=event.project, now_ms=now,
                default_bound=self.options.default_bound, offline_after_ms=self.options.offline_after_ms,
                extra_fields={"event_id": event.id, "rule_id": rule.id, "conc_key": conc_key}))
            if result.status not in ("ok", "dup"):
                raise refusal(result, request)
        except AdmissionRefused:
            if conc_key and handed:  # a momentary refusal: the dispatch keeps its place in line
                self.runner.run(concurrency.defer(conc_key, task_id))
                raise
            if conc_key:
                handoff = self.runner.run(concurrency.abandon(conc_key, task_id, entry))
                if handoff is not None:
                    self._handoffs().append((conc_key, handoff))
            raise
        except TaskyardError:
            if conc_key:
                handoff = self.runner.run(concurrency.abandon(conc_key, task_id, entry))
                if handoff is not None:
                    self._handoffs().append((conc_key, handoff))
            raise
        admitted = result.task_id if result.status == "dup" and result.task_id else task_id
        if conc_key:
            held, handoff = self.runner.run(concurrency.confirm(conc_key, admitted, entry))
            if handoff is not None:
                self._handoffs().append((conc_key, handoff))
            if not held:
                # A newer event took the key while this task was being admitted (cancel_running): it is stale.
                self.runner.run(tasks.cancel(task_id=admitted, project=event.project, now_ms=now))
                self._audit("task_superseded", event=event.id, task=admitted, rule=rule.id, outcome="cancelled")
        if result.status == "dup":
            return {"status": "dispatched", "task_id": admitted, "worker": self._task_worker(admitted)}
        self._audit("task_sent", event=event.id, task=task_id, rule=rule.id, worker=result.worker)
        return {"status": "dispatched", "task_id": task_id, "worker": result.worker}

    def _handoffs(self) -> list[tuple[str, dict[str, Any]]]:
        pending = getattr(self._local, "handoffs", None)
        if pending is None:
            pending = self._local.handoffs = []
        return pending

    def _hand_off_all(self) -> None:
        """Admit the dispatches that were handed a concurrency key during this job, and record each on its
        event. One that cannot run (its event settled or gone, its rule gone, a refusal) gives the key on."""
        pending = self._handoffs()
        while pending:
            key, waiting = pending.pop(0)
            event = self.runner.run(events.summary(waiting["event"]))
            rule = self.rules.get(waiting["rule"])
            entry_json = concurrency.entry_of(**{k: waiting[k] for k in ("event", "rule", "value", "task")})
            if event is None or rule is None or event.state not in ("received", "dispatched"):
                handoff = self.runner.run(concurrency.abandon(key, waiting["task"], entry_json))
                if handoff is not None:
                    pending.append((key, handoff))
                if event is not None and rule is None:  # the config lost the rule: say so on the event
                    self.runner.run(events.record_match(
                        event_id=event.id, rule=waiting["rule"], now_ms=now_ms(),
                        entry={"status": "refused", "reason": f"rule {waiting['rule']} no longer exists"}))
                continue
            self._trail.project = event.project
            try:
                entry = self._dispatch(event, rule, waiting["prompt"], waiting["value"], self._definitions(),
                                       now_ms(), handed=True)
            except AdmissionRefused as exc:  # still waiting: handed the key again by a release, claim or sweep
                self._audit("dispatch_deferred", event=event.id, rule=rule.id, reason=str(exc))
                continue
            except TaskyardError as exc:
                entry = {"status": "refused", "reason": str(exc)}
                self._audit("dispatch_refused", event=event.id, rule=rule.id, reason=str(exc))
            self.runner.run(events.record_match(event_id=event.id, rule=rule.id, entry=entry, now_ms=now_ms()))

    def _template_context(self, event: Event, view: EventView, rules: list[Rule]) -> dict[str, Any]:
        reads_payload = any("payload" in template.variables for rule in rules if rule.auto
                            for template in (rule.prompt, rule.concurrency_key) if template is not None)
        context = base_context(payload=resolved(view.payload) if reads_payload else None,
                               source=event.source, event_type=event.type,
                               actor=event.actor, subject=event.subject, attrs=event.attrs)
        wanted = lazy_wanted(rules)
        if wanted:
            spec = self.sources.get(event.source)
            client = self.github_client(spec) if spec is not None and spec.kind == "github" else None
            context.update(fetch_lazy(client, spec, event.type, event.attrs, wanted))
        return context

    # -- following tasks and writing back ---------------------------------------------------------------------
    def _task_finished(self, task_id: str, attempt: int) -> Retry | None:
        info = self.runner.run(Op(lambda raw: dict(zip(_TASK_FIELDS, raw, strict=True)),
                                  command=("HMGET", keys.key("task", id=task_id), *_TASK_FIELDS)))
        event_id = info.get("event_id")
        if not event_id:
            return None
        if attempt == 1:
            self._release_concurrency(info)
            self._follow(event_id)
        if info.get("state") != "completed":
            return None
        request = parse_result(info.get("result") or "")
        if request is None:
            return None
        event = self.runner.run(events.summary(event_id))
        if event is None:
            return None
        self._trail.project = event.project
        spec = self.sources.get(event.source)
        if spec is None or spec.kind != "github":
            return None
        target = Target.from_attrs(event.attrs)
        if target is None:
            self._audit("write_back_skipped", event=event_id, task=task_id, reason="the event names no repository")
            return None
        pending = write_back(self.runner, self.github_client(spec), request,
                             self._policy(info.get("worker_name") or ""), target, event_id=event_id,
                             task_id=task_id, first_try=attempt == 1, audit=self._audit)
        if pending and attempt < WRITE_BACK_ATTEMPTS:
            return Retry(backoff_s(attempt), attempt + 1)
        record_failure(self.runner, event_id=event_id, task_id=task_id, pending=pending, audit=self._audit)
        return None

    def _follow(self, event_id: str) -> None:
        """Move a dispatched event to completed / failed once every task it made is final (in Lua: atomic)."""
        self.runner.run(events.update(event_id=event_id, now_ms=now_ms(), follow=True))

    def _release_concurrency(self, info: dict[str, Any]) -> None:
        """The finished task held a concurrency key: free it; the next waiting dispatch is handed it."""
        conc_key, task_id = info.get("conc_key"), info.get("id")
        if conc_key and task_id:
            handoff = self.runner.run(concurrency.release(conc_key, task_id))
            if handoff is not None:
                self._handoffs().append((conc_key, handoff))

    # -- the sweep for events whose processing job was lost ----------------------------------------------------
    def poke_waiting(self, event_id: str) -> None:
        """Hand a free concurrency key to its first waiter, for each dispatch of the event still queued (a key
        whose holder's claim expired, or whose handed-off admission was refused, has nobody else to do it)."""
        self._local.handoffs = []
        with self._trail.batch(self.runner):
            event = self.runner.run(events.summary(event_id))
            for match in event.matches if event is not None else []:
                if match.get("status") == "queued" and match.get("key"):
                    handoff = self.runner.run(concurrency.release(match["key"], ""))
                    if handoff is not None:
                        self._handoffs().append((match["key"], handoff))
            self._hand_off_all()

    # -- helpers -----------------------------------------------------------------------------------------------
    def _definitions(self) -> dict[str, WorkerSpec]:
        if now_ms() - self._defs_at > DEFS_TTL_MS:
            statuses = self.runner.run(registry.status(None, online_since_ms=now_ms()))
            self._defs = {s.spec.name: s.spec for s in statuses}
            self._defs_at = now_ms()
        return self._defs

    def _policy(self, worker: str) -> PolicySpec:
        """The worker's write-back policy; a worker whose definition is gone may do nothing (its policy is
        unknown, and allowing everything would let its removal lift every restriction)."""
        spec = self._definitions().get(worker)
        return spec.policy if spec is not None else DENY_ALL

    def _task_worker(self, task_id: str) -> str | None:
        """The worker of a stored task; None when there is no such task."""
        return self.runner.run(Op(lambda raw: raw, command=("HGET", keys.key("task", id=task_id), "worker_name")))

    def _store_matches(self, event: Event, matches: list[dict[str, Any]]) -> None:
        self.runner.run(events.update(event_id=event.id, now_ms=now_ms(),
                                      fields={"matches": json.dumps(matches, separators=(",", ":"))}))

    def _move(self, event: Event, state: str, detail: str, *, expect: tuple[str, ...]) -> None:
        self.runner.run(events.update(event_id=event.id, now_ms=now_ms(), state=state, detail=detail,
                                      expect=expect))

    def _fail(self, event: Event, reason: str) -> None:
        reason = reason[:defaults.MAX_EVENT_ERROR_CHARS]
        self.runner.run(events.update(event_id=event.id, now_ms=now_ms(), state="failed", detail=reason,
                                      expect=("received",), fields={"error": reason}))
        self._audit("event_failed", event=event.id, reason=reason)

    def _audit(self, action: str, **detail: Any) -> None:
        self._trail.add(action, **detail)


_TASK_FIELDS = ("id", "state", "result", "worker_name", "event_id", "rule_id", "conc_key")


def event_task_id(event_id: str, rule_id: str) -> str:
    """The id of the task a rule makes for an event: the same on every try, so a retried or handed-off
    dispatch admits (or finds) the same task."""
    return hashlib.sha256(f"{event_id}:{rule_id}".encode()).hexdigest()[:32]


def _clip(text: str) -> str:
    return text[:defaults.MAX_EVENT_ERROR_CHARS]
