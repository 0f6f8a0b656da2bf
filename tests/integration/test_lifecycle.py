"""Claim, finish, retry and the reaper on a real Redis, driven op by op (no worker threads)."""

from __future__ import annotations

from engine import keys, tasks
from engine.clock import now_ms
from engine.reaper import Reaper, ReaperOptions
from engine.store import SyncRunner
from tests.integration.conftest import OFFLINE_AFTER_MS, ServiceHarness, define

A, B = "a" * 32, "b" * 32


def reaper(runner: SyncRunner) -> Reaper:
    return Reaper(runner, ReaperOptions(offline_after_ms=OFFLINE_AFTER_MS, task_expiry_ms=3_600_000, max_lost=3),
                  owner="test")


def claim(runner: SyncRunner, task_id: str, proc: str) -> tasks.Claim:
    return runner.run(tasks.claim(task_id=task_id, proc_id=proc, now_ms=now_ms(), max_lost=3))


def kill(runner: SyncRunner, proc: str, worker: str) -> None:
    """Make a process look dead: its heartbeat expired and its last score is old."""
    runner.client.delete(keys.key("proc", proc=proc))
    runner.client.zadd(keys.key("worker_procs", worker=worker), {proc: now_ms() - 10 * OFFLINE_AFTER_MS})


def test_a_task_is_claimed_once_and_never_runs_again_after_it_finished(runner: SyncRunner, service: ServiceHarness,
                                                                      spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    first = claim(runner, task.id, A)
    assert first.task is not None and first.task.attempts == 1 and first.task.state == "dispatched"
    assert claim(runner, task.id, B).reason == "running_elsewhere"
    assert claim(runner, task.id, A).reason == "running_here"
    assert runner.run(tasks.finish(task_id=task.id, proc_id=A, now_ms=now_ms(), outcome="completed",
                                   text="out")) == (True, "completed")
    assert claim(runner, task.id, B).reason == "completed"
    done = service(lambda s: s.get("default", task.id))
    assert (done.state, done.result, done.attempts) == ("completed", "out", 1)
    assert runner.client.zcard(keys.key("worker_active", worker="w")) == 0
    assert runner.client.hget(keys.key("metrics"), "tasks_completed") == "1"


def test_reaper_requeues_the_tasks_of_a_dead_process(runner: SyncRunner, service: ServiceHarness,
                                                     spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    assert claim(runner, task.id, A).task is not None
    queue = keys.key("dq_queue", worker="w")
    runner.client.delete(queue)  # Dramatiq's copy of the message is in A's (dead) hands
    kill(runner, A, "w")

    done = reaper(runner).tick()

    assert done["dead_processes"] == 1 and done["requeued"] == 1
    assert runner.client.llen(queue) == 1
    again = claim(runner, task.id, B)
    assert again.task is not None and again.task.lost == 1 and again.task.attempts == 2
    assert runner.client.zscore(keys.key("worker_procs", worker="w"), A) is None


def test_a_redelivered_message_takes_over_from_a_dead_owner(runner: SyncRunner, service: ServiceHarness,
                                                            spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    claim(runner, task.id, A)
    runner.client.delete(keys.key("proc", proc=A))
    took = claim(runner, task.id, B)
    assert took.task is not None and took.task.owner == B and took.task.lost == 1


def test_a_task_that_keeps_losing_its_worker_fails_with_worker_lost(runner: SyncRunner, service: ServiceHarness,
                                                                    spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    for _ in range(3):
        claim(runner, task.id, A)
        kill(runner, A, "w")
        reaper(runner).tick()
        runner.client.delete(keys.key("lock", name="reaper"))
    lost = service(lambda s: s.get("default", task.id))
    assert (lost.state, lost.error) == ("failed", "worker lost")


def test_retry_waits_in_the_delayed_set_then_is_enqueued(runner: SyncRunner, service: ServiceHarness,
                                                         spec_factory) -> None:
    define(runner, spec_factory("w", max_retries=2), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    claim(runner, task.id, A)
    runner.client.delete(keys.key("dq_queue", worker="w"))
    now = now_ms()
    assert runner.run(tasks.finish(task_id=task.id, proc_id=A, now_ms=now, outcome="retry", text="boom",
                                   retry_at_ms=now - 1)) == (True, "pending")
    assert runner.client.zscore(keys.key("delayed"), task.id) == now - 1
    assert runner.client.llen(keys.key("dq_queue", worker="w")) == 0

    assert reaper(runner).tick()["retries_due"] == 1

    assert runner.client.llen(keys.key("dq_queue", worker="w")) == 1
    again = claim(runner, task.id, B)
    assert again.task is not None and again.task.attempts == 2 and again.task.error == "boom"


def test_an_early_message_does_not_run_a_retry_before_its_time(runner: SyncRunner, service: ServiceHarness,
                                                              spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    claim(runner, task.id, A)
    runner.run(tasks.finish(task_id=task.id, proc_id=A, now_ms=now_ms(), outcome="retry", text="boom",
                            retry_at_ms=now_ms() + 60_000))
    assert claim(runner, task.id, B).reason == "early"


def test_a_lost_message_is_put_back_by_the_scan(runner: SyncRunner, service: ServiceHarness, spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    # Given the message vanished (a crash between fetch and claim) and the task is old enough
    runner.client.delete(keys.key("dq_queue", worker="w"), keys.key("dq_msgs", worker="w"))
    runner.client.zadd(keys.key("worker_active", worker="w"), {task.id: now_ms() - 120_000})
    assert reaper(runner).tick()["missing"] == 1
    assert runner.client.llen(keys.key("dq_queue", worker="w")) == 1
    # A task whose message is still queued is left alone.
    runner.client.delete(keys.key("lock", name="reaper"))
    r = reaper(runner)
    assert r.tick()["missing"] == 0


def test_a_final_outcome_from_a_late_process_is_not_applied_twice(runner: SyncRunner, service: ServiceHarness,
                                                                  spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    claim(runner, task.id, A)
    assert runner.run(tasks.finish(task_id=task.id, proc_id=A, now_ms=now_ms(), outcome="completed",
                                   text="one"))[0]
    assert runner.run(tasks.finish(task_id=task.id, proc_id=B, now_ms=now_ms(), outcome="completed",
                                   text="two")) == (False, "completed")
    assert runner.client.hget(keys.key("metrics"), "tasks_completed") == "1"


def test_a_cancel_sent_to_a_process_that_died_still_holds(runner: SyncRunner, service: ServiceHarness,
                                                         spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    claim(runner, task.id, A)
    assert service(lambda s: s.cancel("default", task.id)).state == "dispatched"  # signalled to A
    kill(runner, A, "w")
    reaper(runner).tick()
    assert claim(runner, task.id, B).reason == "cancelled"
    assert service(lambda s: s.get("default", task.id)).state == "cancelled"


def test_fetch_claim_hands_out_only_runnable_tasks_and_acks_the_rest(runner: SyncRunner, service: ServiceHarness,
                                                                     spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    first, _ = service(lambda s: s.submit("default", {"prompt": "1"}))
    second, _ = service(lambda s: s.submit("default", {"prompt": "2"}))
    service(lambda s: s.cancel("default", second.id))

    got = runner.run(tasks.fetch_claim(worker="w", broker_id="brk", proc_id=A, now_ms=now_ms(), max_lost=3, room=5))

    assert [c.task.id for _, c in got if c.task] == [first.id]
    acks = keys.key("dq_acks", broker="brk", worker="w")
    assert runner.client.scard(acks) == 1  # the runnable one waits for its finish to ack it
    assert runner.client.hlen(keys.key("dq_msgs", worker="w")) == 1  # the cancelled one's message is gone
    mid = runner.client.smembers(acks).pop()
    runner.run(tasks.finish(task_id=first.id, proc_id=A, now_ms=now_ms(), outcome="completed", text="ok",
                            ack=tasks.Ack(acks, keys.key("dq_msgs", worker="w"), mid, mid)))
    assert runner.client.scard(acks) == 0 and runner.client.hlen(keys.key("dq_msgs", worker="w")) == 0


def test_reaping_skips_a_process_that_heartbeat_meanwhile(runner: SyncRunner, service: ServiceHarness,
                                                          spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)  # A's heartbeat key is fresh
    assert runner.run(tasks.reap_dead(proc_id=A, workers=["w"], now_ms=now_ms(), max_lost=3,
                                      cutoff_ms=now_ms() - OFFLINE_AFTER_MS)) == -1
    assert runner.client.zscore(keys.key("worker_procs", worker="w"), A) is not None


def test_a_clean_stop_gives_tasks_back_without_counting_a_lost_delivery(runner: SyncRunner,
                                                                        service: ServiceHarness,
                                                                        spec_factory) -> None:
    define(runner, spec_factory("w"), proc=A)
    task, _ = service(lambda s: s.submit("default", {"prompt": "x"}))
    claim(runner, task.id, A)
    assert runner.run(tasks.release_process(proc_id=A, workers=["w"], now_ms=now_ms())) == 1
    back = service(lambda s: s.get("default", task.id))
    assert (back.state, back.lost, back.owner) == ("pending", 0, None)


def test_tasks_of_a_removed_worker_fail_instead_of_waiting_forever(runner: SyncRunner, service: ServiceHarness,
                                                                   spec_factory) -> None:
    define(runner, spec_factory("w", max_retries=3), proc=A)
    running, _ = service(lambda s: s.submit("default", {"prompt": "1"}))
    retrying, _ = service(lambda s: s.submit("default", {"prompt": "2"}))
    claim(runner, running.id, A)
    claim(runner, retrying.id, A)
    service(lambda s: s.remove_worker("w"))
    # One run asks for a retry, then the process dies holding the other.
    runner.run(tasks.finish(task_id=retrying.id, proc_id=A, now_ms=now_ms(), outcome="retry", text="x",
                            retry_at_ms=now_ms() - 1))
    kill(runner, A, "w")
    done = reaper(runner).tick()
    assert done["dead_processes"] == 1
    for task_id in (running.id, retrying.id):
        t = service(lambda s, i=task_id: s.get("default", i))
        assert (t.state, t.error) == ("failed", "worker removed")
    assert runner.client.zcard(keys.key("worker_active", worker="w")) == 0
    runner.client.delete(keys.key("lock", name="reaper"))
    reaper(runner).tick()
    assert runner.client.smembers(keys.key("workers_removed")) == set()


def test_round_robin_tasks_stranded_on_a_dead_worker_move_but_named_ones_wait(
        runner: SyncRunner, service: ServiceHarness, spec_factory) -> None:
    define(runner, spec_factory("a"), proc=A)
    rr, _ = service(lambda s: s.submit("default", {"prompt": "anyone"}))
    named, _ = service(lambda s: s.submit("default", {"prompt": "only a", "worker": "a"}))
    # Given a's only process died over a minute ago, and b came online
    runner.client.delete(keys.key("proc", proc=A))
    runner.client.zadd(keys.key("worker_procs", worker="a"), {A: now_ms() - 120_000})
    runner.client.set(keys.key("worker_seen", worker="a"), now_ms() - 120_000)
    define(runner, spec_factory("b"), proc=B)

    done = reaper(runner).tick()

    assert done["redispatched"] == 1
    moved = service(lambda s: s.get("default", rr.id))
    assert moved.worker_name == "b" and moved.state == "pending"
    assert moved.dispatch["redispatched"]["from"] == "a" and moved.dispatch["chosen"] == "b"
    assert runner.client.llen(keys.key("dq_queue", worker="b")) == 1
    assert runner.client.llen(keys.key("dq_queue", worker="a")) == 1  # the named task's message stays
    assert service(lambda s: s.get("default", named.id)).worker_name == "a"
    assert runner.client.zcard(keys.key("worker_active", worker="a")) == 1
    by_b, _ = service(lambda s: s.list("default", state="pending", worker="b", limit=10, cursor=None))
    assert [t.id for t in by_b] == [rr.id]
    # And b's process runs it
    assert claim(runner, rr.id, B).task is not None


def test_a_worker_that_died_recently_keeps_its_round_robin_tasks_for_a_grace_period(
        runner: SyncRunner, service: ServiceHarness, spec_factory) -> None:
    define(runner, spec_factory("a"), proc=A)
    rr, _ = service(lambda s: s.submit("default", {"prompt": "anyone"}))
    kill(runner, A, "a")  # its last heartbeat ("seen") is recent: it may be restarting
    define(runner, spec_factory("b"), proc=B)
    assert reaper(runner).tick()["redispatched"] == 0
    assert service(lambda s: s.get("default", rr.id)).worker_name == "a"
    (a,) = [w for w in service(lambda s: s.workers()) if w["name"] == "a"]
    assert a["state"] == "offline" and a["health"] == "down" and a["last_heartbeat"] is not None
