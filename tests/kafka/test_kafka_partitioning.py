"""Keys land in the same partition whichever client produced them (SPEC §7: murmur2 as Java)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from kafka_helpers import make_topic

from streams.kafka.clients import aiokafka_kwargs, murmur2_partition, producer_config
from streams.settings import Settings

pytestmark = pytest.mark.kafka

KEYS = [f"service-{i}".encode() for i in range(150)] + [
    b"payments",
    b"checkout-api",
    "d\u00e9ploiement".encode(),
    bytes(range(256)),
]


def confluent_partitions(settings: Settings, topic: str) -> dict[bytes, int]:
    placed: dict[bytes, int] = {}

    def on_delivery(err: object, msg: object) -> None:
        assert err is None, err
        placed[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    producer = Producer(producer_config(settings, on_delivery=on_delivery))
    for key in KEYS:
        producer.produce(topic, key=key, value=b"c")
    assert producer.flush(30) == 0
    return placed


async def aio_partitions(settings: Settings, topic: str) -> dict[bytes, int]:
    producer = AIOKafkaProducer(**aiokafka_kwargs(settings))  # default partitioner
    await producer.start()
    try:
        futures = [await producer.send(topic, key=key, value=b"a") for key in KEYS]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {key: meta.partition for key, meta in zip(KEYS, metas, strict=True)}


@pytest.mark.parametrize("partitions", [3, 6, 7, 12])
def test_same_partition_from_both_clients(kafka_settings: Settings, partitions: int) -> None:
    topic = make_topic(kafka_settings, f"keys-{partitions}", partitions)
    by_confluent = confluent_partitions(kafka_settings, topic)
    by_aio = asyncio.run(aio_partitions(kafka_settings, topic))
    assert len(by_confluent) == len(KEYS)
    assert by_confluent == by_aio
    assert by_confluent == {key: murmur2_partition(key, partitions) for key in KEYS}
    assert len(set(by_confluent.values())) == partitions  # the keys spread over all partitions


def test_librdkafka_default_partitioner_would_disagree(kafka_settings: Settings) -> None:
    """Why producer_config sets murmur2_random: librdkafka's default puts keys elsewhere."""
    topic = make_topic(kafka_settings, "keys-default", 6)
    placed: dict[bytes, int] = {}

    def on_delivery(err: object, msg: object) -> None:
        placed[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    conf = producer_config(kafka_settings, on_delivery=on_delivery)
    del conf["partitioner"]
    producer = Producer(conf)
    for key in KEYS:
        producer.produce(topic, key=key, value=b"x")
    assert producer.flush(30) == 0
    differing = sum(placed[k] != murmur2_partition(k, 6) for k in KEYS)
    assert differing > len(KEYS) // 2
