"""Dramatiq on Redis, tuned for Taskyard (DESIGN section 9).

- Keys live under ``ty:dq``; queues are ``ty.w.<worker>``; the admission script writes messages directly.
- No Dramatiq middleware: retries, time limits and liveness belong to the engine (the task record), not to
  Dramatiq's defaults (20 retries, a 10-minute time limit, a 60 s heartbeat timeout found by chance).
- Idle consumers block on the worker's wake-up list (``BLPOP``) instead of polling with backoff, so a task
  submitted to an idle worker starts in about a millisecond rather than up to a second later.
"""

from __future__ import annotations

import time

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from engine import keys

__all__ = ["BUSY_WAIT_S", "TaskyardBroker"]

BUSY_WAIT_S = 0.005  # seconds a consumer with every slot busy waits before looking again
MAINTENANCE_CHANCE = 10_000  # per million broker calls: Dramatiq's requeue pass for dead consumers (1 %)


class TaskyardBroker(RedisBroker):
    """A RedisBroker whose consumers wake on Taskyard's wake-up list."""

    def __init__(self, *, url: str, heartbeat_timeout_ms: int, poll_timeout_s: float) -> None:
        super().__init__(
            url=url,
            namespace=keys.DRAMATIQ_NAMESPACE,
            middleware=[],
            heartbeat_timeout=heartbeat_timeout_ms,
            maintenance_chance=MAINTENANCE_CHANCE,
        )
        self.poll_timeout_s = poll_timeout_s

    @property
    def consumer_class(self):  # type: ignore[override]
        return _WakeConsumer


class _WakeConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, but idle waits block on ``ty:w:<worker>:wake`` instead of sleeping."""

    def __init__(self, broker: TaskyardBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.is_delay_queue = queue_name.endswith(".DQ")
        worker = queue_name.removeprefix(keys.QUEUE_PREFIX)
        self.wake_key = keys.key("worker_wake", worker=worker)

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
                    self.message_cache = self.broker.do_fetch(self.queue_name, room)
                    if self.message_cache:
                        continue
                    if self.is_delay_queue:
                        time.sleep(self.broker.poll_timeout_s)
                    else:
                        self.broker.client.blpop([self.wake_key], timeout=self.broker.poll_timeout_s)
                else:
                    time.sleep(BUSY_WAIT_S)
                return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None
