"""Two workers in one group: the same alerts as one; a killed worker hands its partitions over."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.model.events import Event, order_key, parse_event
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from streams.synthetic import SyntheticSpec, generate
from tests.worker.harness import (
    WorkerProcess,
    comparable,
    dead_letters,
    diff_summary,
    metric,
    pipeline_report,
    replay_expected,
    wait_for_alerts,
    wait_until_committed,
)

pytestmark = pytest.mark.kafka


def synthetic(n: int, services: int, seed: int) -> list[Event]:
    return [parse_event(e) for e in generate(SyntheticSpec(services=services, events=n, seed=seed))]


def health(worker: WorkerProcess) -> dict[str, Any]:
    url = f"http://127.0.0.1:{worker.web_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as resp:
        report: dict[str, Any] = orjson.loads(resp.read())
    return report


def wait_for_split(workers: list[WorkerProcess], partitions: int, timeout_s: float) -> None:
    """Until every worker owns some partitions and together they own all, once each."""
    deadline = time.monotonic() + timeout_s
    owned: list[list[int]] = []
    while time.monotonic() < deadline:
        for w in workers:
            assert w.alive(), w.log_tail()
        try:
            owned = [health(w)["partitions"] for w in workers]
        except OSError:
            owned = []
        flat = sorted(p for ps in owned for p in ps)
        if owned and all(owned) and flat == list(range(partitions)):
            return
        time.sleep(0.5)
    raise AssertionError(f"partitions never split across the workers: {owned}")


def test_two_workers_give_the_same_alerts_as_one(kafka_settings: Settings, tmp_path: Path) -> None:
    events = synthetic(8_000, services=150, seed=23)
    expected = replay_expected(sorted(events, key=order_key))
    assert len(expected) > 300
    create_topics(kafka_settings, partitions=6)
    workers = [WorkerProcess(kafka_settings, tmp_path, name=n) for n in ("a", "b")]
    try:
        wait_for_split(workers, 6, timeout_s=60)
        assert publish_events(kafka_settings, events).ok
        active = wait_for_alerts(kafka_settings, expected, timeout_s=180, workers=workers)
        assert comparable(active) == comparable(expected), (
            diff_summary(active, expected) + "\n" + pipeline_report(kafka_settings, workers)
        )
        wait_until_committed(kafka_settings, timeout_s=60, workers=workers)
        applied = [metric(w, "relsec_events_applied") for w in workers]
        # Both did part of the work, and together each event exactly once.
        assert all(n > 0 for n in applied), applied
        duplicates = sum(metric(w, "relsec_events_duplicate") for w in workers)
        assert sum(applied) + duplicates == len(events), pipeline_report(kafka_settings, workers)
        assert dead_letters(kafka_settings) == []
    finally:
        for w in workers:
            w.stop()


def test_killed_worker_hands_its_partitions_over(kafka_settings: Settings, tmp_path: Path) -> None:
    events = synthetic(10_000, services=150, seed=41)
    first, rest = events[: len(events) // 2], events[len(events) // 2 :]
    expected_first = replay_expected(sorted(first, key=order_key))
    expected = replay_expected(sorted(events, key=order_key))
    create_topics(kafka_settings, partitions=6)
    a = WorkerProcess(kafka_settings, tmp_path, name="a")
    b: WorkerProcess | None = None
    try:
        assert publish_events(kafka_settings, first).ok
        wait_for_alerts(kafka_settings, expected_first, timeout_s=120, workers=[a])
        wait_until_committed(kafka_settings, timeout_s=60, workers=[a])
        b = WorkerProcess(kafka_settings, tmp_path, name="b")
        wait_for_split([a, b], 6, timeout_s=60)
        # The second half goes out as a live stream; B is killed a third of the way in,
        # with work it applied but has not checkpointed, and the stream goes on.
        chunks = [rest[i : i + 250] for i in range(0, len(rest), 250)]
        for i, chunk in enumerate(chunks):
            assert publish_events(kafka_settings, chunk).ok
            time.sleep(0.25)
            if i == len(chunks) // 3:
                assert metric(b, "relsec_events_applied") > 0, "B did no work before it was killed"
                b.kill()
        active = wait_for_alerts(kafka_settings, expected, timeout_s=180, workers=[a])
        assert comparable(active) == comparable(expected), (
            diff_summary(active, expected) + "\n" + pipeline_report(kafka_settings, [a, b])
        )
        wait_until_committed(kafka_settings, timeout_s=60, workers=[a])
        # Re-read records are duplicates by their offsets, never late events.
        assert [d["reason"] for d in dead_letters(kafka_settings)] == []
    finally:
        a.stop()
        if b is not None:
            b.stop()
