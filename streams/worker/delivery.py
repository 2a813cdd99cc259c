"""Producing records: sending them, the record size limits, refusals.

:func:`send` produces records to a :class:`~streams.worker.interfaces.RecordProducer`,
waiting for room when the client's queue is full (both runtimes use it).
:class:`RecordLimits` holds the largest record each topic takes, learned at start
(the topic's ``max.message.bytes`` and the producer's ``message.max.bytes``).
:func:`refusal` turns a failed delivery report into a :class:`Refusal` that says
which record, how big, where to and why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.errors import RecordAt
from streams.settings import Topics
from streams.worker.errors import Refusal
from streams.worker.interfaces import OnDelivery, RecordProducer
from streams.worker.records import Output
from streams.worker.state_records import OUTBOX_SENT_KEY, RECORD_OVERHEAD, key_kind

QUEUE_FULL_WAIT_S = 0.05


def send(
    producer: RecordProducer, outputs: Iterable[Output], on_delivery: OnDelivery | None = None
) -> int:
    """Produce each output, waiting for room when the client's queue is full. Delivery
    reports go to ``on_delivery`` when given, else to the producer's own. Returns the
    number of records produced."""
    produce = producer.produce
    count = 0
    for o in outputs:
        while True:
            try:
                if on_delivery is None:
                    if o.partition is None:
                        produce(o.topic, o.value, o.key)
                    else:
                        produce(o.topic, o.value, o.key, o.partition)
                elif o.partition is None:
                    produce(o.topic, o.value, o.key, on_delivery=on_delivery)
                else:
                    produce(o.topic, o.value, o.key, o.partition, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(QUEUE_FULL_WAIT_S)
        count += 1
    producer.poll(0)
    return count


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """The largest record (key, value and framing) each topic accepts from this worker."""

    default: int = 1_000_000
    per_topic: Mapping[str, int] = field(default_factory=dict)

    def limit(self, topic: str) -> int:
        return self.per_topic.get(topic, self.default)

    def value_budget(self, topic: str, key_len: int = 0) -> int:
        """What a value may hold in a record of ``topic`` with a key of ``key_len`` bytes."""
        return self.limit(topic) - key_len - RECORD_OVERHEAD

    @staticmethod
    def learned(topic_limits: Mapping[str, int], producer_max: int) -> RecordLimits:
        """The limits from each topic's ``max.message.bytes`` and the producer's
        ``message.max.bytes`` (a record must pass both)."""
        return RecordLimits(
            producer_max, {t: min(limit, producer_max) for t, limit in topic_limits.items()}
        )


def describe(topic: str, key: bytes | None, topics: Topics) -> str:
    """What a record is, for messages: ``state of service 'checkout'``, ``alert``."""
    if topic == topics.state_changelog and key is not None:
        kind = key_kind(key)
        if kind == "state":
            return f"state of service {key.decode('utf-8', 'replace')!r}"
        if kind == "part":
            service = key.split(b":", 2)[-1].split(b"\x00", 1)[0]
            return f"part of the state of service {service.decode('utf-8', 'replace')!r}"
        if kind == "outbox":
            return "outbox chunk"
        return "outbox-sent mark" if key == OUTBOX_SENT_KEY else "changelog record"
    return {
        topics.alerts: "alert",
        topics.alerts_ocsf: "OCSF finding",
        topics.dlq: "dead letter",
    }.get(topic, "re-keyed input record" if topic in topics.inputs else "record")


def refusal(err: Any, msg: Any, topics: Topics, limits: RecordLimits | None = None) -> Refusal:
    """A failed delivery report as a :class:`Refusal` (record, destination, size, reason)."""
    topic = str(msg.topic())
    partition = msg.partition()
    key, value = msg.key(), msg.value()
    size = len(key or b"") + len(value or b"")
    reason = err.str() if hasattr(err, "str") else str(err)
    return Refusal(
        RecordAt(topic, partition if partition is not None and partition >= 0 else None),
        describe(topic, key, topics),
        reason,
        size,
        limits.limit(topic) if limits is not None else None,
    )
