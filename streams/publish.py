"""Publishing events to relsec's input topics (``relsec publish``, ingest, the demo).

One idempotent confluent-kafka producer (acks=all) with the murmur2
partitioner, so the three input topics stay co-partitioned by service key
with anything aiokafka or a Java client produces. Each record's delivery is
checked; failures are reported per record, never dropped silently.

Publishing a file is a backfill: days of event time leave in a fraction of a
second, to three topics. The producer batches per partition, so a record can
reach the broker a few milliseconds after a record sent after it to another
topic, and a few milliseconds of a backfill are hours of event time. The
worker's merge orders what the broker holds; it cannot order what has not
arrived yet. So publishing places **order barriers**: when the event time runs
more than ``order_step_ms`` past the last barrier, the producer is flushed
before the next record is sent. A record then never reaches the broker after
one sent later whose event time is more than ``order_step_ms`` ahead of every
record sent before it, and the worker never judges a backfilled event late
that ``relsec replay --as-arrived`` would accept, as long as the file's own
disorder plus the step stays within the allowed lateness.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agents.errors import RelsecError
from agents.model.events import Event, event_to_dict
from streams.codecs import make_codec
from streams.kafka.clients import producer_config
from streams.kafka.topics import input_partitions
from streams.settings import Settings

#: The step is this fraction of the allowed lateness (1 h at the default 24 h),
#: leaving the rest of the lateness to the file's own disorder.
ORDER_STEP_SHARE_OF_LATENESS = 24
MIN_ORDER_STEP_MS = 1_000


def order_step_ms(allowed_lateness_ms: int) -> int:
    """How far event time may run past the last order barrier before the next one."""
    return max(MIN_ORDER_STEP_MS, allowed_lateness_ms // ORDER_STEP_SHARE_OF_LATENESS)


@dataclass(slots=True)
class OrderBarriers:
    """Where publishing waits for everything sent so far (see the module docstring).

    Invariant: between two barriers, no record's event time is more than
    ``step_ms`` past the newest event time of the records sent before it.
    """

    step_ms: int
    barrier_ms: int | None = None

    def __post_init__(self) -> None:
        if self.step_ms < 0:
            raise ValueError(f"order step must be >= 0 ms, got {self.step_ms}")

    def due_before(self, occurred_at_ms: int) -> bool:
        """Whether a barrier must come before the record of this event time is sent."""
        if self.barrier_ms is None:
            self.barrier_ms = occurred_at_ms
            return False
        if occurred_at_ms > self.barrier_ms + self.step_ms:
            # Every record since the last barrier is at most barrier + step, so this
            # one is the newest so far: the next step is measured from it.
            self.barrier_ms = occurred_at_ms
            return True
        return False


@dataclass(slots=True)
class PublishReport:
    """What happened to each record: delivered, or failed with the reason."""

    delivered: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    barriers: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def publish_events(
    settings: Settings, events: Iterable[Event], flush_timeout_s: float = 60.0
) -> PublishReport:
    """Encode (Avro single-object, or the registry format), key by service, produce, wait.

    Events go out in the order given, with order barriers (module docstring) every
    ``order_step_ms(settings.allowed_lateness_ms)`` of event time.
    """
    from confluent_kafka import KafkaException, Producer

    # Missing or differently partitioned input topics: say so now, not after a
    # delivery timeout per record (and the joins need the topics co-partitioned).
    input_partitions(settings)
    codec = make_codec(settings)
    producer = Producer(producer_config(settings))
    report = PublishReport()
    barriers: OrderBarriers | None = OrderBarriers(order_step_ms(settings.allowed_lateness_ms))

    def delivered(event_id: str):  # type: ignore[no-untyped-def]
        def callback(err, _msg) -> None:  # type: ignore[no-untyped-def]
            if err is None:
                report.delivered += 1
            else:
                report.failed.append((event_id, str(err)))

        return callback

    try:
        for event in events:
            if barriers is not None and barriers.due_before(event.occurred_at_ms):
                report.barriers += 1
                if producer.flush(flush_timeout_s):
                    # Kafka stopped acknowledging: order can no longer be vouched for,
                    # and waiting again at every step would stall for hours. What is
                    # undelivered at the end is reported per record.
                    barriers = None
            topic = settings.topics.input_for_type(event.type)
            value = codec.encode_event(event_to_dict(event))
            while True:
                try:
                    producer.produce(
                        topic,
                        key=event.service.encode("utf-8"),
                        value=value,
                        on_delivery=delivered(event.event_id),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
                except KafkaException as exc:
                    report.failed.append((event.event_id, str(exc)))
                    break
            producer.poll(0)
        remaining = producer.flush(flush_timeout_s)
    except KafkaException as exc:
        raise RelsecError(f"publishing to {settings.bootstrap_servers} failed: {exc}") from None
    if remaining:
        report.failed.append(("*", f"{remaining} record(s) not delivered in {flush_timeout_s} s"))
    return report
