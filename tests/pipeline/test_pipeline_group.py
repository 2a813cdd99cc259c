"""Two workers in one group give the alerts of one; a killed member hands over its partitions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agents.model.events import order_key
from streams.alerts_reader import read_alerts
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from tests.pipeline.harness import (
    WorkerProcess,
    comparable,
    diff_summary,
    replay_expected,
    wait_for_alerts,
)
from tests.pipeline.test_pipeline_crash import synthetic_events

pytestmark = pytest.mark.kafka


def test_two_workers_equal_one_and_survive_a_kill(kafka_settings: Settings, tmp_path: Path) -> None:
    events = synthetic_events(8_000, services=120, seed=31)
    expected = replay_expected(sorted(events, key=order_key))
    create_topics(kafka_settings, partitions=6)
    a = WorkerProcess(kafka_settings, tmp_path, name="a")
    b = WorkerProcess(kafka_settings, tmp_path, name="b")
    try:
        time.sleep(8)  # let both join the group before the data arrives
        assert publish_events(kafka_settings, events).ok
        deadline = time.monotonic() + 180
        while (
            time.monotonic() < deadline
            and sum(1 for _ in read_alerts(kafka_settings)) < len(expected) // 4
        ):
            assert a.alive() and b.alive(), a.log_tail() + b.log_tail()
            time.sleep(0.3)
        b.kill()  # mid-run: its partitions go to a, which restores their state from the changelog
        active = wait_for_alerts(kafka_settings, expected, timeout_s=300, workers=[a])
        assert comparable(active) == comparable(expected), diff_summary(active, expected)
    finally:
        a.stop()
        b.stop()
