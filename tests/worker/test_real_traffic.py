"""Real traffic shapes through a real broker: a scanner's report, a backfill, a hot service.

Uniform synthetic streams hide what real tools do: one Trivy report is thousands of
findings on one release at one instant (ids hashed, so in no order), a backfill
packs months into seconds, and one service can hold most of the events. Each test
compares the worker's final active alerts with ``relsec replay``'s and checks that
the worker stayed healthy (``/healthz``) while it worked.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.model.events import Event, order_key, parse_event
from agents.model.timefmt import MS_PER_DAY, format_rfc3339_ms
from streams.alerts_reader import read_alerts
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from streams.synthetic import SyntheticSpec, generate
from tests.worker.harness import (
    WorkerProcess,
    comparable,
    dead_letters,
    diff_summary,
    health,
    pipeline_report,
    replay_expected,
    skewed_events,
    trivy_report,
    wait_until_committed,
)

pytestmark = pytest.mark.kafka


def relsec(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=cwd, capture_output=True, timeout=300
    )


def kafka_args(settings: Settings) -> list[str]:
    return [
        "--bootstrap-servers",
        settings.bootstrap_servers,
        "--topic-prefix",
        settings.topics.prefix,
    ]


def wait_healthy_for_alerts(
    settings: Settings,
    expected: dict[str, dict[str, Any]],
    timeout_s: float,
    worker: WorkerProcess,
) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """Poll the alerts topic until its active set equals ``expected``, asking /healthz
    between reads; returns the active set and every health status seen."""
    from streams.alerts_reader import active_alerts

    deadline = time.monotonic() + timeout_s
    want = comparable(expected)
    statuses: list[int] = []
    active: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        assert worker.alive(), worker.log_tail()
        with contextlib.suppress(OSError):  # not listening yet
            status, report = health(worker)
            statuses.append(status)
            if status != 200:
                print(f"health {status}: {report}\n{loop_turns(worker)}")
        active = active_alerts(read_alerts(settings))
        if comparable(active) == want:
            print(loop_turns(worker))
            return active, statuses
        time.sleep(0.5)
    return active, statuses


def loop_turns(worker: WorkerProcess) -> str:
    """The worker's histogram of loop turn durations, for failure messages."""
    import urllib.request

    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    return "\n".join(line for line in lines if line.startswith("relsec_loop_turn_seconds"))


def deploy_of(service: str, release: str, at_ms: int) -> Event:
    return parse_event(
        {
            "type": "deploy",
            "event_id": f"{service}-{release}-deploy",
            "occurred_at": format_rfc3339_ms(at_ms),
            "source": "argocd",
            "service": service,
            "environment": "production",
            "release": release,
            "previous_release": None,
            "action": "deploy",
            "status": "succeeded",
        }
    )


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_a_trivy_report_of_2400_findings_on_one_release_through_ingest_and_a_worker(
    runtime: str, kafka_settings: Settings, tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    deploy = deploy_of("checkout", "1.0.0", now_ms - 2 * 3_600_000)
    report = trivy_report(
        2_400, format_rfc3339_ms(now_ms - 3_600_000), "ghcr.io/acme/checkout:1.0.0"
    )
    path = tmp_path / "trivy.json"
    path.write_bytes(orjson.dumps(report))
    scope = ["--service", "checkout", "--release", "1.0.0"]
    converted = relsec("ingest", "convert", "trivy", str(path), *scope, cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr.decode()
    flags = [parse_event(orjson.loads(line)) for line in converted.stdout.splitlines() if line]
    assert len(flags) >= 2_000 and len({f.occurred_at_ms for f in flags}) == 1
    expected = replay_expected(sorted([deploy, *flags], key=order_key))
    assert len(expected) >= 2_000

    create_topics(kafka_settings, partitions=3)
    assert publish_events(kafka_settings, [deploy]).ok
    worker = WorkerProcess(kafka_settings, tmp_path, "--runtime", runtime)
    try:
        published = relsec(
            "ingest",
            "publish",
            "trivy",
            str(path),
            *scope,
            *kafka_args(kafka_settings),
            cwd=tmp_path,
        )
        assert published.returncode == 0, published.stderr.decode()
        active, statuses = wait_healthy_for_alerts(kafka_settings, expected, 240, worker)
        assert comparable(active) == comparable(expected), (
            diff_summary(active, expected) + "\n" + pipeline_report(kafka_settings, [worker])
        )
        # The loop kept turning while it worked the report off.
        assert statuses and set(statuses) == {200}, statuses
        assert dead_letters(kafka_settings) == []
    finally:
        worker.stop()


def backfill(events: int, services: int, seed: int) -> list[Event]:
    """About 115 days of events over ``services`` services, in arrival order."""
    spec = SyntheticSpec(services=services, events=events, seed=seed, span_ms=115 * MS_PER_DAY)
    return [parse_event(e) for e in generate(spec)]


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_a_backfill_of_30000_events_over_20_services_published_first_equals_replay(
    runtime: str, kafka_settings: Settings, tmp_path: Path
) -> None:
    events = backfill(30_000, services=20, seed=10)
    expected = replay_expected(sorted(events, key=order_key))
    assert len(expected) > 3_000
    create_topics(kafka_settings, partitions=6)
    assert publish_events(kafka_settings, events).ok
    worker = WorkerProcess(kafka_settings, tmp_path, "--runtime", runtime)
    try:
        active, statuses = wait_healthy_for_alerts(kafka_settings, expected, 300, worker)
        assert comparable(active) == comparable(expected), (
            diff_summary(active, expected) + "\n" + pipeline_report(kafka_settings, [worker])
        )
        assert set(statuses) == {200}, statuses
        assert [d for d in dead_letters(kafka_settings) if d["reason"] == "late"] == []
        if runtime == "kafka":
            wait_until_committed(kafka_settings, timeout_s=60, workers=[worker])
    finally:
        worker.stop()


def test_a_backfill_survives_a_sigkill_mid_backlog_and_a_restart(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    events = backfill(30_000, services=20, seed=12)
    expected = replay_expected(sorted(events, key=order_key))
    create_topics(kafka_settings, partitions=6)
    assert publish_events(kafka_settings, events).ok
    first = WorkerProcess(kafka_settings, tmp_path, name="first")
    target = len(expected) // 3
    deadline = time.monotonic() + 240
    seen = 0
    try:
        while time.monotonic() < deadline and seen < target:
            assert first.alive(), first.log_tail()
            seen = sum(1 for _ in read_alerts(kafka_settings))
            time.sleep(0.2)
        assert seen >= target, f"only {seen} alert records:\n{first.log_tail()}"
    finally:
        first.kill()
    second = WorkerProcess(kafka_settings, tmp_path, name="second")
    try:
        active, _ = wait_healthy_for_alerts(kafka_settings, expected, 300, second)
        assert comparable(active) == comparable(expected), (
            diff_summary(active, expected) + "\n" + pipeline_report(kafka_settings, [second])
        )
        assert [d for d in dead_letters(kafka_settings) if d["reason"] == "late"] == []
    finally:
        second.stop()


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_a_hot_service_with_80_percent_of_the_events_equals_replay(
    runtime: str, kafka_settings: Settings, tmp_path: Path
) -> None:
    events = skewed_events(15_000, hot_share=0.8, services=40, seed=4)
    hot = sum(1 for e in events if e.service == "hot-00000")
    assert hot == 12_000
    expected = replay_expected(sorted(events, key=order_key))
    create_topics(kafka_settings, partitions=6)
    worker = WorkerProcess(kafka_settings, tmp_path, "--runtime", runtime)
    try:
        assert publish_events(kafka_settings, events).ok
        active, statuses = wait_healthy_for_alerts(kafka_settings, expected, 300, worker)
        assert comparable(active) == comparable(expected), (
            diff_summary(active, expected) + "\n" + pipeline_report(kafka_settings, [worker])
        )
        assert set(statuses) == {200}, statuses
        assert [d for d in dead_letters(kafka_settings) if d["reason"] == "late"] == []
    finally:
        worker.stop()
