"""Publishing events to relsec's input topics (``relsec publish``, ingest, the demo).

One idempotent confluent-kafka producer (acks=all) with the murmur2
partitioner, so the three input topics stay co-partitioned by service key
with anything aiokafka or a Java client produces. Each record's delivery is
checked; failures are reported per record, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agents.errors import RelsecError
from agents.model.events import Event, event_to_dict
from streams.codecs import make_codec
from streams.kafka.clients import producer_config
from streams.settings import Settings


@dataclass(slots=True)
class PublishReport:
    """What happened to each record: delivered, or failed with the reason."""

    delivered: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def publish_events(
    settings: Settings, events: Iterable[Event], flush_timeout_s: float = 60.0
) -> PublishReport:
    """Encode (Avro single-object, or the registry format), key by service, produce, wait."""
    from confluent_kafka import KafkaException, Producer

    codec = make_codec(settings)
    producer = Producer(producer_config(settings))
    report = PublishReport()

    def delivered(event_id: str):  # type: ignore[no-untyped-def]
        def callback(err, _msg) -> None:  # type: ignore[no-untyped-def]
            if err is None:
                report.delivered += 1
            else:
                report.failed.append((event_id, str(err)))

        return callback

    try:
        for event in events:
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
