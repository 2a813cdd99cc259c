"""Scenarios published through a real Kafka give the same final active alerts as `relsec replay`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agents.model.events import order_key
from agents.model.timefmt import MS_PER_HOUR
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from tests.worker.harness import (
    SHARED_SCENARIOS,
    WorkerProcess,
    comparable,
    load_events,
    replay_expected,
    wait_for_alerts,
)

pytestmark = pytest.mark.kafka

SCENARIOS = sorted(
    p for p in SHARED_SCENARIOS.glob("*.jsonl") if not p.name.endswith(".expected.jsonl")
)


def shuffled_within_lateness(events: list, lateness_ms: int, seed: int) -> list:
    """An arrival order in which no event is later than the lateness behind its service's newest."""
    rng = random.Random(seed)
    return sorted(
        events, key=lambda e: (e.occurred_at_ms + rng.randint(0, lateness_ms // 2), rng.random())
    )


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
@pytest.mark.parametrize("order", ["file", "shuffled"])
@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_scenario_through_kafka_equals_replay(
    path: Path, order: str, runtime: str, kafka_settings: Settings, tmp_path: Path
) -> None:
    events = load_events(path)
    expected = replay_expected(sorted(events, key=order_key))
    assert expected, "the scenario must produce alerts for this test to mean anything"
    if order == "shuffled":
        events = shuffled_within_lateness(events, 24 * MS_PER_HOUR, seed=len(events))
    create_topics(kafka_settings, partitions=3)
    worker = WorkerProcess(kafka_settings, tmp_path, "--runtime", runtime)
    try:
        report = publish_events(kafka_settings, events)
        assert report.ok, report.failed
        active = wait_for_alerts(kafka_settings, expected, timeout_s=90, workers=[worker])
        assert comparable(active) == comparable(expected), worker.log_tail()
    finally:
        worker.stop()
