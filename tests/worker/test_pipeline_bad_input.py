"""Bad records end in the dead-letter topic with the right reason; every record is accounted for."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from agents.model.events import event_to_dict, parse_event
from streams.codecs import make_codec
from streams.kafka.clients import murmur2_partition, producer_config
from streams.kafka.topics import create_topics
from streams.settings import Settings
from tests.worker.harness import WorkerProcess, dead_letters, metric

pytestmark = pytest.mark.kafka

SERVICE = "payments-api"


def deploy(event_id: str, occurred_at: str, release: str = "1.0.0") -> dict:
    return {
        "type": "deploy",
        "event_id": event_id,
        "occurred_at": occurred_at,
        "source": "test",
        "service": SERVICE,
        "environment": "production",
        "release": release,
        "previous_release": None,
        "action": "deploy",
        "status": "succeeded",
    }


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_each_kind_of_bad_record_is_dead_lettered(
    runtime: str, kafka_settings: Settings, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    create_topics(kafka_settings, partitions=3)
    codec = make_codec(kafka_settings)
    topics = kafka_settings.topics
    good = codec.encode_event(deploy("good-1", "2026-03-04T10:00:00Z"))
    unknown_fingerprint = b"\xc3\x01" + b"\x01" * 8 + good[10:]
    missing = dict(deploy("bad-missing", "2026-03-04T10:00:00Z"))
    del missing["release"]
    unknown_enum = dict(deploy("bad-enum", "2026-03-04T10:00:00Z"), action="yolo")
    future = deploy("bad-future", "2099-01-01T00:00:00Z")
    newest = deploy("good-2", "2026-03-10T10:00:00Z", release="1.1.0")
    late = deploy("bad-late", "2026-03-05T10:00:00Z")  # 5 days behind good-2: beyond 24 h
    records = [
        (topics.deploys, good, None),
        (topics.deploys, b"\x07\x00garbage", "undecodable"),
        (topics.deploys, unknown_fingerprint, "unknown_schema"),
        (topics.incidents, b"{not json", "invalid_json"),
        (topics.deploys, orjson.dumps(missing), "validation"),
        (topics.deploys, orjson.dumps(unknown_enum), "validation"),
        (topics.deploys, codec.encode_event(future), "future"),
        (topics.deploys, codec.encode_event(newest), None),
        (topics.deploys, codec.encode_event(newest), None),  # a duplicate
    ]
    partition = murmur2_partition(SERVICE.encode(), 3)
    producer = Producer(producer_config(kafka_settings))
    for topic, value, _ in records:
        producer.produce(topic, key=SERVICE.encode(), value=value, partition=partition)
    producer.flush(30)
    worker = WorkerProcess(kafka_settings, tmp_path, "--runtime", runtime)
    try:
        # The late event is published once the worker has seen good-2, so it is late
        # by arrival, not merely by publication order.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert worker.alive(), worker.log_tail()
            try:
                if metric(worker, "relsec_events_applied_total") >= 2:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        producer.produce(
            topics.deploys,
            key=SERVICE.encode(),
            value=codec.encode_event(late),
            partition=partition,
        )
        producer.flush(30)
        expected_reasons = sorted([r for _, _, r in records if r] + ["late"])
        deadline = time.monotonic() + 60
        dls: list = []
        while time.monotonic() < deadline:
            dls = dead_letters(kafka_settings)
            if len(dls) >= len(expected_reasons):
                break
            time.sleep(1)
        assert sorted(d["reason"] for d in dls) == expected_reasons
        by_reason = {d["reason"]: d for d in dls}
        assert by_reason["undecodable"]["value"] == b"\x07\x00garbage"
        assert by_reason["invalid_json"]["topic"] == topics.incidents
        assert (
            by_reason["late"]["offset"] is not None and by_reason["late"]["partition"] == partition
        )
        assert any("release" in d["detail"] for d in dls if d["reason"] == "validation")
        assert any("action" in d["detail"] for d in dls if d["reason"] == "validation")
        assert parse_event(orjson.loads(orjson.dumps(late))) is not None
        time.sleep(2)
        records_in = metric(worker, "relsec_records_in_total")
        applied = metric(worker, "relsec_events_applied_total")
        duplicates = metric(worker, "relsec_events_duplicate_total")
        dead = metric(worker, "relsec_dead_letters_total")
        assert records_in == len(records) + 1
        assert records_in == applied + duplicates + dead
        assert (applied, duplicates, dead) == (2, 1, len(expected_reasons))
    finally:
        worker.stop()


def test_misrouted_record_is_rekeyed_not_judged_on_the_wrong_partition(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    create_topics(kafka_settings, partitions=3)
    codec = make_codec(kafka_settings)
    right = murmur2_partition(SERVICE.encode(), 3)
    wrong = (right + 1) % 3
    event = deploy("routed-1", "2026-03-04T10:00:00Z")
    producer = Producer(producer_config(kafka_settings))
    producer.produce(
        kafka_settings.topics.deploys,
        key=b"not-the-service",
        value=codec.encode_event(event),
        partition=wrong,
    )
    producer.flush(30)
    worker = WorkerProcess(kafka_settings, tmp_path)
    try:
        deadline = time.monotonic() + 120
        applied = 0.0
        while time.monotonic() < deadline:
            assert worker.alive(), worker.log_tail()
            try:
                applied = metric(worker, "relsec_events_applied_total")
            except OSError:
                applied = 0.0
            if applied >= 1:
                break
            time.sleep(0.5)
        assert applied == 1
        assert metric(worker, "relsec_records_misrouted_total") == 1
        assert parse_event(event_to_dict(parse_event(event))).event_id == "routed-1"
    finally:
        worker.stop()
