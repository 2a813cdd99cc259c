"""/healthz tells the loop's progress, in both runtimes, while the web thread keeps answering.

With a stall limit shorter than one slice of engine work, a scanner's burst makes the
worker report ``stalled`` (503) while it works and ``ok`` again once it is done: the
answer comes from the loop's progress, read by a web thread that never blocks on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from tests.worker.harness import WorkerProcess, health
from tests.worker.test_pipeline_record_limits import scan_of, wait_until_assigned

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_healthz_reports_a_stall_while_one_slice_runs_and_ok_after(
    runtime: str, kafka_settings: Settings, tmp_path: Path
) -> None:
    create_topics(kafka_settings, partitions=3)
    # One slice holds the whole burst; the stall limit is far shorter than that slice
    # (4 000 findings: at the worker's ~70 µs an event on a backlog, about 0.3 s; 1 200
    # were once enough, until the worker got fast enough to take them within 100 ms).
    slice_args = ("--slice-events", "5000", "--batch-records", "5000")
    worker = WorkerProcess(
        kafka_settings, tmp_path, "--runtime", runtime, "--health-stall-ms", "100", *slice_args
    )
    try:
        wait_until_assigned(worker, 3)
        events = scan_of("checkout", "1.0.0", 4_000, int(time.time() * 1000) - 3_600_000)
        assert publish_events(kafka_settings, events).ok
        seen: list[int] = []
        answered_in: list[float] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert worker.alive(), worker.log_tail()
            started = time.monotonic()
            status, report = health(worker)
            answered_in.append(time.monotonic() - started)
            seen.append(status)
            if 503 in seen and status == 200 and report["last_loop_ms_ago"] < 100:
                break
            time.sleep(0.01)
        assert 503 in seen, "the worker never reported its long slice"
        assert seen[-1] == 200, "and was healthy again once it was done"
        # The web thread answered throughout, stalled loop or not.
        assert max(answered_in) < 2.0, max(answered_in)
    finally:
        worker.stop()
