"""Helpers shared by the Kafka tests: topic creation and produce/consume with both clients."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.clients import (
    admin_config,
    aiokafka_kwargs,
    consumer_config,
    producer_config,
)
from streams.settings import Settings


def make_topic(settings: Settings, name: str, partitions: int) -> str:
    topic = f"{settings.topics.prefix}{name}"
    admin = AdminClient(admin_config(settings))
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic
    ].result(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        if (
            md
            and md.error is None
            and len(md.partitions) == partitions
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            return topic
        time.sleep(0.1)
    raise AssertionError(f"{topic} has no leaders")


def confluent_produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer(producer_config(settings, on_delivery=on_delivery))
    for key, value in records:
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []


def confluent_consume(
    settings: Settings, topic: str, count: int, group_id: str | None = None
) -> list[tuple[bytes, bytes, int]]:
    consumer = Consumer(consumer_config(settings, group_id=group_id))
    consumer.subscribe([topic])
    got: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.key(), msg.value(), msg.partition()))
    finally:
        consumer.close()
    return got


async def aio_produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**aiokafka_kwargs(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def aio_consume(
    settings: Settings, topic: str, count: int, group_id: str | None
) -> list[tuple[bytes, bytes, int]]:
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_kwargs(settings),
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[bytes, bytes, int]] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                got.extend((r.key, r.value, r.partition) for r in records)
        if group_id is not None:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got
