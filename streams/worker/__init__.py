"""The stream worker: the agents that drive the engine over Kafka (``relsec worker``).

The engine (:mod:`agents.engine`) decides; this package feeds it from Kafka and
makes what it decides durable and visible. A map, from the records in to the
alerts out:

* :mod:`~streams.worker.core` — what both runtimes share: admission (decode,
  validate, partition check), the event-time merge of the co-partitioned inputs
  (:mod:`~streams.worker.merge`), the engine in slices, eviction, health.
* :mod:`~streams.worker.processor` — one record's way: its dead letter, or its
  event to the engine of its service; the services' engines and their outputs.
* :mod:`~streams.worker.checkpoint` — how applied work becomes durable, then
  visible, then committed (at-least-once and exactly-once), over a producer.
* :mod:`~streams.worker.state_records` and :mod:`~streams.worker.changelog` — the
  state changelog: its record format (states, parts, outboxes, sent marks, each
  record within the topic's limit) and its store (created, read back on assignment).
* :mod:`~streams.worker.kafka_runtime` and :mod:`~streams.worker.faust_runtime` —
  the two runtimes, each only its client wiring: confluent-kafka (the default)
  or a Faust agent with a Table.
* :mod:`~streams.worker.options` (each option declared once), :mod:`~streams.worker.web`
  and :mod:`~streams.worker.health` (``/metrics``, ``/healthz``), :mod:`~streams.worker.metrics`,
  :mod:`~streams.worker.delivery` (producing, record limits, refusals),
  :mod:`~streams.worker.errors`, :mod:`~streams.worker.records`, :mod:`~streams.worker.acks`.
"""

from __future__ import annotations

from streams.settings import Settings
from streams.worker.options import WorkerOptions


def run_worker(settings: Settings, options: WorkerOptions) -> None:
    """Run the worker in the runtime ``options.runtime`` names, until SIGINT/SIGTERM."""
    if options.runtime == "faust":
        from streams.worker import faust_runtime

        faust_runtime.serve(settings, options)
        return
    from streams.worker import kafka_runtime

    kafka_runtime.serve(settings, options)


__all__ = ["WorkerOptions", "run_worker"]
