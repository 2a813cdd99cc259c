"""``relsec api`` against a real broker and a real worker (the harness) on the seed story.

The read model follows the worker's state changelog (and the alerts and input topics)
with its own consumer; two replicas answer the same; ``relsec check`` exits 2 for the
seed's rollback; a new event the worker applies changes the answer (the model follows).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.engine import EngineConfig
from agents.model.events import parse_event
from streams.api.readmodel import ReadModel
from streams.api.server import Api, ApiOptions
from streams.api.source import TopicFollower, topic_kinds
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings
from tests.api.browser import served
from tests.api.helpers import SEED_STORY, load_events
from tests.worker.harness import WorkerProcess, replay_expected, wait_for_alerts

pytestmark = pytest.mark.kafka


def clock() -> int:
    return time.time_ns() // 1_000_000


def get(url: str, path: str, timeout_s: float = 10.0) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + path, timeout=timeout_s) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def wait_until(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout_s} s (last: {last})")


def relsec_check(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELSEC_API_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "check", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def replica(settings: Settings) -> tuple[Api, TopicFollower]:
    model = ReadModel(
        EngineConfig(allowed_lateness_ms=settings.allowed_lateness_ms), clock, topic_kinds(settings)
    )
    follower = TopicFollower(settings, model, clock, metadata_interval_s=1.0)
    return Api(model, ApiOptions(port=0), follower), follower


def test_the_api_follows_the_worker_and_check_denies_the_seed_rollback(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    events = load_events(SEED_STORY)
    expected = replay_expected(events)
    create_topics(kafka_settings, partitions=3)
    # Started before the worker: the changelog topic does not exist yet.
    first, first_follower = replica(kafka_settings)
    first_follower.start()
    worker = WorkerProcess(kafka_settings, tmp_path)
    try:
        report = publish_events(kafka_settings, events)
        assert report.ok, report.failed
        wait_for_alerts(kafka_settings, expected, timeout_s=90, workers=[worker])
        second, second_follower = replica(kafka_settings)
        second_follower.start()
        with served(first) as url_a, served(second) as url_b:
            for url in (url_a, url_b):
                wait_until(lambda u=url: get(u, "/healthz")[0] == 200, 60, f"{url}/healthz ready")
                # The alerts topic may hold the worker's last alerts a moment later.
                wait_until(
                    lambda u=url: (
                        len(get(u, "/v1/services/checkout-api")[1]["active_alerts"])
                        == len(expected)
                    ),
                    30,
                    "every alert in the read model",
                )
            status_a = get(url_a, "/v1/services/checkout-api")[1]
            status_b = get(url_b, "/v1/services/checkout-api")[1]
            for status in (status_a, status_b):
                prod = status["environments"]["production"]
                assert prod["running"]["release"] == "2.8.0"
                assert status["active_flags"]["2.7.0"]["count"] == 1
                assert status["freshness"]["changelog"]["caught_up"] is True
            assert status_a["state_written_at"] is not None
            assert {a["alert_id"] for a in status_a["active_alerts"]} == set(expected)

            denied = relsec_check(
                url_a, "checkout-api", "production", "2.7.0", "--action", "rollback"
            )
            assert denied.returncode == 2, denied.stderr
            assert denied.stdout.startswith("DENY: rollback of checkout-api production to 2.7.0")
            assert "CVE-2026-20417" in denied.stdout
            same = relsec_check(
                url_b, "checkout-api", "production", "2.7.0", "--action", "rollback"
            )
            assert same.returncode == 2 and same.stdout == denied.stdout

            # Security clears the flag: once the worker applied it, the rollback is allowed.
            cleared = parse_event(
                {
                    "type": "security_flag",
                    "event_id": "api-test-clear-1",
                    "occurred_at": "2026-03-04T15:00:00Z",
                    "source": "trivy",
                    "service": "checkout-api",
                    "flag_id": "CVE-2026-20417",
                    "release": "2.7.0",
                    "status": "cleared",
                    "severity": "critical",
                    "title": "fixed by a base image rebuild",
                }
            )
            assert publish_events(kafka_settings, [cleared]).ok
            wait_until(
                lambda: (
                    relsec_check(
                        url_a, "checkout-api", "production", "2.7.0", "--action", "rollback"
                    ).returncode
                    == 0
                ),
                60,
                "the rollback allowed after the flag was cleared",
            )
            health = get(url_a, "/healthz")[1]
            assert health["status"] == "ok" and health["bad_records"] == {}
    finally:
        first_follower.stop()
        worker.stop()
    assert worker.proc.returncode is not None


def test_check_exits_3_when_no_api_answers_and_fails_open_or_closed_when_told() -> None:
    url = "http://127.0.0.1:9"  # discard port: nothing listens
    down = relsec_check(url, "checkout-api", "production", "2.7.0", "--timeout", "2")
    assert down.returncode == 3 and "no verdict" in down.stderr
    opened = relsec_check(url, "a", "b", "c", "--timeout", "2", "--on-unavailable", "allow")
    assert opened.returncode == 0 and "failing open" in opened.stderr
    closed = relsec_check(url, "a", "b", "c", "--timeout", "2", "--on-unavailable", "deny")
    assert closed.returncode == 2 and "failing closed" in closed.stderr
