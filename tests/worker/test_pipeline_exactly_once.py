"""``--exactly-once`` on three brokers: a SIGKILL mid-stream leaves no duplicate and no orphan."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from agents.model.events import order_key
from streams.alerts_reader import read_alerts
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings, Topics
from tests.worker.harness import (
    COMPARED,
    WorkerProcess,
    comparable,
    diff_summary,
    replay_expected,
    wait_for_alerts,
    wait_until_committed,
)
from tests.worker.test_pipeline_crash import synthetic_events

pytestmark = pytest.mark.kafka


def test_sigkill_under_exactly_once_gives_each_alert_record_once(
    kafka_cluster3: object, tmp_path: Path
) -> None:
    settings = Settings(
        bootstrap_servers=kafka_cluster3.bootstrap,  # type: ignore[attr-defined]
        topics=Topics(f"eos-{uuid.uuid4().hex[:8]}."),
    )
    events = synthetic_events(12_000, services=120, seed=5)
    expected = replay_expected(sorted(events, key=order_key))
    create_topics(settings, partitions=6, replication_factor=3)
    assert publish_events(settings, events).ok
    args = ("--exactly-once", "--instance-id", "eos-1")
    worker = WorkerProcess(settings, tmp_path, *args, name="first")
    target = len(expected) // 3
    deadline = time.monotonic() + 180
    seen = 0
    try:
        while time.monotonic() < deadline and seen < target:
            assert worker.alive(), worker.log_tail()
            seen = sum(1 for _ in read_alerts(settings))
            time.sleep(0.2)
        assert seen >= target, f"only {seen} alert records:\n{worker.log_tail()}"
    finally:
        worker.kill()
    # The same transactional id: the restarted worker aborts what the killed one left open.
    restarted = WorkerProcess(settings, tmp_path, *args, name="second")
    try:
        active = wait_for_alerts(settings, expected, timeout_s=240, workers=[restarted])
        assert comparable(active) == comparable(expected), diff_summary(active, expected)
        wait_until_committed(settings, timeout_s=60, workers=[restarted])
        records = list(read_alerts(settings))
        # Committed reads see every alert event once: nothing the killed worker sent after
        # its last transaction, nothing sent twice. The engine emits an alert only when it
        # changes, so a record equal to the previous one of its alert is a duplicate.
        last: dict[str, tuple[object, ...]] = {}
        duplicates = 0
        for r in records:
            shape = (r["status"], *(str(r.get(f)) for f in COMPARED))
            duplicates += last.get(r["alert_id"]) == shape
            last[r["alert_id"]] = shape
        assert duplicates == 0, f"{duplicates} duplicate alert records of {len(records)}"
        print(f"killed after {seen} alert records; {len(records)} records, none duplicated")
    finally:
        restarted.stop()
