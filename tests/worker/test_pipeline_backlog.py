"""Backlogs: inputs published topic by topic are merged in event time; nothing becomes late."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agents.model.events import order_key
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from tests.worker.harness import (
    WorkerProcess,
    comparable,
    dead_letters,
    metric,
    replay_expected,
    wait_for_alerts,
)
from tests.worker.test_pipeline_crash import synthetic_events

pytestmark = pytest.mark.kafka


def by_type(events: list, kind: str) -> list:
    return [e for e in events if e.type == kind]


def test_topic_by_topic_backlog_gives_replay_alerts_and_no_late(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    # 30 days of events: publishing all deploys first puts them weeks ahead of the
    # incidents and flags; without the event-time merge most of those would be late.
    events = synthetic_events(4_000, services=40, seed=21)
    expected = replay_expected(sorted(events, key=order_key))
    create_topics(kafka_settings, partitions=3)
    for kind in ("deploy", "incident", "security_flag"):
        assert publish_events(kafka_settings, by_type(events, kind)).ok
    worker = WorkerProcess(kafka_settings, tmp_path)
    try:
        active = wait_for_alerts(kafka_settings, expected, timeout_s=240, workers=[worker])
        assert comparable(active) == comparable(expected), worker.log_tail()
        late = [d for d in dead_letters(kafka_settings) if d["reason"] == "late"]
        assert late == []
        assert metric(worker, "relsec_events_applied_total") > 0
    finally:
        worker.stop()


def test_stopped_worker_restarts_on_a_backlog(kafka_settings: Settings, tmp_path: Path) -> None:
    events = sorted(synthetic_events(4_000, services=40, seed=22), key=order_key)
    half = len(events) // 2
    first, second = events[:half], events[half:]
    create_topics(kafka_settings, partitions=3)
    assert publish_events(kafka_settings, first).ok
    worker = WorkerProcess(kafka_settings, tmp_path, name="before")
    try:
        expected_first = replay_expected(first)
        active = wait_for_alerts(kafka_settings, expected_first, timeout_s=180, workers=[worker])
        assert comparable(active) == comparable(expected_first), worker.log_tail()
    finally:
        worker.stop()
    # While no worker runs, the rest arrives topic by topic: a backlog on each input.
    for kind in ("security_flag", "deploy", "incident"):
        assert publish_events(kafka_settings, by_type(second, kind)).ok
    time.sleep(1)
    restarted = WorkerProcess(kafka_settings, tmp_path, name="after")
    try:
        expected = replay_expected(events)
        active = wait_for_alerts(kafka_settings, expected, timeout_s=240, workers=[restarted])
        assert comparable(active) == comparable(expected), restarted.log_tail()
        assert [d for d in dead_letters(kafka_settings) if d["reason"] == "late"] == []
    finally:
        restarted.stop()
