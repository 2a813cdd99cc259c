"""Produce / consume round trips against the real broker with both clients, across clients."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from kafka_helpers import aio_consume, aio_produce, confluent_consume, confluent_produce, make_topic

from streams.settings import Settings

pytestmark = pytest.mark.kafka

COUNT = 500


def records(tag: str) -> list[tuple[bytes, bytes]]:
    return [
        (f"svc-{i % 37}".encode(), f"{tag}-{i}-{uuid.uuid4().hex}".encode()) for i in range(COUNT)
    ]


def test_confluent_round_trip(kafka_settings: Settings) -> None:
    topic = make_topic(kafka_settings, "rt-confluent", 3)
    sent = records("c")
    confluent_produce(kafka_settings, topic, sent)
    got = confluent_consume(kafka_settings, topic, COUNT)
    assert sorted((k, v) for k, v, _ in got) == sorted(sent)


def test_aiokafka_round_trip_with_group_join_and_commit(kafka_settings: Settings) -> None:
    topic = make_topic(kafka_settings, "rt-aio", 3)
    sent = records("a")
    group = f"{kafka_settings.topics.prefix}group"

    async def run() -> tuple[list[tuple[bytes, bytes, int]], list[tuple[bytes, bytes, int]]]:
        await aio_produce(kafka_settings, topic, sent)
        first = await aio_consume(kafka_settings, topic, COUNT, group)
        # The group committed everything: a new member of it finds nothing new.
        await aio_produce(kafka_settings, topic, [(b"late", b"after-commit")])
        second = await aio_consume(kafka_settings, topic, 1, group)
        return first, second

    first, second = asyncio.run(run())
    assert sorted((k, v) for k, v, _ in first) == sorted(sent)
    assert [(k, v) for k, v, _ in second] == [(b"late", b"after-commit")]


def test_cross_client_round_trip(kafka_settings: Settings) -> None:
    topic = make_topic(kafka_settings, "rt-cross", 4)
    from_confluent = records("c2a")
    from_aio = records("a2c")
    confluent_produce(kafka_settings, topic, from_confluent)
    asyncio.run(aio_produce(kafka_settings, topic, from_aio))
    by_aio = asyncio.run(aio_consume(kafka_settings, topic, 2 * COUNT, None))
    by_confluent = confluent_consume(kafka_settings, topic, 2 * COUNT)
    expected = sorted(from_confluent + from_aio)
    assert sorted((k, v) for k, v, _ in by_aio) == expected
    assert sorted((k, v) for k, v, _ in by_confluent) == expected
    # Both readers see every record in the same partition.
    assert sorted(by_aio) == sorted(by_confluent)
