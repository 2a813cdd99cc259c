"""Inputs written by a transactional producer: markers between records cost no waiting.

Kafka Connect with exactly-once sources, or another stream processor, writes the
input topics in transactions; each commit leaves a marker at an offset no
consumer ever receives. The worker must neither wait for those offsets
(``merge_lagging_max_ms`` is a minute) nor report them as lag for ever.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from agents.model.events import Event, event_to_dict, order_key
from streams.codecs import make_codec
from streams.kafka.clients import producer_config
from streams.kafka.topics import create_topics
from streams.settings import Settings
from tests.worker.harness import (
    SHARED_SCENARIOS,
    WorkerProcess,
    comparable,
    diff_summary,
    input_offsets,
    load_events,
    metric,
    replay_expected,
    wait_for_alerts,
    wait_until_committed,
)

pytestmark = pytest.mark.kafka


def publish_in_transactions(settings: Settings, events: list[Event]) -> None:
    """One transaction per event, as an exactly-once source connector commits."""
    from confluent_kafka import Producer

    codec = make_codec(settings)
    producer = Producer(
        producer_config(settings, **{"transactional.id": f"relsec-test-{uuid.uuid4().hex}"})
    )
    producer.init_transactions(30)
    for event in events:
        producer.begin_transaction()
        producer.produce(
            settings.topics.input_for_type(event.type),
            key=event.service.encode("utf-8"),
            value=codec.encode_event(event_to_dict(event)),
        )
        producer.commit_transaction(30)


def wait_until_committed_but_the_last_marker(settings: Settings, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    behind: dict[tuple[str, int], tuple[int | None, int]] = {}
    while time.monotonic() < deadline:
        committed, ends = input_offsets(settings)
        behind = {
            tp: (committed.get(tp), end)
            for tp, end in ends.items()
            if end > 0 and committed.get(tp, -1) < end - 1
        }
        if not behind:
            return
        time.sleep(0.5)
    raise AssertionError(f"(committed, end) {behind}")


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_transaction_markers_on_the_inputs_delay_nothing(
    runtime: str, kafka_settings: Settings, tmp_path: Path
) -> None:
    events = load_events(SHARED_SCENARIOS / "generated-7.jsonl")
    expected = replay_expected(sorted(events, key=order_key))
    assert expected
    create_topics(kafka_settings, partitions=3)
    worker = WorkerProcess(kafka_settings, tmp_path, "--runtime", runtime)
    try:
        started = time.monotonic()
        publish_in_transactions(kafka_settings, events)
        # A merge that waited for a marker would stall a minute per wait.
        active = wait_for_alerts(kafka_settings, expected, timeout_s=40, workers=[worker])
        assert comparable(active) == comparable(expected), diff_summary(active, expected)
        assert time.monotonic() - started < 55
        if runtime == "kafka":
            # Committed past the markers: the group's lag, as lag monitors see it, is zero.
            wait_until_committed(kafka_settings, timeout_s=20, workers=[worker])
        else:
            # Faust commits past every marker between records; the one after a
            # partition's last record waits for the next record (docs/exactly-once.md).
            wait_until_committed_but_the_last_marker(kafka_settings, timeout_s=20)
        deadline = time.monotonic() + 10
        while metric(worker, "relsec_consumer_lag") > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert metric(worker, "relsec_consumer_lag") == 0
    finally:
        worker.stop()
