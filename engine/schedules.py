"""Scheduled events: cron entries that create work on time, once, whatever the number of ``serve`` replicas.

Each schedule (a worker's ``schedule:`` entry or a top-level ``schedules:`` entry) becomes a rule of source
``schedule`` and type ``schedule.<id>``. Every replica runs APScheduler; when an entry fires, each replica
stores an event whose delivery id is ``<id>@<scheduled time>``. The event store's delivery dedupe (one Lua
step) lets exactly one of them through, and that event goes the way of any webhook event: matched by its rule,
its task admitted, its state following the task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from config import defaults
from config.events import cron_trigger
from config.settings import Settings
from engine import events
from engine.clock import now_ms
from engine.errors import ConfigError, ConfigIssue, StoreUnavailable, TemplateInvalid
from engine.filters import compile_filter
from engine.ids import new_id
from engine.rules import Rule
from engine.store import Runner
from engine.templates import compile_template

__all__ = ["SOURCE", "Schedule", "Scheduler", "fire", "schedules_of"]

logger = logging.getLogger(__name__)

SOURCE = "schedule"
MISFIRE_GRACE_S = 30  # seconds late a firing may still run (a replica busy or paused); later ones are dropped


@dataclass(frozen=True)
class Schedule:
    id: str
    cron: str
    timezone: str
    rule: Rule

    @property
    def trigger(self) -> Any:
        return cron_trigger(self.cron, self.timezone)


def schedules_of(settings: Settings, *, default_file: str = "taskyard.yaml") -> list[Schedule]:
    """Every schedule in ``settings`` with its rule. Raises ConfigError for a prompt that does not compile or
    two schedules with the same id."""
    found: list[Schedule] = []
    issues: list[ConfigIssue] = []
    entries: list[tuple[str, Any, str | None, str | None, str]] = []
    for worker in settings.workers:
        for i, spec in enumerate(worker.schedule):
            location = f"workers[{worker.name}].schedule[{i}]"
            entries.append((spec.name or f"{worker.name}.schedule{i}", spec, worker.name, None, location))
    for i, top in enumerate(settings.schedules):
        entries.append((top.name or f"schedules{i}", top, top.worker, top.pool, f"schedules[{i}]"))
    seen: set[str] = set()
    for schedule_id, spec, target, pool, location in entries:
        file = settings.worker_files.get(target or "", default_file) if location.startswith("workers") \
            else default_file
        if schedule_id in seen:
            issues.append(ConfigIssue(file, f"{location}.name", f"schedule {schedule_id!r} is defined twice"))
            continue
        seen.add(schedule_id)
        try:
            prompt = compile_template(spec.prompt)
        except TemplateInvalid as exc:
            issues.append(ConfigIssue(file, f"{location}.prompt", exc.message))
            continue
        rule = Rule(id=f"schedule:{schedule_id}", location=location, source=SOURCE, on=(f"{SOURCE}.{schedule_id}",),
                    filter=compile_filter({}), prompt=prompt, auto=True, worker=target, pool=pool,
                    concurrency_key=None, on_conflict="queue")
        found.append(Schedule(id=schedule_id, cron=spec.cron, timezone=spec.timezone, rule=rule))
    if issues:
        raise ConfigError(issues)
    return found


def fire(runner: Runner, schedule: Schedule, scheduled: datetime, *, project: str = defaults.DEFAULT_PROJECT,
         ) -> events.Received:
    """Store the event of one firing; the delivery id makes the other replicas' copies duplicates."""
    at = scheduled.astimezone(UTC).isoformat()
    return runner.run(events.receive(
        event_id=new_id(), project=project, source=SOURCE, delivery_id=f"{schedule.id}@{at}", now_ms=now_ms(),
        type=f"{SOURCE}.{schedule.id}", actor=None, subject=schedule.id,
        attrs={"schedule": schedule.id, "cron": schedule.cron, "timezone": schedule.timezone, "scheduled_at": at},
        raw_payload="{}"))


class Scheduler:
    """APScheduler in a background thread, one job per schedule."""

    def __init__(self, runner: Runner, schedules: list[Schedule]) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.runner = runner
        self.schedules = schedules
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
            "misfire_grace_time": MISFIRE_GRACE_S, "coalesce": True, "max_instances": 1})
        for schedule in schedules:
            self.scheduler.add_job(self._fire, schedule.trigger, args=(schedule,), id=schedule.id,
                                   name=f"schedule {schedule.id}")

    def _fire(self, schedule: Schedule) -> None:
        now = datetime.now(UTC)
        # The time this firing was scheduled for: the same on every replica, even one that runs it late.
        scheduled = schedule.trigger.get_next_fire_time(None, now - timedelta(seconds=MISFIRE_GRACE_S)) or now
        try:
            received = fire(self.runner, schedule, scheduled)
        except StoreUnavailable as exc:
            logger.warning("schedule could not fire", extra={"schedule": schedule.id, "error": str(exc)})
            return
        if received.created:
            logger.info("schedule fired", extra={"schedule": schedule.id, "event": received.event_id})

    def start(self) -> None:
        if self.schedules:
            self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
