"""Dramatiq on Redis, tuned for Taskyard (DESIGN section 9).

- Keys live under ``ty:dq``; queues are ``ty.w.<worker>``; the admission script writes messages directly.
- No retry or time-limit middleware: retries, time limits and liveness belong to the engine (the task record),
  not to Dramatiq's defaults (20 retries, a 10-minute time limit, a 60 s heartbeat timeout found by chance).
- A consumer fetches and claims in one Lua call (``fetch_claim.lua``): the tasks it hands to worker threads
  are already ``dispatched`` to this process, and messages of tasks that must not run are acked on the spot.
  The run's ``finish`` call acknowledges the message too, so a task costs two round trips, not four.
- Idle consumers block on the worker's wake-up list (``BLPOP``) instead of polling with backoff, so a task
  submitted to an idle worker starts in about a millisecond rather than up to a second later.
"""

from __future__ import annotations

import threading
import time

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage

from engine import keys, tasks
from engine.clock import now_ms
from engine.errors import StoreUnavailable
from engine.store import Runner

__all__ = ["BUSY_WAIT_S", "TaskyardBroker"]

BUSY_WAIT_S = 0.05  # seconds a consumer with every slot busy waits for an ack before looking again
MAINTENANCE_CHANCE = 10_000  # per million broker calls: Dramatiq's requeue pass for dead consumers (1 %)


class TaskyardBroker(RedisBroker):
    """A RedisBroker whose consumers claim tasks as they fetch and wake on Taskyard's wake-up list."""

    def __init__(self, *, url: str, runner: Runner, proc_id: str, max_lost: int, heartbeat_timeout_ms: int,
                 poll_timeout_s: float) -> None:
        super().__init__(
            url=url,
            namespace=keys.DRAMATIQ_NAMESPACE,
            middleware=[CurrentMessage()],
            heartbeat_timeout=heartbeat_timeout_ms,
            maintenance_chance=MAINTENANCE_CHANCE,
        )
        self.runner = runner
        self.proc_id = proc_id
        self.max_lost = max_lost
        self.poll_timeout_s = poll_timeout_s
        self.claims: dict[str, tasks.Claim] = {}  # Dramatiq message id -> the claim made when it was fetched
        self.acked: set[str] = set()  # message ids whose ack rode along with the task's finish call

    @property
    def consumer_class(self):  # type: ignore[override]
        return _ClaimingConsumer

    def take_claim(self) -> tuple[tasks.Claim | None, tasks.Ack | None]:
        """The claim made when the calling thread's message was fetched, and how ``finish`` can ack it."""
        message = CurrentMessage.get_current_message()
        if message is None:
            return None, None
        worker = message.queue_name.removeprefix(keys.QUEUE_PREFIX)
        ack = tasks.Ack(ack_key=keys.key("dq_acks", broker=self.broker_id, worker=worker),
                        msgs_key=keys.key("dq_msgs", worker=worker),
                        redis_message_id=message.options.get("redis_message_id", ""),
                        message_id=message.message_id)
        return self.claims.pop(message.message_id, None), ack

    def acked_by_finish(self, ack: tasks.Ack) -> None:
        """``finish`` acknowledged this message in Redis; Dramatiq's own ack becomes bookkeeping only."""
        self.acked.add(ack.message_id)


class _ClaimingConsumer(_RedisConsumer):
    def __init__(self, broker: TaskyardBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.is_delay_queue = queue_name.endswith(".DQ")
        self.worker = queue_name.removeprefix(keys.QUEUE_PREFIX)
        self.wake_key = keys.key("worker_wake", worker=self.worker)
        self.slot_free = threading.Event()

    def ack(self, message: MessageProxy) -> None:
        try:
            if message.message_id in self.broker.acked:
                self.broker.acked.discard(message.message_id)
                self.queued_message_ids.discard(message.message_id)
            else:
                super().ack(message)
        finally:
            self.slot_free.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            super().nack(message)
        finally:
            self.slot_free.set()

    def _fetch(self, room: int) -> list[bytes]:
        if self.is_delay_queue:  # Taskyard never delays messages; keep Dramatiq's own path for its DQ
            return self.broker.do_fetch(self.queue_name, room)
        try:
            pairs = self.broker.runner.run(tasks.fetch_claim(
                worker=self.worker, broker_id=self.broker.broker_id, proc_id=self.broker.proc_id,
                now_ms=now_ms(), max_lost=self.broker.max_lost, room=room))
        except StoreUnavailable as exc:
            raise redis.ConnectionError(str(exc)) from exc
        datas = []
        for data, claim in pairs:
            encoded = data.encode("utf-8")
            self.broker.claims[Message.decode(encoded).message_id] = claim
            datas.append(encoded)
        return datas

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                room = self.prefetch - self.outstanding_message_count
                if room > 0:
                    self.message_cache = self._fetch(room)
                    if self.message_cache:
                        continue
                    if self.is_delay_queue:
                        time.sleep(self.broker.poll_timeout_s)
                    else:
                        self.broker.client.blpop([self.wake_key], timeout=self.broker.poll_timeout_s)
                else:
                    # Every slot is busy: wake as soon as a worker thread acks (or after BUSY_WAIT_S).
                    self.slot_free.wait(BUSY_WAIT_S)
                    self.slot_free.clear()
                return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None
