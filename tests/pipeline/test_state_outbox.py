"""Stored worker state: offsets and outbox round-trip; the changelog tells unsent outboxes apart."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from agents.errors import StateError
from streams.kafka.clients import producer_config
from streams.pipeline.changelog import (
    OUTBOX_SENT_KEY,
    ChangelogStore,
    ensure_state_changelog,
)
from streams.pipeline.processor import Output, pack_state, unpack_state
from streams.settings import Settings

OUTBOX = [
    Output("relsec.alerts", b"a1", b"\x00\x01avro"),
    Output("relsec.alerts.ocsf", b"a1", b"{}"),
    Output("relsec.dlq", None, b"\xff", 2),
]


def test_state_with_outbox_round_trips() -> None:
    data = pack_state({"relsec.deploys": 41}, b"engine-bytes\n\x00", OUTBOX)
    assert unpack_state(data) == ({"relsec.deploys": 41}, b"engine-bytes\n\x00", OUTBOX)


def test_state_in_the_json_outbox_layout_of_earlier_workers_still_reads() -> None:
    # Written by workers before 2026-11-26 (base64 outputs in a JSON header).
    data = (
        b'RS2\n{"offsets":{"relsec.deploys":41},"outbox":[["relsec.alerts","YTE=","AAFhdnJv",null],'
        b'["relsec.dlq",null,"/w==",2]]}\nengine-bytes\n\x00'
    )
    assert unpack_state(data) == (
        {"relsec.deploys": 41},
        b"engine-bytes\n\x00",
        [Output("relsec.alerts", b"a1", b"\x00\x01avro"), Output("relsec.dlq", None, b"\xff", 2)],
    )


def test_state_without_outbox_keeps_the_first_format() -> None:
    data = pack_state({"relsec.incidents": 3}, b"e")
    assert data.startswith(b"RS1\n")
    assert unpack_state(data) == ({"relsec.incidents": 3}, b"e", [])


@pytest.mark.parametrize(
    "data",
    [
        b"XX1\n{}\ne",
        b"RS1\n[1]\ne",
        b'RS2\n{"outbox": []}\ne',
        b'RS2\n{"offsets": {}, "outbox": [["t", null, "!!"]]}\ne',
        b"RS3\n{}",
        b"RS3\n{}\n\x00\x00\x00\x01\x00\x05",
        b"RS3\n{}\n\x00\x00\x00\x01\x00\x01\xff\xff\xff\xff\x00\x00\x10\x00\xff\xff\xff\xfft",
        b"RS3\n{}\n\x00\x00\x00\x01\x00\x01\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff\xff",
    ],
)
def test_malformed_state_is_a_state_error(data: bytes) -> None:
    with pytest.raises(StateError):
        unpack_state(data)


@pytest.mark.kafka
def test_restore_reports_only_states_stored_after_the_sent_mark(kafka_settings: Settings) -> None:
    ensure_state_changelog(kafka_settings, partitions=2, replication_factor=1)
    topic = kafka_settings.topics.state_changelog
    producer = Producer(producer_config(kafka_settings))
    sent_before = pack_state({}, b"old", OUTBOX[:1])
    unsent = pack_state({}, b"new", OUTBOX[1:])
    plain = pack_state({}, b"plain")
    # Partition 0: svc-a's outbox was sent (mark after it), svc-b's was not (after the mark).
    producer.produce(topic, sent_before, b"svc-a", 0)
    producer.produce(topic, b"1", OUTBOX_SENT_KEY, 0)
    producer.produce(topic, unsent, b"svc-b", 0)
    # Partition 1: no mark at all; a tombstone removes svc-d.
    producer.produce(topic, plain, b"svc-c", 1)
    producer.produce(topic, unsent, b"svc-d", 1)
    producer.produce(topic, None, b"svc-d", 1)
    producer.flush(30)

    store = ChangelogStore(kafka_settings, topic)
    read, pending = store.restore([0, 1], timeout_s=60)
    assert read == 6
    assert sorted(pending) == sorted([unsent, plain])
    assert store.get("svc-a") == sent_before and store.get("svc-d") is None
    assert OUTBOX_SENT_KEY not in store.values

    # Read again from where it stopped: only what was written since.
    producer.produce(topic, b"3", OUTBOX_SENT_KEY, 0)
    producer.flush(30)
    assert store.restore([0], timeout_s=60) == (1, [])
    store.forget([0])
    assert store.get("svc-b") is None
    # Forgotten: read from the beginning, and now everything on 0 is marked sent.
    assert store.restore([0], timeout_s=60) == (4, [])
