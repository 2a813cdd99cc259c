"""Alerts the broker refuses stop the worker without committing; a restart delivers them."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from agents.model.events import order_key
from streams.kafka.clients import admin_config
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from tests.worker.harness import (
    WorkerProcess,
    comparable,
    diff_summary,
    input_offsets,
    replay_expected,
    wait_for_alerts,
)
from tests.worker.test_pipeline_crash import synthetic_events

pytestmark = pytest.mark.kafka


def set_max_message_bytes(settings: Settings, topic: str, value: str) -> None:
    admin = AdminClient(admin_config(settings))
    entry = ConfigEntry("max.message.bytes", value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def test_refused_alerts_stop_the_worker_and_are_sent_after_a_restart(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    events = sorted(synthetic_events(1_500, services=20, seed=3), key=order_key)
    expected = replay_expected(events)
    create_topics(kafka_settings, partitions=3)
    # Every alert record is larger than this: the broker refuses them all.
    set_max_message_bytes(kafka_settings, kafka_settings.topics.alerts, "64")
    assert publish_events(kafka_settings, events).ok
    worker = WorkerProcess(kafka_settings, tmp_path, name="refused")
    try:
        status = worker.proc.wait(120)
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert status == 2, log[-2000:]
    assert "not delivered" in log, log[-2000:]
    committed, ends = input_offsets(kafka_settings)
    # The inputs whose alerts did not go out were not committed.
    assert any(committed.get(tp, -1) < end for tp, end in ends.items()), committed
    set_max_message_bytes(kafka_settings, kafka_settings.topics.alerts, "1048588")
    restarted = WorkerProcess(kafka_settings, tmp_path, name="restarted")
    try:
        active = wait_for_alerts(kafka_settings, expected, timeout_s=120, workers=[restarted])
        assert comparable(active) == comparable(expected), diff_summary(active, expected)
    finally:
        restarted.stop()
