"""SIGTERM while Kafka does not answer: the worker exits in bounded time and loses nothing.

A worker that waits for its last checkpoint for ever blocks a rollout (Kubernetes
kills it after its grace anyway) and hides what happened. relsec waits
``--shutdown-timeout-ms``, says why it stopped without the checkpoint, and exits
non-zero; what it had not committed is read again at the next start.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from agents.model.events import order_key
from streams.devkafka import LocalKafka
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings, Topics
from tests.worker.harness import (
    WorkerProcess,
    comparable,
    diff_summary,
    replay_expected,
    wait_for_alerts,
    wait_for_metric,
)
from tests.worker.test_pipeline_rebalance import synthetic

pytestmark = pytest.mark.kafka

SHUTDOWN_TIMEOUT_MS = 4_000


def test_sigterm_while_kafka_is_frozen_exits_in_time_and_a_restart_loses_nothing(
    kafka_private: LocalKafka, tmp_path: Path
) -> None:
    settings = Settings(bootstrap_servers=kafka_private.bootstrap, topics=Topics("t-shutdown."))
    create_topics(settings, partitions=3)
    events = synthetic(20_000, services=200, seed=31)
    expected = replay_expected(sorted(events, key=order_key))
    timeout = ("--shutdown-timeout-ms", str(SHUTDOWN_TIMEOUT_MS))
    worker = WorkerProcess(settings, tmp_path, *timeout, name="first")
    broker_pid = kafka_private.pid_of(0)
    assert broker_pid is not None
    try:
        assert publish_events(settings, events).ok
        wait_for_metric(worker, "relsec_events_applied", lambda n: n > 0)
        os.kill(broker_pid, signal.SIGSTOP)  # Kafka stops answering, connections stay open
        try:
            started = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)
            code = worker.proc.wait(60)
            took_s = time.monotonic() - started
        finally:
            os.kill(broker_pid, signal.SIGCONT)
        log = worker.log_path.read_text(errors="replace")
        # The checks inside the loop, or the watchdog 5 s later for waits in librdkafka.
        assert took_s < SHUTDOWN_TIMEOUT_MS / 1000 + 8, (took_s, worker.log_tail())
        assert code == 2, worker.log_tail()
        assert "relsec: error: stopping with" in log or "stopping without the last" in log, log
    finally:
        worker.stop()
    second = WorkerProcess(settings, tmp_path, *timeout, name="second")
    try:
        active = wait_for_alerts(settings, expected, timeout_s=120, workers=[second])
        assert comparable(active) == comparable(expected), diff_summary(active, expected)
    finally:
        second.stop()
