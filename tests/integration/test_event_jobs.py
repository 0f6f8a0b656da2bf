"""Engine jobs on a real Redis with a stub GitHub over real HTTP: dispatch, superseding, lazy attributes,
write-back retries that never duplicate a comment, and schedules that fire once across replicas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from config.settings import Settings, SourceSpec, WorkerSpec
from engine import events, keys, registry, tasks
from engine.clock import now_ms
from engine.event_jobs import EventJobs, JobOptions, Retry
from engine.event_sweep import EventSweep
from engine.github_api import GitHubClient
from engine.ids import new_id
from engine.rules import RuleBook
from engine.schedules import fire, schedules_of
from engine.sources import parse_delivery
from engine.store import Op, SyncRunner
from tests.fixture_paths import GITHUB_WEBHOOKS
from tests.integration.conftest import OFFLINE_AFTER_MS, define
from tests.stub_github import StubGitHub

FIXTURES = GITHUB_WEBHOOKS
TOKEN = "ghp_jobs_token"


@pytest.fixture()
def github() -> Iterator[StubGitHub]:
    with StubGitHub(token=TOKEN) as stub:
        yield stub


def make_jobs(runner: SyncRunner, github: StubGitHub, config: dict[str, Any]) -> tuple[EventJobs, Settings]:
    config = {"sources": {"github": {"token": TOKEN, "api_url": github.url}}, **config}
    settings = Settings.model_validate(config)
    schedules = schedules_of(settings)
    book = RuleBook([*RuleBook.build(settings).rules(), *(s.rule for s in schedules)])
    define(runner, *settings.workers)
    clients: dict[str, GitHubClient] = {}

    def client(spec: SourceSpec) -> GitHubClient:
        return clients.setdefault("c", GitHubClient(spec.api_url or "", spec.token))

    jobs = EventJobs(runner=runner, rules=book, sources=dict(settings.sources), github_client=client,
                     options=JobOptions(default_bound=50, offline_after_ms=OFFLINE_AFTER_MS))
    return jobs, settings


def deliver(runner: SyncRunner, settings: Settings, name: str, *, mutate: Any = None) -> str:
    payload = json.loads((FIXTURES / f"{name}.json").read_text())
    if mutate:
        mutate(payload)
    inbound = parse_delivery("github", settings.sources["github"], {"x-github-event": name.split(".")[0]},
                             json.dumps(payload).encode())
    event_id = new_id()
    runner.run(events.receive(event_id=event_id, project="default", source="github", delivery_id=None,
                              now_ms=now_ms(), type=inbound.type, actor=inbound.actor, subject=inbound.subject,
                              attrs=inbound.attrs, raw_payload=json.dumps(payload)))
    return event_id


def complete(runner: SyncRunner, task_id: str, result: str) -> None:
    claim = runner.run(tasks.claim(task_id=task_id, proc_id="p" * 32, now_ms=now_ms(), max_lost=3))
    assert claim.task is not None
    assert runner.run(tasks.finish(task_id=task_id, proc_id="p" * 32, now_ms=now_ms(), outcome="completed",
                                   text=result)) == (True, "completed")


def event_of(runner: SyncRunner, event_id: str) -> events.Event:
    event = runner.run(events.get(event_id))
    assert event is not None
    return event


REVIEWER = {"name": "reviewer", "handler": "workers.builtin:echo"}


def test_dispatch_is_idempotent_and_the_event_follows_its_tasks(runner: SyncRunner, github: StubGitHub) -> None:
    jobs, settings = make_jobs(runner, github, {"workers": [
        {**REVIEWER, "events": [{"source": "github", "on": "pull_request.opened", "prompt": "Review {{.title}}"}]},
        {"name": "labeller", "handler": "workers.builtin:echo",
         "events": [{"source": "github", "on": "pull_request.*", "prompt": "Label #{{.number}}"},
                    {"source": "github", "on": "pull_request.*", "prompt": "watch", "auto": False}]}]})
    event_id = deliver(runner, settings, "pull_request.opened")
    assert jobs.process(event_id) is None
    event = event_of(runner, event_id)
    assert event.state == "dispatched"
    assert [(m["rule"], m["status"]) for m in event.matches] == [
        ("reviewer.events[0]", "dispatched"), ("labeller.events[0]", "dispatched"), ("labeller.events[1]", "matched")]
    # A redelivered job (the Dramatiq message came twice) neither re-matches nor admits again.
    runner.run(events.update(event_id=event_id, now_ms=now_ms(), state="received"))
    jobs.process(event_id)
    assert len(runner.run(tasks.list_page(project="default", state=None, worker=None, below_seq=None,
                                          limit=50))[0]) == 2
    first, second = event_of(runner, event_id).task_ids
    assert runner.run(tasks.get(first)).prompt == "Review Update the README with new information."  # type: ignore
    complete(runner, first, "ok")
    jobs.task_finished(first)
    assert event_of(runner, event_id).state == "dispatched"
    complete(runner, second, "ok")
    jobs.task_finished(second)
    assert event_of(runner, event_id).state == "completed"
    assert github.requests == []  # results that are not write-back JSON write nothing


def test_lazy_diff_is_fetched_only_when_a_template_uses_it(runner: SyncRunner, github: StubGitHub) -> None:
    github.set_pull("Codertocat", "Hello-World", 2, diff="diff --git a/README.md b/README.md\n+hi\n",
                    files=["README.md"])
    jobs, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "events": [
        {"source": "github", "on": "pull_request.opened", "prompt": "{{.file_list}}\n{{.diff}}"}]}]})
    jobs.process(deliver(runner, settings, "pull_request.opened"))
    (task,), _ = runner.run(tasks.list_page(project="default", state=None, worker=None, below_seq=None, limit=5))
    assert task.prompt == "README.md\ndiff --git a/README.md b/README.md\n+hi\n"
    assert {r.path for r in github.requests} == {"/repos/Codertocat/Hello-World/pulls/2",
                                                 "/repos/Codertocat/Hello-World/pulls/2/files"}

    plain, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "events": [
        {"source": "github", "on": "pull_request.synchronize", "prompt": "{{.title}}"}]}]})
    before = len(github.requests)
    plain.process(deliver(runner, settings, "pull_request.synchronize"))
    assert len(github.requests) == before


def test_payload_paths_in_filters_and_templates_see_the_payload_the_engine_reads_lazily(
        runner: SyncRunner, github: StubGitHub) -> None:
    # Given rules that read the raw payload (the engine decodes it only for such rules)
    jobs, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "events": [
        {"source": "github", "on": "pull_request.opened", "filter": {"pull_request.draft": False},
         "prompt": "{{ payload.repository.full_name }} by {{ payload.sender.login }}"},
        {"source": "github", "on": "pull_request.opened", "filter": {"pull_request.draft": True}, "prompt": "x"}]}]})
    # When a pull request arrives
    event_id = deliver(runner, settings, "pull_request.opened")
    jobs.process(event_id)
    # Then the payload filter chose the rule and the template read the payload
    (task,), _ = runner.run(tasks.list_page(project="default", state=None, worker=None, below_seq=None, limit=5))
    assert task.prompt == "Codertocat/Hello-World by Codertocat"
    assert [m["rule"] for m in event_of(runner, event_id).matches] == ["reviewer.events[0]"]


def test_a_new_push_cancels_the_review_of_the_stale_commit(runner: SyncRunner, github: StubGitHub) -> None:
    rule = {"source": "github", "on": ["pull_request.opened", "pull_request.synchronize"], "prompt": "{{.head_sha}}",
            "concurrency_key": "{{.repo}}#{{.number}}", "on_conflict": "cancel_running"}
    jobs, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "events": [rule]}]})
    old_event = deliver(runner, settings, "pull_request.opened")
    jobs.process(old_event)
    (old_task,) = event_of(runner, old_event).task_ids
    new_event = deliver(runner, settings, "pull_request.synchronize",
                        mutate=lambda p: p["pull_request"]["head"].update(sha="f" * 40))
    jobs.process(new_event)
    (new_task,) = event_of(runner, new_event).task_ids
    assert runner.run(tasks.get(old_task)).state == "cancelled"  # type: ignore[union-attr]
    assert runner.run(tasks.get(new_task)).state == "pending"  # type: ignore[union-attr]
    jobs.task_finished(old_task)
    assert event_of(runner, old_event).state == "failed"  # its only task was cancelled


def test_skip_and_queue_on_conflict(runner: SyncRunner, github: StubGitHub, redis_client: redis.Redis) -> None:
    base = {"source": "github", "on": ["pull_request.opened", "pull_request.synchronize"], "prompt": "{{.action}}",
            "concurrency_key": "{{.number}}"}
    jobs, settings = make_jobs(runner, github, {"workers": [
        {**REVIEWER, "events": [{**base, "on_conflict": "skip"}]},
        {"name": "queued", "handler": "workers.builtin:echo", "events": [{**base, "on_conflict": "queue"}]}]})
    first = deliver(runner, settings, "pull_request.opened")
    jobs.process(first)
    skip_task, queue_task = event_of(runner, first).task_ids
    second = deliver(runner, settings, "pull_request.synchronize")
    jobs.process(second)
    event = event_of(runner, second)
    assert [(m["rule"], m["status"]) for m in event.matches] == [
        ("reviewer.events[0]", "skipped"), ("queued.events[0]", "queued")]
    assert event.state == "dispatched"  # a dispatch waits on the key: the event is not over
    # The holder finishes: the queued dispatch starts and the waiting event moves on.
    complete(runner, queue_task, "done")
    jobs.task_finished(queue_task)
    event = event_of(runner, second)
    assert event.state == "dispatched"
    (started,) = event.task_ids
    assert runner.run(tasks.get(started)).prompt == "synchronize"  # type: ignore[union-attr]
    complete(runner, started, "done")
    jobs.task_finished(started)
    assert event_of(runner, second).state == "completed"
    assert redis_client.keys("ty:conc:*:wait") == []


def write_back_jobs(runner: SyncRunner, github: StubGitHub) -> tuple[EventJobs, str, str]:
    jobs, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "policy": {"max_comment_chars": 40},
                                                             "events": [{"source": "github",
                                                                         "on": "pull_request.opened",
                                                                         "prompt": "r"}]}]})
    event_id = deliver(runner, settings, "pull_request.opened")
    jobs.process(event_id)
    (task_id,) = event_of(runner, event_id).task_ids
    complete(runner, task_id, json.dumps({"comment": "x" * 100, "status": "failure", "labels": ["needs-work"]}))
    return jobs, event_id, task_id


def test_write_back_retries_and_never_posts_a_comment_twice(runner: SyncRunner, github: StubGitHub) -> None:
    jobs, event_id, task_id = write_back_jobs(runner, github)
    # The comment is created but its answer is lost, then the status call fails with a 502.
    github.fail("POST", "/repos/Codertocat/Hello-World/issues/2/comments", drop=True)
    github.fail("POST", "/repos/Codertocat/Hello-World/statuses/", status=502)
    outcome = jobs.task_finished(task_id)
    assert isinstance(outcome, Retry) and outcome.attempt == 2  # the comment's answer was lost, the status 502
    assert jobs.task_finished(task_id, outcome.attempt) is None  # the comment is found, not posted; status ok
    comments = github.comments("Codertocat", "Hello-World", 2)
    assert len(comments) == 1
    assert len(comments[0]["body"].split("\n\n<!--")[0]) <= 40 + 200  # truncated with a visible note
    assert [s["state"] for s in github.statuses] == ["failure"]
    assert github.labels("Codertocat", "Hello-World", 2)[-1] == "needs-work"
    event = event_of(runner, event_id)
    assert event.state == "completed"
    assert {k.split(":", 1)[1] for k in event.write_back} >= {"comment", "status"}


def test_write_back_that_keeps_failing_marks_the_event(runner: SyncRunner, github: StubGitHub) -> None:
    jobs, event_id, task_id = write_back_jobs(runner, github)
    github.fail("POST", "/repos/Codertocat/Hello-World/statuses/", status=503, times=100)
    attempt, outcome = 1, jobs.task_finished(task_id)
    while isinstance(outcome, Retry):
        attempt = outcome.attempt
        outcome = jobs.task_finished(task_id, attempt)
    assert attempt == 6
    event = event_of(runner, event_id)
    assert event.state == "write_back_failed"
    assert event.error is not None and event.error.startswith("write-back failed: status:")
    assert len(github.comments("Codertocat", "Hello-World", 2)) == 1  # done once, kept


def test_a_schedule_fires_once_across_replicas(runner: SyncRunner, github: StubGitHub,
                                                redis_client: redis.Redis) -> None:
    jobs, settings = make_jobs(runner, github, {"workers": [
        {**REVIEWER, "schedule": [{"cron": "0 9 * * 1-5", "prompt": "Daily triage", "name": "triage"}]}]})
    (schedule,) = schedules_of(settings)
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    copies = [fire(runner, schedule, at) for _ in range(3)]  # three replicas fire the same minute
    assert sum(c.created for c in copies) == 1
    event_id = copies[0].event_id
    jobs.process(event_id)
    event = event_of(runner, event_id)
    assert (event.source, event.type, event.state) == ("schedule", "schedule.triage", "dispatched")
    (task_id,) = event.task_ids
    assert runner.run(tasks.get(task_id)).prompt == "Daily triage"  # type: ignore[union-attr]
    assert redis_client.llen(keys.key("dq_engine")) >= 1


def test_two_schedulers_firing_the_same_entry_store_one_event(runner: SyncRunner, github: StubGitHub) -> None:
    from engine.schedules import Scheduler

    _, settings = make_jobs(runner, github, {"workers": [
        {**REVIEWER, "schedule": [{"cron": "* * * * *", "prompt": "every minute", "name": "tick"}]}]})
    schedules = schedules_of(settings)
    replicas = [Scheduler(runner, schedules), Scheduler(runner, schedules)]
    for replica in replicas:  # what APScheduler calls when the entry fires, on each replica
        replica._fire(schedules[0])
    page, _ = runner.run(events.list_page(project="default", state=None, source="schedule", below_seq=None,
                                          limit=10))
    assert len(page) == 1
    scheduled = datetime.fromisoformat(page[0].attrs["scheduled_at"])
    assert scheduled.second == 0 and scheduled.microsecond == 0  # the minute it was due, not "now"
    assert (datetime.now(UTC) - scheduled).total_seconds() < 61


def test_racing_events_never_both_take_a_concurrency_key(redis_url: str, runner: SyncRunner,
                                                         github: StubGitHub) -> None:
    import threading

    rule = {"source": "github", "on": ["pull_request.synchronize"], "prompt": "{{.head_sha}}",
            "concurrency_key": "{{.number}}", "on_conflict": "queue"}
    _, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "events": [rule]}]})
    ids = [deliver(runner, settings, "pull_request.synchronize") for _ in range(6)]
    barrier = threading.Barrier(len(ids))

    def work(event_id: str) -> None:
        own = SyncRunner(redis.Redis.from_url(redis_url, decode_responses=True))
        jobs, _ = make_jobs(own, github, {"workers": [{**REVIEWER, "events": [rule]}]})
        barrier.wait()
        jobs.process(event_id)

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(event_of(runner, i).matches[0]["status"] for i in ids)
    assert statuses == ["dispatched"] + ["queued"] * 5
    # Hand the key down the queue: each finished holder starts exactly one waiting dispatch.
    jobs, _ = make_jobs(runner, github, {"workers": [{**REVIEWER, "events": [rule]}]})
    for _ in range(6):
        (holder,) = [t for i in ids for t in event_of(runner, i).task_ids
                     if runner.run(tasks.get(t)).state == "pending"]  # type: ignore[union-attr]
        complete(runner, holder, "done")
        jobs.task_finished(holder)
    assert sorted(event_of(runner, i).state for i in ids) == ["completed"] * 6


def test_a_refused_rule_fails_the_event_even_when_another_dispatched(runner: SyncRunner,
                                                                      github: StubGitHub) -> None:
    jobs, settings = make_jobs(runner, github, {
        "workers": [{**REVIEWER, "events": [{"source": "github", "on": "pull_request.opened", "prompt": "a"}]}],
        "rules": [{"source": "github", "on": "pull_request.opened", "prompt": "b", "worker": "ghost"}]})
    event_id = deliver(runner, settings, "pull_request.opened")
    jobs.process(event_id)
    event = event_of(runner, event_id)
    assert [(m["rule"], m["status"]) for m in event.matches] == [("reviewer.events[0]", "dispatched"),
                                                                 ("rules[0]", "refused")]
    (task_id,) = event.task_ids
    complete(runner, task_id, "fine")
    jobs.task_finished(task_id)
    event = event_of(runner, event_id)
    assert event.state == "failed"
    assert event.error is not None and "rules[0] refused: worker not found" in event.error


def test_the_sweep_requeues_events_whose_job_was_lost_then_fails_them(runner: SyncRunner, github: StubGitHub,
                                                                      redis_client: redis.Redis) -> None:
    from engine.event_sweep import MAX_SWEEPS, STUCK_AFTER_MS

    jobs, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "events": [
        {"source": "github", "on": "pull_request.opened", "prompt": "x"}]}]})
    lost, fine = deliver(runner, settings, "pull_request.opened"), deliver(runner, settings, "pull_request.opened")
    jobs.process(fine)
    (task_id,) = event_of(runner, fine).task_ids
    assert sorted(redis_client.zrange(keys.key("ev_open"), 0, -1)) == sorted([lost, fine])
    assert EventSweep(jobs).stuck(now_ms()) == []  # too young to count as stuck
    # The task of the processed event finishes, but its task_finished job is lost: the sweep settles it.
    complete(runner, task_id, "done")
    redis_client.delete(keys.key("dq_engine"), keys.key("dq_engine_msgs"))
    later = now_ms() + STUCK_AFTER_MS + 1
    for n in range(MAX_SWEEPS):
        assert EventSweep(jobs).stuck(later + n * (STUCK_AFTER_MS + 1)) == [lost]
        if n == 0:
            assert event_of(runner, fine).state == "completed"
    assert EventSweep(jobs).stuck(later + MAX_SWEEPS * (STUCK_AFTER_MS + 1)) == []
    event = event_of(runner, lost)
    assert event.state == "failed" and event.error is not None and "processing failed" in event.error
    assert redis_client.zcard(keys.key("ev_open")) == 0


def test_the_sweep_leaves_running_events_alone_and_looks_again_later(runner: SyncRunner, github: StubGitHub,
                                                                      redis_client: redis.Redis) -> None:
    from engine.event_sweep import STUCK_AFTER_MS

    jobs, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "events": [
        {"source": "github", "on": "pull_request.opened", "prompt": "x"}]}]})
    running = deliver(runner, settings, "pull_request.opened")
    jobs.process(running)
    later = now_ms() + STUCK_AFTER_MS + 1
    assert EventSweep(jobs).stuck(later) == []
    assert event_of(runner, running).state == "dispatched"
    assert redis_client.zscore(keys.key("ev_open"), running) == later  # checked again a sweep period later


def test_the_sweep_waits_while_the_engine_is_behind_and_a_failing_job_fails_its_event(
        runner: SyncRunner, github: StubGitHub, redis_client: redis.Redis) -> None:
    from engine.event_sweep import STUCK_AFTER_MS, SWEEP_MAX_BACKLOG

    jobs, settings = make_jobs(runner, github, {"workers": [REVIEWER]})
    waiting = deliver(runner, settings, "pull_request.opened")
    redis_client.rpush(keys.key("dq_engine"), *[f"m{i}" for i in range(SWEEP_MAX_BACKLOG)])
    assert EventSweep(jobs).stuck(now_ms() + 10 * STUCK_AFTER_MS) == []  # its job is in the backlog: nothing is lost
    assert event_of(runner, waiting).state == "received"
    EventSweep(jobs).give_up("process_event", waiting, RuntimeError("boom"))
    event = event_of(runner, waiting)
    assert event.state == "failed" and event.error == "processing failed: RuntimeError: boom"


def queue_behind_a_holder(runner: SyncRunner, github: StubGitHub) -> tuple[EventJobs, Settings, str, str]:
    """A reviewer rule keyed by PR number with on_conflict: queue, and a first event whose task holds the key."""
    rule = {"source": "github", "on": ["pull_request.opened", "pull_request.synchronize"], "prompt": "{{.action}}",
            "concurrency_key": "{{.number}}", "on_conflict": "queue"}
    jobs, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "events": [rule]}]})
    first = deliver(runner, settings, "pull_request.opened")
    jobs.process(first)
    (holder,) = event_of(runner, first).task_ids
    return jobs, settings, first, holder


def test_a_key_handed_on_while_the_waiting_event_is_still_being_processed(runner: SyncRunner,
                                                                         github: StubGitHub) -> None:
    from engine import concurrency
    from engine.event_jobs import event_task_id

    jobs, settings, first, holder = queue_behind_a_holder(runner, github)
    second = deliver(runner, settings, "pull_request.synchronize")
    # The second event's job has claimed (and queued) but not yet stored its matches when the holder ends.
    key = concurrency.key_of("default", "reviewer.events[0]", "2")
    task = event_task_id(second, "reviewer.events[0]")
    entry = concurrency.entry_of(event=second, rule="reviewer.events[0]", value="2", task=task)
    assert runner.run(concurrency.claim(key, task, "queue", entry, "synchronize"))[0] == "queued"
    complete(runner, holder, "done")
    jobs.task_finished(holder)  # hands the key to the second event's dispatch: deferred, the event is received
    jobs.process(second)  # its job goes on: finds the key already its own, and the dispatch recorded
    event = event_of(runner, second)
    assert event.state == "dispatched"
    assert [(m["status"], m.get("task_id")) for m in event.matches] == [
        ("dispatched", event_task_id(second, "reviewer.events[0]"))]
    complete(runner, event.task_ids[0], "done")
    jobs.task_finished(event.task_ids[0])
    assert event_of(runner, second).state == "completed"
    assert runner.run(Op(int, command=("LLEN", key + ":wait"))) == 0


def test_a_refused_holder_hands_the_key_to_the_next_waiter(runner: SyncRunner, github: StubGitHub) -> None:
    jobs, settings, first, holder = queue_behind_a_holder(runner, github)
    waiting = [deliver(runner, settings, "pull_request.synchronize") for _ in range(2)]
    for event_id in waiting:
        jobs.process(event_id)
    # The first waiter's event is gone by the time the key is handed to it: the key passes to the next one.
    runner.run(Op(int, command=("DEL", keys.key("event", id=waiting[0]))))
    complete(runner, holder, "done")
    jobs.task_finished(holder)
    assert event_of(runner, waiting[1]).matches[0]["status"] == "dispatched"


def test_a_handed_off_dispatch_refused_for_now_keeps_its_place_and_the_sweep_starts_it(
        runner: SyncRunner, github: StubGitHub) -> None:
    from engine.event_sweep import STUCK_AFTER_MS

    rule = {"source": "github", "on": ["pull_request.opened", "pull_request.synchronize"], "prompt": "{{.action}}",
            "concurrency_key": "{{.number}}", "on_conflict": "queue"}
    jobs, settings = make_jobs(runner, github, {"workers": [{**REVIEWER, "max_queue_depth": 1, "events": [rule]}]})
    first = deliver(runner, settings, "pull_request.opened")
    jobs.process(first)
    (holder,) = event_of(runner, first).task_ids
    second = deliver(runner, settings, "pull_request.synchronize")
    jobs.process(second)
    complete(runner, holder, "done")
    filler = new_id()  # another task takes the worker's only slot before the key is handed on
    assert runner.run(tasks.admit(task_id=filler, project="default", now_ms=now_ms(),
                                  candidates=[("reviewer", 1, 1, 60.0)], policy="named", rr_group="",
                                  require_online=False, online_since_ms=0, skipped=[], fields={"prompt": "f"},
                                  idempotency_key=None)).status == "ok"
    jobs.task_finished(holder)
    event = event_of(runner, second)
    assert (event.state, event.matches[0]["status"]) == ("dispatched", "queued")  # refused for now, not failed
    complete(runner, filler, "done")
    EventSweep(jobs).stuck(now_ms() + STUCK_AFTER_MS + 1)  # the sweep pokes the free key: the waiter gets it
    event = event_of(runner, second)
    assert event.matches[0]["status"] == "dispatched" and len(event.task_ids) == 1


def test_a_retried_older_event_never_takes_the_key_back(runner: SyncRunner, github: StubGitHub) -> None:
    rules = [{"source": "github", "on": ["pull_request.opened", "pull_request.synchronize"], "prompt": "{{.action}}",
              "concurrency_key": "{{.number}}", "on_conflict": "cancel_running"}]
    jobs, settings = make_jobs(runner, github, {"workers": [
        {**REVIEWER, "events": rules},
        {"name": "tiny", "handler": "workers.builtin:echo", "max_queue_depth": 1,
         "events": [{"source": "github", "on": "pull_request.opened", "prompt": "t"}]}]})
    assert runner.run(tasks.admit(task_id=new_id(), project="default", now_ms=now_ms(),
                                  candidates=[("tiny", 1, 1, 60.0)], policy="named", rr_group="",
                                  require_online=False, online_since_ms=0, skipped=[], fields={"prompt": "f"},
                                  idempotency_key=None)).status == "ok"  # tiny is full: A will be retried
    older = deliver(runner, settings, "pull_request.opened")
    retry = jobs.process(older)
    assert isinstance(retry, Retry)
    newer = deliver(runner, settings, "pull_request.synchronize")
    jobs.process(newer)
    (newest_task,) = event_of(runner, newer).task_ids
    jobs.process(older, retry.attempt)  # the older event's retry
    assert runner.run(tasks.get(newest_task)).state == "pending"  # type: ignore[union-attr]


def test_a_crash_between_admission_and_confirm_never_lets_two_tasks_hold_a_key(
        runner: SyncRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import concurrency

    key = concurrency.key_of("default", "r", "k")
    first, second = new_id(), new_id()
    entry = concurrency.entry_of(event="e", rule="r", value="k", task=first)
    assert runner.run(concurrency.claim(key, first, "skip", entry, "p"))[0] == "claimed"
    runner.run(registry.register(WorkerSpec(name="w", handler="workers.builtin:echo"), source="test"))
    assert runner.run(tasks.admit(task_id=first, project="default", now_ms=now_ms(), candidates=[("w", 9, 1, 9.0)],
                                  policy="named", rr_group="", require_online=False, online_since_ms=0, skipped=[],
                                  fields={"prompt": "p"}, idempotency_key=None)).status == "ok"
    # ... and the process dies before confirm. Long after the claim's time is up, the key still holds:
    later = now_ms() + 10 * concurrency.CLAIM_TTL_MS
    monkeypatch.setattr(concurrency, "now_ms", lambda: later)
    other = concurrency.entry_of(event="e2", rule="r", value="k", task=second)
    assert runner.run(concurrency.claim(key, second, "skip", other, "p"))[:2] == ("busy", first)


def test_concurrency_keys_hash_their_value_and_do_not_leak(runner: SyncRunner, redis_client: redis.Redis) -> None:
    from engine import concurrency

    assert concurrency.key_of("p", "r", "x:wait") != concurrency.key_of("p", "r", "x") + ":wait"
    key = concurrency.key_of("default", "r", "v")
    done = new_id()
    runner.run(registry.register(WorkerSpec(name="w", handler="workers.builtin:echo"), source="test"))
    runner.run(tasks.admit(task_id=done, project="default", now_ms=now_ms(), candidates=[("w", 9, 1, 9.0)],
                           policy="named", rr_group="", require_online=False, online_since_ms=0, skipped=[],
                           fields={"prompt": "p"}, idempotency_key=None))
    entry = concurrency.entry_of(event="e", rule="r", value="v", task=done)
    assert runner.run(concurrency.claim(key, done, "queue", entry, "p"))[0] == "claimed"
    runner.run(tasks.finish(task_id=done, proc_id="", now_ms=now_ms(), outcome="failed", text="x"))
    # A late confirm of a task that is already over (a duplicate admission) frees the key instead of keeping it.
    assert runner.run(concurrency.confirm(key, done, entry)) == (True, None)
    assert redis_client.exists(key) == 0


def test_an_event_settles_even_when_the_record_of_a_handed_off_dispatch_was_lost(runner: SyncRunner,
                                                                                github: StubGitHub) -> None:
    from engine import concurrency

    jobs, settings, first, holder = queue_behind_a_holder(runner, github)
    second = deliver(runner, settings, "pull_request.synchronize")
    jobs.process(second)
    complete(runner, holder, "done")
    handoff = runner.run(concurrency.release(event_of(runner, second).matches[0]["key"], holder))
    assert handoff is not None and handoff["event"] == second
    # The handed-off dispatch is admitted and confirmed, then the process dies before recording it.
    jobs._dispatch(event_of(runner, second), jobs.rules.get("reviewer.events[0]"), handoff["prompt"],  # type: ignore[arg-type]
                   handoff["value"], jobs._definitions(), now_ms(), handed=True)
    assert event_of(runner, second).matches[0]["status"] == "queued"
    complete(runner, handoff["task"], "done")
    runner.run(events.update(event_id=second, now_ms=now_ms(), follow=True))  # what the sweep does
    assert event_of(runner, second).state == "completed"
