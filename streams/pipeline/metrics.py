"""Prometheus metrics of the worker (served on the worker's web endpoint at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class PipelineMetrics:
    """Counters for records in, applied, duplicates, dead letters, alerts, state and lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = Counter(
            "relsec_records_in", "Input records received", ["topic"], registry=r
        )
        self.applied = Counter("relsec_events_applied", "Events applied by the engine", registry=r)
        self.duplicates = Counter("relsec_events_duplicate", "Duplicate events ignored", registry=r)
        self.dead_letters = Counter(
            "relsec_dead_letters", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.rerouted = Counter(
            "relsec_records_misrouted",
            "Records found on a partition their key does not hash to, re-keyed",
            registry=r,
        )
        self.alerts = Counter(
            "relsec_alerts", "Alert events emitted", ["rule", "status"], registry=r
        )
        self.state_bytes = Gauge(
            "relsec_state_bytes", "Serialized engine state held for cached services", registry=r
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
