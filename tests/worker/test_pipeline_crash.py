"""A worker killed with SIGKILL mid-stream and restarted loses no alert (at-least-once)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from agents.model.events import order_key, parse_event
from streams.alerts_reader import read_alerts
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from streams.synthetic import SyntheticSpec, generate
from tests.worker.harness import WorkerProcess, comparable, replay_expected, wait_for_alerts

pytestmark = pytest.mark.kafka


def synthetic_events(n: int, services: int, seed: int) -> list:
    spec = SyntheticSpec(services=services, events=n, seed=seed)
    return [parse_event(e) for e in generate(spec)]


def test_sigkill_mid_stream_then_restart_loses_nothing(
    kafka_settings: Settings, tmp_path: Path, record_property
) -> None:
    events = synthetic_events(20_000, services=200, seed=11)
    expected = replay_expected(sorted(events, key=order_key))
    assert len(expected) > 1_000
    create_topics(kafka_settings, partitions=6)
    assert publish_events(kafka_settings, events).ok
    worker = WorkerProcess(kafka_settings, tmp_path, name="first")
    rng = random.Random(5)
    # Kill at a random point once the worker has produced part of the alerts.
    target = rng.randint(len(expected) // 10, len(expected) // 2)
    deadline = time.monotonic() + 300
    seen = 0
    try:
        while time.monotonic() < deadline:
            assert worker.alive(), worker.log_tail()
            seen = sum(1 for _ in read_alerts(kafka_settings))
            if seen >= target:
                break
            time.sleep(0.2)
        assert seen >= target, f"worker produced only {seen} alert records:\n{worker.log_tail()}"
    finally:
        worker.kill()
    restarted = WorkerProcess(kafka_settings, tmp_path, name="second")
    try:
        active = wait_for_alerts(kafka_settings, expected, timeout_s=240, workers=[restarted])
        assert comparable(active) == comparable(expected), restarted.log_tail()
        records = list(read_alerts(kafka_settings))
        firing = [r for r in records if r["status"] == "firing"]
        duplicates = len(firing) - len({r["alert_id"] for r in firing})
        record_property("alert_records", len(records))
        record_property("duplicate_firing_records", duplicates)
        print(f"killed after {seen} alert records; {len(records)} records, {duplicates} duplicates")
    finally:
        restarted.stop()
