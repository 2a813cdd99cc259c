"""Live traffic on partial seals: a worker killed between two stores of a quiet service,
and restarted, loses nothing and ends with replay's alerts (streams.worker.cadence)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agents.model.events import Event, order_key, parse_event
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from streams.synthetic import SyntheticSpec, generate
from tests.worker.harness import (
    WorkerProcess,
    comparable,
    diff_summary,
    metric,
    replay_expected,
    wait_for_alerts,
    wait_for_metric,
)

pytestmark = pytest.mark.kafka

PARTIAL = 'relsec_checkpoints_sealed_total{kind="partial"}'


def publish_live(settings: Settings, events: list[Event], per_tenth_s: int) -> threading.Thread:
    """Publish ``events`` in the background, ``per_tenth_s`` every 100 ms (live traffic)."""

    def run() -> None:
        for start in range(0, len(events), per_tenth_s):
            assert publish_events(settings, events[start : start + per_tenth_s]).ok
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_live_worker_killed_between_stores_of_its_quiet_services_loses_nothing(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    spec = SyntheticSpec(services=400, events=6_000, seed=23, duplicate_share=0.0)
    events = sorted((parse_event(e) for e in generate(spec)), key=order_key)
    expected = replay_expected(events)
    assert len(expected) > 100
    create_topics(kafka_settings, partitions=3)
    # A store delay far above the run's length: a quiet service stays unstored until the
    # kill, and no commit may pass its first record; the restart has to apply its records
    # again. Checkpoints every 200 ms: the publisher's 100 ms pauses are not the quiet
    # moment that makes a seal full. (This test found that a slice applies its events
    # service by service, not in offset order.)
    delay = ("--state-store-delay-ms", "600000", "--checkpoint-interval-ms", "200")
    first = WorkerProcess(kafka_settings, tmp_path, *delay, name="first")
    try:
        publisher = publish_live(kafka_settings, events, per_tenth_s=100)
        wait_for_metric(first, "relsec_events_applied", lambda n: n >= 2_000, timeout_s=120)
        applied = metric(first, "relsec_events_applied")
        partial_seals = metric(first, PARTIAL)
    finally:
        first.kill()
    publisher.join(120)
    assert not publisher.is_alive()
    assert 0 < applied < len(events), "killed mid-stream"
    assert partial_seals > 0
    second = WorkerProcess(kafka_settings, tmp_path, name="second")
    try:
        active = wait_for_alerts(kafka_settings, expected, timeout_s=180, workers=[second])
        assert comparable(active) == comparable(expected), diff_summary(active, expected)
        # Records of services stored by a partial seal were read again and known as applied.
        assert metric(second, "relsec_events_duplicate") > 0, second.log_tail()
    finally:
        second.stop()
