"""Reading back what a test produced: every record of a topic, from the beginning."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.kafka.clients import consumer_config
from streams.settings import Settings


def read_topic(settings: Settings, topic: str, expected: int, timeout_s: float = 20.0) -> list[Any]:
    """Every record of ``topic`` (waits for ``expected``, then one more second for extras)."""
    consumer = Consumer(consumer_config(settings))
    try:
        meta = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(out) < expected:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
        # a little longer, to see anything beyond what was expected
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
        return out
    finally:
        consumer.close()
