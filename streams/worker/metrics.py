"""Prometheus metrics of the worker (served on the worker's web endpoint at ``/metrics``).

The counters on the per-record path are plain integers
(:class:`~streams.worker.tally.Tally`, compiled with the worker's core), read by a
collector when ``/metrics`` is scraped: a Prometheus client counter takes a lock
on every increment, a few percent of the worker's time at thousands of records a
second. Gauges and the checkpoint histogram change rarely and use the client.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from streams.worker.tally import Tally

__all__ = ["PipelineMetrics", "Tally"]


class _TallyCollector(Collector):
    def __init__(self, tallies: list[Tally]) -> None:
        self.tallies = tallies

    def collect(self) -> Iterator[CounterMetricFamily]:
        for tally in self.tallies:
            family = CounterMetricFamily(tally.name, tally.documentation, labels=tally.label_names)
            for values, count in tally.samples():
                family.add_metric(values, count)
            yield family


class PipelineMetrics:
    """Counters for records in, applied, duplicates, dead letters, alerts, state and lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = Tally("relsec_records_in", "Input records received", ("topic",))
        self.applied = Tally("relsec_events_applied", "Events applied by the engine")
        self.duplicates = Tally("relsec_events_duplicate", "Duplicate events ignored")
        self.dead_letters = Tally(
            "relsec_dead_letters", "Records sent to the dead-letter topic", ("reason",)
        )
        self.rerouted = Tally(
            "relsec_records_misrouted",
            "Records found on a partition their key does not hash to, re-keyed",
        )
        self.alerts = Tally("relsec_alerts", "Alert events emitted", ("rule", "status"))
        self.evicted = Tally(
            "relsec_services_evicted",
            "Idle services whose engine was dropped from the cache (their state stays stored)",
        )
        self.seals = Tally(
            "relsec_checkpoints_sealed",
            "Checkpoints sealed, by kind: partial (live: the services whose alerts wait and "
            "those touched longest ago) or full (every touched service)",
            ("kind",),
        )
        r.register(
            _TallyCollector(
                [
                    self.records_in,
                    self.applied,
                    self.duplicates,
                    self.dead_letters,
                    self.rerouted,
                    self.alerts,
                    self.evicted,
                    self.seals,
                ]
            )
        )
        self.state_bytes = Gauge(
            "relsec_state_bytes",
            "Stored state (heads and parts) held in memory for the assigned partitions",
            registry=r,
        )
        self.services = Gauge("relsec_services_cached", "Services with state in memory", registry=r)
        self.lag = Gauge(
            "relsec_consumer_lag",
            "Records behind the high watermark",
            ["topic", "partition"],
            registry=r,
        )
        self.merge_buffered = Gauge(
            "relsec_merge_buffered", "Records waiting in the event-time merge", registry=r
        )
        self.gc_frozen = Gauge(
            "relsec_gc_frozen_objects",
            "Objects moved out of the cyclic garbage collector's generations (gc.freeze)",
            registry=r,
        )
        # Counted when scraped: gc.get_freeze_count() walks every frozen object (23 ms for
        # 3M of them), a stall the loop must not take once a second.
        self.gc_frozen.set_function(gc.get_freeze_count)
        self.turn_seconds = Histogram(
            "relsec_loop_turn_seconds",
            "How long one turn of the worker's loop took (engine work is cut into slices)",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "relsec_checkpoint_seconds",
            "From a checkpoint's start until its states, outputs and offsets are all written",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
