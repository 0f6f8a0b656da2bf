"""Alert deliveries on a real Redis to a real local receiver that verifies both signatures: retries with
backoff, final 4xx, redirects not followed, idempotent redelivery, the SSRF check at delivery time, Slack and
Discord shapes, exactly one incident.created under a race, and task.failed from a real worker runtime."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import Settings, WorkerSpec
from engine import alerts, webhooks
from engine.analysis import Analyzer
from engine.clock import now_ms
from engine.event_jobs import Retry
from engine.ids import new_id
from engine.store import SyncRunner
from engine.webhook_delivery import MAX_ATTEMPTS, WebhookDelivery, backoff_s
from engine.webhook_signing import new_secret
from engine.webhooks import Webhook
from tests.integration.conftest import ServiceHarness, app_client
from tests.webhook_receiver import Receiver, receiver

pytestmark = pytest.mark.integration

ALLOW = ["127.0.0.1"]
KEY = {"X-API-Key": "k"}
LOOP = [{"type": "tool_call", "payload": {"tool": "search", "args": {"q": "same"}}} for _ in range(4)]


@pytest.fixture()
def runner(redis_client: redis.Redis) -> SyncRunner:
    return SyncRunner(redis_client)


@pytest.fixture()
def hook_receiver() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def subscribe(runner: SyncRunner, url: str, events: tuple[str, ...], *, project: str = "default",
              classes: tuple[str, ...] = ()) -> Webhook:
    hook = Webhook(id=new_id(), project=project, url=url, events=events, classes=classes, created_at_ms=now_ms(),
                   secret=new_secret())
    runner.run(webhooks.create(hook))
    return hook


def deliver_until_settled(delivery: WebhookDelivery, delivery_id: str) -> list[Retry]:
    """Run the job as Dramatiq would, without waiting out the backoff."""
    retries = []
    while (retry := delivery.deliver(delivery_id)) is not None:
        retries.append(retry)
    return retries


def queued(redis_client: redis.Redis, actor: str) -> list[str]:
    raw = redis_client.hvals("ty:dq:ty.engine.msgs")
    return sorted(m["args"][0] for m in map(json.loads, raw) if m["actor_name"] == actor)


def test_5xx_retries_with_backoff_then_succeeds_and_the_log_shows_each_attempt(
        runner: SyncRunner, hook_receiver: Receiver) -> None:
    hook = subscribe(runner, hook_receiver.url + "/hook", ("task.failed",))
    hook_receiver.secret = hook.secret
    hook_receiver.script = [(500, {}), (503, {}), (200, {})]
    [delivery_id] = alerts.emit(runner, "default", "task.failed", {"task_id": "t"})
    retries = deliver_until_settled(WebhookDelivery(runner, ALLOW), delivery_id)
    assert retries == [Retry(backoff_s(1), 2), Retry(backoff_s(2), 3)] and backoff_s(2) == 2 * backoff_s(1)
    got = hook_receiver.received
    assert len(got) == 3 and all(r.standard_ok and r.simple_ok for r in got)
    assert {r.headers["webhook-id"] for r in got} == {delivery_id}  # one message id across retries
    assert {r.body for r in got} == {got[0].body}  # the same bytes every time
    assert got[0].json["type"] == "task.failed" and got[0].json["data"] == {"task_id": "t"}
    log = runner.run(webhooks.log(hook.id))
    assert [(e["attempt"], e["status"], e["code"]) for e in log] == [
        (3, "succeeded", 200), (2, "retrying", 503), (1, "retrying", 500)]
    assert runner.run(webhooks.delivery(delivery_id)).status == "succeeded"  # type: ignore[union-attr]


def test_a_delivery_that_succeeded_is_not_sent_again_when_its_job_is_redelivered(
        runner: SyncRunner, hook_receiver: Receiver) -> None:
    hook = subscribe(runner, hook_receiver.url, ("task.failed",))
    [delivery_id] = alerts.emit(runner, "default", "task.failed", {})
    delivery = WebhookDelivery(runner, ALLOW)
    assert delivery.deliver(delivery_id) is None
    assert delivery.deliver(delivery_id) is None  # a redelivered job
    assert len(hook_receiver.received) == 1 and len(runner.run(webhooks.log(hook.id))) == 1
    # Emitting the same event again (a redelivered emitting job) makes no second delivery either
    assert alerts.emit(runner, "default", "task.failed", {}, dedupe="same") != []
    assert alerts.emit(runner, "default", "task.failed", {}, dedupe="same") == []


def test_a_4xx_answer_is_final(runner: SyncRunner, hook_receiver: Receiver) -> None:
    hook = subscribe(runner, hook_receiver.url, ("task.failed",))
    hook_receiver.script = [(404, {})]
    [delivery_id] = alerts.emit(runner, "default", "task.failed", {})
    assert WebhookDelivery(runner, ALLOW).deliver(delivery_id) is None
    [entry] = runner.run(webhooks.log(hook.id))
    assert (entry["status"], entry["code"], entry["response"]) == ("failed", 404, '{"error": "nope"}')


def test_429_retries_and_gives_up_after_the_last_attempt(runner: SyncRunner, hook_receiver: Receiver) -> None:
    hook = subscribe(runner, hook_receiver.url, ("task.failed",))
    hook_receiver.script = [(429, {})] * MAX_ATTEMPTS
    [delivery_id] = alerts.emit(runner, "default", "task.failed", {})
    assert len(deliver_until_settled(WebhookDelivery(runner, ALLOW), delivery_id)) == MAX_ATTEMPTS - 1
    assert runner.run(webhooks.log(hook.id))[0]["status"] == "failed"
    assert len(hook_receiver.received) == MAX_ATTEMPTS


def test_redirects_are_not_followed(runner: SyncRunner, hook_receiver: Receiver) -> None:
    hook = subscribe(runner, hook_receiver.url + "/a", ("task.failed",))
    hook_receiver.script = [(302, {"Location": hook_receiver.url + "/b"})]
    [delivery_id] = alerts.emit(runner, "default", "task.failed", {})
    assert WebhookDelivery(runner, ALLOW).deliver(delivery_id) is None
    assert [r.path for r in hook_receiver.received] == ["/a"]
    [entry] = runner.run(webhooks.log(hook.id))
    assert (entry["status"], entry["code"], entry["error"]) == ("failed", 302, "redirect not followed")


def test_connection_errors_retry(runner: SyncRunner) -> None:
    hook = subscribe(runner, "http://127.0.0.1:9/nobody-listens", ("task.failed",))
    [delivery_id] = alerts.emit(runner, "default", "task.failed", {})
    assert WebhookDelivery(runner, ALLOW).deliver(delivery_id) == Retry(backoff_s(1), 2)
    [entry] = runner.run(webhooks.log(hook.id))
    assert entry["status"] == "retrying" and entry["error"].startswith("connection error")


def test_the_url_is_checked_again_at_delivery_time(runner: SyncRunner, hook_receiver: Receiver) -> None:
    # Given a subscription made while its host was allowed, when the allowlist no longer names it (or DNS
    # now points it at a private address), then the attempt is refused and final, and nothing is sent.
    hook = subscribe(runner, hook_receiver.url, ("task.failed",))
    [delivery_id] = alerts.emit(runner, "default", "task.failed", {})
    assert WebhookDelivery(runner, []).deliver(delivery_id) is None
    [entry] = runner.run(webhooks.log(hook.id))
    assert entry["status"] == "failed" and entry["error"].startswith("webhook url refused")
    assert hook_receiver.received == []


@pytest.mark.parametrize(("path", "field"), [("/services/T1/B2/x", "text"), ("/api/webhooks/1/tok", "content")])
def test_slack_and_discord_urls_get_their_native_shape(runner: SyncRunner, hook_receiver: Receiver,
                                                       path: str, field: str) -> None:
    # The receiver stands in for hooks.slack.com / discord.com: the table of native targets names it.
    native = [("127.0.0.1", "/services/", "slack"), ("127.0.0.1", "/api/webhooks/", "discord")]
    subscribe(runner, hook_receiver.url + path, ("incident.created",))
    data = {"id": "i1", "failure_class": "loop", "summary": "search called 4 times", "count": 1}
    [delivery_id] = alerts.emit(runner, "default", "incident.created", data, failure_class="loop")
    WebhookDelivery(runner, ALLOW, native=native).deliver(delivery_id)
    [got] = hook_receiver.received
    assert list(got.json) == [field]
    assert got.json[field] == ("[taskyard/default] incident.created: loop - search called 4 times "
                               "(incident i1, 1 occurrence(s))")


def test_class_filters_and_projects_choose_the_subscribers(runner: SyncRunner) -> None:
    loops = subscribe(runner, "http://127.0.0.1/a", ("incident.created",), classes=("loop",))
    every = subscribe(runner, "http://127.0.0.1/b", ("incident.created",))
    subscribe(runner, "http://127.0.0.1/c", ("incident.created",), project="other")
    made = alerts.emit(runner, "default", "incident.created", {}, failure_class="crash")
    assert [runner.run(webhooks.delivery(d)).webhook_id for d in made] == [every.id]  # type: ignore[union-attr]
    made = alerts.emit(runner, "default", "incident.created", {}, failure_class="loop")
    assert sorted(runner.run(webhooks.delivery(d)).webhook_id for d in made) == sorted(  # type: ignore[union-attr]
        [loops.id, every.id])


def test_a_new_signature_analysed_in_two_racing_traces_alerts_exactly_once(
        runner: SyncRunner, redis_client: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    subscribe(runner, "http://127.0.0.1/x", ("incident.created", "incident.regressed"))
    ids = []
    with app_client(tmp_path, "api_key: k\n", redis_url) as client:
        for _ in range(2):
            trace_id = client.post("/api/traces", json={"name": "loopy"}, headers=KEY).json()["id"]
            client.post(f"/api/traces/{trace_id}/events", json=LOOP, headers=KEY)
            ids.append(trace_id)
    barrier = threading.Barrier(2)

    def analyse(trace_id: str) -> None:
        analyzer = Analyzer(SyncRunner(redis.Redis.from_url(redis_url, decode_responses=True)), Settings().detectors)
        barrier.wait()
        analyzer.analyze(trace_id)

    threads = [threading.Thread(target=analyse, args=(t,)) for t in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = queued(redis_client, "deliver_webhook")
    types = [redis_client.hget(f"ty:hookd:{d}", "type") for d in made]
    assert types == ["incident.created"]
    data = json.loads(redis_client.hget(f"ty:hookd:{made[0]}", "data") or "{}")
    assert data["failure_class"] == "loop" and data["trace_id"] in ids and data["status"] == "open"


def test_a_failed_task_emits_task_failed_only_where_someone_listens(
        runner: SyncRunner, redis_client: redis.Redis, start_runtime: Any, service: ServiceHarness,
        hook_receiver: Receiver) -> None:
    hook = subscribe(runner, hook_receiver.url, ("task.failed",))
    hook_receiver.secret = hook.secret
    start_runtime(WorkerSpec(name="bad", command=["sh", "-c", "echo 'it broke' >&2; exit 3"]),
                  WorkerSpec(name="good", handler="workers.builtin:echo"))
    failed = service(lambda s: s.submit("default", {"prompt": "x", "worker": "bad"}))[0].id
    completed = service(lambda s: s.submit("default", {"prompt": "y", "worker": "good"}))[0].id
    deadline = time.monotonic() + 15
    while len(queued(redis_client, "task_event")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queued(redis_client, "task_event") == sorted([failed, completed])
    assert alerts.task_event(runner, completed) == []  # nobody subscribed to task.completed
    [delivery_id] = alerts.task_event(runner, failed)
    assert alerts.task_event(runner, failed) == []  # the job redelivered: no second delivery
    WebhookDelivery(runner, ALLOW).deliver(delivery_id)
    [got] = hook_receiver.received
    assert got.standard_ok and got.simple_ok
    assert got.json["type"] == "task.failed" and got.json["data"]["task_id"] == failed
    assert got.json["data"]["worker"] == "bad" and "it broke" in got.json["data"]["error"]
