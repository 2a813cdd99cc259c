"""No record the broker refuses, and no crash loop: a checkpoint fits the changelog's limit.

The worker reads each topic's record size limit at start and cuts states and
outboxes to it. Lowering the changelog's limit under a running worker makes the
broker refuse what the worker cut to the old limit: the worker stops with a
message naming what was refused, where, how big and why, commits nothing past
it, and a restart (which reads the limit again) gets past the same input.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agents.model.events import Event, parse_event
from agents.model.timefmt import format_rfc3339_ms
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from streams.worker.state_records import RECORD_OVERHEAD
from tests.worker.harness import (
    WorkerProcess,
    comparable,
    diff_summary,
    health,
    input_offsets,
    replay_expected,
    set_topic_config,
    topic_records,
    wait_for_alerts,
)

pytestmark = pytest.mark.kafka

LOWERED_LIMIT = 16_384


def scan_of(service: str, release: str, findings: int, at_ms: int) -> list[Event]:
    """A deploy of ``release``, then a scanner's report on it: ``findings`` raises at once."""
    deploy = parse_event(
        {
            "type": "deploy",
            "event_id": f"{service}-deploy-1",
            "occurred_at": format_rfc3339_ms(at_ms - 3_600_000),
            "source": "argocd",
            "service": service,
            "environment": "production",
            "release": release,
            "previous_release": None,
            "action": "deploy",
            "status": "succeeded",
        }
    )
    flags = [
        parse_event(
            {
                "type": "security_flag",
                # Hashed ids, as scanners' adapters make them: no order of their own.
                "event_id": f"scan:{(i * 2_654_435_761) % 4_294_967_296:08x}",
                "occurred_at": format_rfc3339_ms(at_ms),
                "source": "trivy",
                "service": service,
                "flag_id": f"CVE-2026-{10_000 + i}",
                "release": release,
                "status": "raised",
                "severity": ("critical", "high", "medium", "low")[i % 4],
                "vulnerabilities": [f"CVE-2026-{10_000 + i}"],
                "title": f"CVE-2026-{10_000 + i} in libexample{i % 40} 1.{i % 9}.0",
                "fixed_in": None,
            }
        )
        for i in range(findings)
    ]
    return [deploy, *flags]


def wait_until_assigned(worker: WorkerProcess, partitions: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert worker.alive(), worker.log_tail()
        try:
            status, report = health(worker)
        except OSError:
            status, report = 0, {}
        if status == 200 and len(report.get("partitions", [])) == partitions:
            return
        time.sleep(0.3)
    raise AssertionError(f"not assigned in {timeout_s} s:\n{worker.log_tail()}")


def test_a_checkpoint_the_changelog_refuses_stops_the_worker_and_a_restart_gets_past_it(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    create_topics(kafka_settings, partitions=3)
    changelog = kafka_settings.topics.state_changelog
    now_ms = int(time.time() * 1000) - 3_600_000
    events = scan_of("checkout", "1.0.0", 300, now_ms)
    expected = replay_expected(events)
    assert len(expected) >= 300
    first = WorkerProcess(kafka_settings, tmp_path, name="first")
    try:
        wait_until_assigned(first, 3)
        # An operator lowers the limit under the running worker, which read it at start.
        set_topic_config(kafka_settings, changelog, "max.message.bytes", str(LOWERED_LIMIT))
        assert publish_events(kafka_settings, events).ok
        status = first.proc.wait(90)
    finally:
        first.stop()
    log = first.log_path.read_text(errors="replace")
    assert status == 2, log[-3000:]
    error = next(line for line in log.splitlines() if line.startswith("relsec: error:"))
    # What: a changelog record; where: the topic and partition; why: the broker's word;
    # how big against the limit the worker knew.
    assert "checkpoint not stored" in error, error
    assert changelog in error and "Message size too large" in error, error
    assert "the limit learned at start is 1,000,000" in error, error
    assert "restart" in error, error
    committed, ends = input_offsets(kafka_settings)
    assert any(committed.get(tp, -1) < end for tp, end in ends.items()), committed

    second = WorkerProcess(kafka_settings, tmp_path, name="second")
    try:
        active = wait_for_alerts(kafka_settings, expected, timeout_s=180, workers=[second])
        assert comparable(active) == comparable(expected), diff_summary(active, expected)
        assert f"{changelog} {LOWERED_LIMIT:,}" in second.log_path.read_text()
    finally:
        second.stop()
    records = topic_records(kafka_settings, changelog)
    biggest = max(len(m.key() or b"") + len(m.value() or b"") for m in records)
    assert biggest + RECORD_OVERHEAD <= LOWERED_LIMIT, biggest
    assert len(records) > 30, "the service's state and outbox took many records"
