"""The bare Dramatiq baseline for scripts/bench: a no-op actor on the same Redis.

    bench_dramatiq_worker.py enqueue URL N   # put N messages on queue "noop"
    bench_dramatiq_worker.py work URL THREADS  # one worker process; prints "ready" when consuming
"""

from __future__ import annotations

import signal
import sys
import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker

mode, url = sys.argv[1], sys.argv[2]
broker = RedisBroker(url=url, namespace="bench")
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="noop", max_retries=0)
def noop(i: int) -> None:
    return None


if mode == "enqueue":
    for i in range(int(sys.argv[3])):
        noop.send(i)
else:
    worker = dramatiq.Worker(broker, worker_threads=int(sys.argv[3]))
    worker.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    worker.stop()
