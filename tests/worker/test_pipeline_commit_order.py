"""A record the merge still holds is never committed past, whatever follows it.

Faust commits the longest run of acknowledged offsets, and its run may start one
past the committed offset (upstream faust #606, #401): acknowledging a dead
letter that follows a held record would commit past the held one, and a crash
would lose it. Both runtimes acknowledge each partition in offset order.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agents.model.events import event_to_dict, parse_event
from streams.codecs import make_codec
from streams.kafka.clients import producer_config
from streams.kafka.topics import create_topics
from streams.settings import Settings
from tests.worker.harness import (
    WorkerProcess,
    dead_letters,
    input_offsets,
    metric,
    wait_for_metric,
)
from tests.worker.test_pipeline_bad_input import SERVICE, deploy

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_a_dead_letter_after_a_held_record_does_not_commit_past_it(
    runtime: str, kafka_settings: Settings, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    create_topics(kafka_settings, partitions=3)
    # The merge holds a record ahead of caught-up empty topics for this long.
    worker = WorkerProcess(
        kafka_settings, tmp_path, "--runtime", runtime, "--merge-caught-up-grace-ms", "60000"
    )
    deploys = kafka_settings.topics.deploys
    try:
        codec = make_codec(kafka_settings)
        producer = Producer(producer_config(kafka_settings))
        held = parse_event(deploy("held-1", "2026-05-01T10:00:00Z"))
        value = codec.encode_event(event_to_dict(held))
        producer.produce(deploys, key=SERVICE.encode(), value=value)
        producer.flush(10)
        wait_for_metric(worker, "relsec_merge_buffered", lambda n: n == 1)
        producer.produce(deploys, key=SERVICE.encode(), value=b"\x00not an event")
        producer.flush(10)
        deadline = time.monotonic() + 30
        while not dead_letters(kafka_settings):
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        # Several checkpoints and commit intervals of both runtimes.
        time.sleep(8)
        assert metric(worker, "relsec_merge_buffered") == 1, "the record must still be held"
        committed, ends = input_offsets(kafka_settings)
        (written,) = [tp for tp, end in ends.items() if tp[0] == deploys and end]
        assert ends[written] == 2
        # Offset 0 is the held record: a commit may not go past it.
        assert committed.get(written, -1) <= 0, committed[written]
    finally:
        worker.stop()
