"""Prometheus text for GET /metrics, from counters every process keeps in Redis (so any replica answers
for the whole cluster)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from engine.events import EVENT_STATES
from engine.tasks import LATENCY_BUCKETS_MS

__all__ = ["render_metrics"]

OUTCOMES = ("created", "completed", "failed", "cancelled", "redispatched")


class _Snapshot:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def collect(self):  # type: ignore[no-untyped-def]
        counters = self.data["counters"]
        for outcome in OUTCOMES:
            family = CounterMetricFamily(f"taskyard_tasks_{outcome}", f"Tasks {outcome}, all processes")
            family.add_metric([], float(counters.get(f"tasks_{outcome}", 0)))
            yield family
        events = CounterMetricFamily("taskyard_events", "Webhook and schedule events reaching each state, all "
                                     "processes", labels=["state"])
        for state in EVENT_STATES:
            events.add_metric([state], float(counters.get(f"events_{state}", 0)))
        yield events
        backlog = GaugeMetricFamily("taskyard_engine_queue_depth", "Engine jobs waiting (webhook matching, "
                                    "following tasks, write-back): growing means the engine is behind")
        backlog.add_metric([], float(self.data.get("engine_queue", 0)))
        yield backlog
        depth = GaugeMetricFamily("taskyard_queue_depth", "Pending + dispatched tasks per worker", labels=["worker"])
        running = GaugeMetricFamily("taskyard_worker_running", "Tasks running per worker", labels=["worker"])
        procs = GaugeMetricFamily("taskyard_worker_processes", "Live processes per worker", labels=["worker"])
        bound = GaugeMetricFamily("taskyard_queue_bound", "max_queue_depth per worker", labels=["worker"])
        for status in self.data["workers"]:
            name = status.spec.name
            depth.add_metric([name], status.depth)
            running.add_metric([name], status.running)
            procs.add_metric([name], len(status.processes))
            bound.add_metric([name], status.spec.max_queue_depth or self.data.get("default_bound", 0))
        yield from (depth, running, procs, bound)
        latency = self.data["latency"]
        buckets = [(str(ms / 1000), float(latency.get(str(ms), 0))) for ms in LATENCY_BUCKETS_MS]
        buckets.append(("+Inf", float(latency.get("+Inf", 0))))
        yield HistogramMetricFamily(
            "taskyard_dispatch_latency_seconds", "Submit to the start of the first run",
            buckets=buckets, sum_value=float(latency.get("sum_ms", 0)) / 1000)


def render_metrics(data: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(data))  # type: ignore[arg-type]
    return generate_latest(registry)
