"""``relsec notify`` against a real Kafka broker and a local recording HTTP server.

Alerts are produced to the alerts topic with the project codec; the sink
delivers them, commits, and dead-letters what cannot be delivered. The
delivery-guarantee tests run with grouping off (``window_ms = 0``: every alert
its own group, so each alert is one PagerDuty event as before); the storm
tests at the end run with grouping on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from notify_helpers import Recorder

from streams.codecs import make_codec
from streams.kafka.clients import consumer_config, producer_config
from streams.kafka.topics import create_topics
from streams.notify.config import NotifyConfig, parse_config
from streams.notify.deliver import Notifier
from streams.notify.sink import NotifyReport, NotifySink, notify_group
from streams.settings import Settings
from tests.kafka_records import read_topic

pytestmark = pytest.mark.kafka

MakeAlert = Callable[..., dict[str, Any]]
PARTITIONS = 3
ROUTING_KEY = "pd-routing-key-kafka-test"
HOOK_SECRET = "kafka-test-hook-secret"


def config_text(rec: Recorder, initial_backoff_ms: int = 20) -> str:
    return f"""
[grouping]
window_ms = 0

[retry]
max_attempts = 3
initial_backoff_ms = {initial_backoff_ms}
max_backoff_ms = {max(initial_backoff_ms, 100)}
max_total_ms = 20000
request_timeout_ms = 2000

[[destination]]
name = "pd-sre"
type = "pagerduty"
audiences = ["sre"]
url = "{rec.base_url}/pd"
routing_key_env = "NOTIFY_TEST_PD_KEY"
min_interval_ms = 0

[[destination]]
name = "hook-security"
type = "webhook"
audiences = ["security"]
url = "{rec.url("/hook")}"
secret_env = "NOTIFY_TEST_HOOK_SECRET"
"""


ENV = {"NOTIFY_TEST_PD_KEY": ROUTING_KEY, "NOTIFY_TEST_HOOK_SECRET": HOOK_SECRET}


def make_config(rec: Recorder, initial_backoff_ms: int = 20) -> NotifyConfig:
    return parse_config(config_text(rec, initial_backoff_ms), env=ENV)


def produce(settings: Settings, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer(producer_config(settings))
    for key, value in records:
        producer.produce(settings.topics.alerts, key=key, value=value)
    assert producer.flush(30) == 0


def produce_alerts(settings: Settings, alerts: list[dict[str, Any]]) -> list[bytes]:
    codec = make_codec(settings)
    encoded = [codec.encode_alert(a) for a in alerts]
    produce(
        settings, [(a["alert_id"].encode(), raw) for a, raw in zip(alerts, encoded, strict=True)]
    )
    return encoded


def run_once(
    settings: Settings, config: NotifyConfig, stop: threading.Event | None = None
) -> NotifyReport:
    notifier = Notifier(config, stop=stop)
    try:
        return NotifySink(settings, notifier, stop=stop).run(once=True)
    finally:
        notifier.close()


@pytest.fixture
def topics(kafka_settings: Settings) -> Settings:
    create_topics(kafka_settings, partitions=PARTITIONS)
    return kafka_settings


def test_alerts_are_delivered_once_and_a_second_run_sends_nothing(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert
) -> None:
    settings = topics
    alerts = [
        make_alert(trigger=f"deploy-{i}", notify=["sre", "security"] if i % 2 else ["sre"])
        for i in range(8)
    ]
    retraction = make_alert(trigger="deploy-0", notify=["sre"], status="retracted")
    produce_alerts(settings, [*alerts, retraction])

    report = run_once(settings, make_config(recorder))
    assert report.records == 9
    pd = [r.json() for r in recorder.on("/pd/v2/enqueue")]
    hooks = [r.json() for r in recorder.on("/hook")]
    assert len(pd) == 9 and len(hooks) == 4
    assert report.deliveries == 13 and report.dead_lettered == 0
    assert sorted(e["dedup_key"] for e in pd if e["event_action"] == "trigger") == sorted(
        a["alert_id"] for a in alerts
    )
    # the retraction resolves the first alert, after its trigger (same key, same partition)
    keyed = [
        (e["event_action"], e["dedup_key"]) for e in pd if e["dedup_key"] == alerts[0]["alert_id"]
    ]
    assert keyed == [("trigger", alerts[0]["alert_id"]), ("resolve", alerts[0]["alert_id"])]
    assert {h["alert_id"] for h in hooks} == {a["alert_id"] for a in alerts[1::2]}

    again = run_once(settings, make_config(recorder))
    assert again.records == 0 and again.deliveries == 0
    assert len(recorder.requests) == 13

    late = make_alert(trigger="deploy-late", notify=["security"])
    produce_alerts(settings, [late])
    third = run_once(settings, make_config(recorder))
    assert third.records == 1 and third.deliveries == 1
    assert recorder.on("/hook")[-1].json() == late
    assert len(recorder.requests) == 14


def test_a_failing_destination_ends_in_the_dead_letter_topic(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert
) -> None:
    settings = topics
    recorder.script("/hook", *[(503, {}, b"unavailable")] * 3)
    alert = make_alert(trigger="deploy-dl", notify=["sre", "security"])
    (raw,) = produce_alerts(settings, [alert])

    report = run_once(settings, make_config(recorder))
    assert report.records == 1 and report.deliveries == 1 and report.dead_lettered == 1
    assert len(recorder.on("/hook")) == 3  # max_attempts
    assert len(recorder.on("/pd/v2/enqueue")) == 1

    (dl_msg,) = read_topic(settings, settings.topics.dlq, expected=1)
    dl = make_codec(settings).decode_dead_letter(dl_msg.value())
    assert dl["reason"] == "delivery_failed"
    assert dl["value"] == raw
    assert dl["key"] == alert["alert_id"].encode()
    assert dl_msg.key() == alert["alert_id"].encode()
    assert dl["topic"] == settings.topics.alerts
    (alert_msg,) = read_topic(settings, settings.topics.alerts, expected=1)
    assert (dl["partition"], dl["offset"]) == (alert_msg.partition(), alert_msg.offset())
    assert "hook-security" in dl["detail"] and "503" in dl["detail"]
    assert recorder.url("/hook") not in dl["detail"]
    assert HOOK_SECRET not in dl["detail"]

    # dead-lettered counts as done: the next run resends nothing
    again = run_once(settings, make_config(recorder))
    assert again.records == 0
    assert len(recorder.on("/hook")) == 3


def test_undecodable_records_are_dead_lettered_and_tombstones_skipped(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert
) -> None:
    settings = topics
    alert = make_alert(trigger="deploy-ok", notify=["sre"])
    produce(settings, [(b"k1", b"\x07garbage"), (b"k2", b'{"alert_id": "x"}')])
    produce(settings, [(b"k3", None)])  # type: ignore[list-item]
    produce_alerts(settings, [alert])

    report = run_once(settings, make_config(recorder))
    assert report.records == 4 and report.rejected == 2 and report.tombstones == 1
    assert report.deliveries == 1
    dls = read_topic(settings, settings.topics.dlq, expected=2)
    codec = make_codec(settings)
    by_key = {m.key(): codec.decode_dead_letter(m.value()) for m in dls}
    assert set(by_key) == {b"k1", b"k2"}
    assert by_key[b"k1"]["reason"] == "undecodable" and by_key[b"k1"]["value"] == b"\x07garbage"
    assert by_key[b"k2"]["reason"] == "validation"


def test_a_record_cut_short_by_a_stop_is_delivered_by_the_next_run(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert
) -> None:
    settings = topics
    recorder.script("/pd/v2/enqueue", (503, {}, b""))
    alert = make_alert(trigger="deploy-stop", notify=["sre"])
    produce_alerts(settings, [alert])
    stop = threading.Event()

    def stop_after_first_attempt() -> None:
        deadline = time.monotonic() + 30
        while not recorder.on("/pd/v2/enqueue") and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()

    threading.Thread(target=stop_after_first_attempt, daemon=True).start()
    first = run_once(settings, make_config(recorder, initial_backoff_ms=5000), stop=stop)
    assert first.deliveries == 0 and first.dead_lettered == 0
    assert len(recorder.on("/pd/v2/enqueue")) == 1

    second = run_once(settings, make_config(recorder))
    assert second.records == 1 and second.deliveries == 1
    events = [r.json() for r in recorder.on("/pd/v2/enqueue")]
    assert [e["dedup_key"] for e in events] == [alert["alert_id"]] * 2
    assert read_topic(settings, settings.topics.dlq, expected=0, timeout_s=1) == []


def test_cli_once_delivers_and_keeps_secrets_out_of_its_output(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert, tmp_path: Path
) -> None:
    settings = topics
    config_file = tmp_path / "notify.toml"
    config_file.write_text(config_text(recorder), encoding="utf-8")
    alerts = [make_alert(trigger=f"cli-{i}", notify=["sre", "security"]) for i in range(3)]
    produce_alerts(settings, alerts)
    env = dict(os.environ, **ENV)
    cmd = [
        sys.executable,
        "-m",
        "streams.cli",
        "notify",
        "--config",
        str(config_file),
        "--once",
        "--bootstrap-servers",
        settings.bootstrap_servers,
        "--topic-prefix",
        settings.topics.prefix,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("notify: 3 records, 6 delivered, 0 dead-lettered")
    assert ROUTING_KEY not in proc.stderr + proc.stdout
    assert HOOK_SECRET not in proc.stderr + proc.stdout
    assert len(recorder.on("/pd/v2/enqueue")) == 3 and len(recorder.on("/hook")) == 3

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("notify: 0 records")
    assert len(recorder.requests) == 6
    assert committed_total(settings, notify_group(settings)) == 3


def committed_total(settings: Settings, group: str) -> int:
    """The sum over the alerts topic's partitions of ``group``'s committed offsets."""
    consumer = Consumer(consumer_config(settings, group_id=group))
    try:
        topic = settings.topics.alerts
        meta = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def test_missing_alerts_topic_is_a_clear_error(
    kafka_settings: Settings, recorder: Recorder
) -> None:
    from streams.kafka.errors import TopicError

    with pytest.raises(TopicError, match="does not exist"):
        run_once(kafka_settings, make_config(recorder))


def test_cli_follows_new_alerts_until_sigterm(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert, tmp_path: Path
) -> None:
    settings = topics
    config_file = tmp_path / "notify.toml"
    config_file.write_text(config_text(recorder), encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "streams.cli",
        "notify",
        "--config",
        str(config_file),
        "--bootstrap-servers",
        settings.bootstrap_servers,
        "--topic-prefix",
        settings.topics.prefix,
    ]
    proc = subprocess.Popen(
        cmd,
        env=dict(os.environ, **ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = make_alert(trigger="follow-1", notify=["sre"])
        produce_alerts(settings, [first])
        deadline = time.monotonic() + 60
        while not recorder.on("/pd/v2/enqueue") and time.monotonic() < deadline:
            time.sleep(0.05)
        second = make_alert(trigger="follow-2", notify=["security"])
        produce_alerts(settings, [second])  # produced while the sink is running
        while not recorder.on("/hook") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # let the commit of the last record happen
        assert proc.poll() is None  # still running: it follows the topic
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert stderr.strip().splitlines()[-1].startswith("notify: 2 records, 2 delivered")
    assert [r.json()["dedup_key"] for r in recorder.on("/pd/v2/enqueue")] == [first["alert_id"]]
    assert [r.json()["alert_id"] for r in recorder.on("/hook")] == [second["alert_id"]]
    assert committed_total(settings, notify_group(settings)) == 2


def test_a_crash_between_delivery_and_commit_resends_only_the_record_in_flight(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert, tmp_path: Path
) -> None:
    settings = topics
    config_file = tmp_path / "notify.toml"
    config_file.write_text(config_text(recorder), encoding="utf-8")
    alerts = [make_alert(trigger=f"crash-{i}", notify=["sre"]) for i in range(4)]
    produce_alerts(settings, alerts)
    cmd = [
        sys.executable,
        "-m",
        "streams.cli",
        "notify",
        "--config",
        str(config_file),
        "--once",
        "--bootstrap-servers",
        settings.bootstrap_servers,
        "--topic-prefix",
        settings.topics.prefix,
    ]
    env = dict(os.environ, **ENV)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: list[str] = []

    def kill_on_second(request: Any) -> None:
        seen.append(request.json()["dedup_key"])
        if len(seen) == 2:
            proc.kill()  # SIGKILL: the receiver has the alert, the offset is not committed
            proc.wait(timeout=10)

    recorder.on_request = kill_on_second
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        assert proc.stderr is not None
        proc.stderr.close()
    recorder.on_request = None
    assert proc.returncode == -signal.SIGKILL
    in_flight = seen[1]

    proc2 = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc2.returncode == 0, proc2.stderr
    keys = [r.json()["dedup_key"] for r in recorder.on("/pd/v2/enqueue")]
    assert sorted(set(keys)) == sorted(a["alert_id"] for a in alerts)  # nothing lost
    assert [k for k in set(keys) if keys.count(k) > 1] == [in_flight]  # only it was resent
    assert keys.count(in_flight) == 2 and len(keys) == 5
    assert committed_total(settings, notify_group(settings)) == 4


# -- alert storms: grouping on ----------------------------------------------------------

STORM = 3000
SLACK_PATH = "/services/T0/B0/STORMSECRET"


def storm_config_text(rec: Recorder, settle_ms: int = 300) -> str:
    return f"""
[grouping]
window_ms = 3600000
settle_ms = {settle_ms}
max_delay_ms = 30000
update_interval_ms = 300000

[retry]
max_attempts = 3
initial_backoff_ms = 20
max_backoff_ms = 100
max_total_ms = 20000
request_timeout_ms = 5000

[[destination]]
name = "pd-sre"
type = "pagerduty"
audiences = ["sre"]
url = "{rec.base_url}/pd"
routing_key_env = "NOTIFY_TEST_PD_KEY"

[[destination]]
name = "slack-security"
type = "slack"
audiences = ["security"]
url_env = "NOTIFY_TEST_SLACK_URL"
"""


def storm_config(rec: Recorder, settle_ms: int = 300) -> NotifyConfig:
    env = dict(ENV, NOTIFY_TEST_SLACK_URL=rec.url(SLACK_PATH))
    return parse_config(storm_config_text(rec, settle_ms), env=env)


def trivy_report(make_alert: MakeAlert, n: int, status: str = "firing") -> list[dict[str, Any]]:
    """What the worker emits for a Trivy report of ``n`` findings on the running release."""
    alerts = []
    for i in range(n):
        severity = "critical" if i % 500 == 3 else "high"
        flag = f"CVE-2026-{20000 + i}"
        alerts.append(
            make_alert(
                rule="flag-raised-on-running-release",
                service="checkout",
                environment="prod",
                release="2.7.0",
                trigger=flag,
                severity=severity,
                status=status,
                summary=f"Security flagged checkout 2.7.0 ({flag}; {severity}), the release "
                "running in prod.",
                release_aliases=["ghcr.io/acme/checkout:2.7.0"],
            )
        )
    return alerts


def test_a_burst_of_3000_alerts_pages_once_and_posts_one_slack_message(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert
) -> None:
    from notify_schemas import pagerduty_errors, slack_errors

    settings = topics
    produce_alerts(settings, trivy_report(make_alert, STORM))
    report = run_once(settings, storm_config(recorder))
    assert report.records == STORM
    assert (report.groups_opened, report.group_updates, report.group_resolves) == (2, 0, 0)
    (pd,) = [r.json() for r in recorder.on("/pd/v2/enqueue")]
    (slack,) = [r.json() for r in recorder.on(SLACK_PATH)]
    assert pagerduty_errors(pd) == [] and slack_errors(slack) == []
    assert pd["event_action"] == "trigger"
    assert pd["payload"]["severity"] == "critical"
    assert pd["payload"]["custom_details"]["alerts"] == STORM
    assert pd["payload"]["custom_details"]["severity_counts"] == {"critical": 6, "high": 2994}
    assert pd["payload"]["summary"].startswith(f"{STORM} alerts flag-raised-on-running-release")
    assert f"{STORM} alerts" in slack["text"]
    assert f"{STORM} active: 6 critical, 2994 high" in slack["blocks"][0]["text"]["text"]
    group_id = pd["dedup_key"]
    assert group_id in slack["blocks"][-1]["elements"][0]["text"]
    assert committed_total(settings, notify_group(settings)) == STORM

    # the scanner's findings are all withdrawn: one resolve, one Slack message
    produce_alerts(settings, trivy_report(make_alert, STORM, status="retracted"))
    report = run_once(settings, storm_config(recorder))
    assert report.records == STORM and report.rebuilt_records == STORM
    assert (report.groups_opened, report.group_updates, report.group_resolves) == (0, 0, 2)
    events = [r.json() for r in recorder.on("/pd/v2/enqueue")]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[1] == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": group_id,
    }
    assert pagerduty_errors(events[1]) == []
    messages = [r.json() for r in recorder.on(SLACK_PATH)]
    assert len(messages) == 2 and slack_errors(messages[1]) == []
    assert messages[1]["text"].startswith("Resolved: flag-raised-on-running-release")
    assert f"the {STORM} alert(s)" in messages[1]["blocks"][0]["text"]["text"]
    assert committed_total(settings, notify_group(settings)) == 2 * STORM


def test_a_restart_rebuilds_the_groups_and_a_new_member_is_an_update(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert
) -> None:
    settings = topics
    report_alerts = trivy_report(make_alert, 50)
    produce_alerts(settings, report_alerts[:40])
    first = run_once(settings, storm_config(recorder))
    assert first.groups_opened == 2

    # a restart with nothing new: the group is rebuilt from the topic, nothing is sent
    again = run_once(settings, storm_config(recorder))
    assert again.records == 0 and again.rebuilt_records == 40
    assert again.deliveries == 0 and len(recorder.requests) == 2

    # ten more findings of the same report: the same incident hears of them, no new page
    produce_alerts(settings, report_alerts[40:])
    third = run_once(settings, storm_config(recorder))
    assert (third.groups_opened, third.group_updates) == (0, 2)
    events = [r.json() for r in recorder.on("/pd/v2/enqueue")]
    assert len({e["dedup_key"] for e in events}) == 1
    assert [e["payload"]["custom_details"]["alerts"] for e in events] == [40, 50]
    update = recorder.on(SLACK_PATH)[-1].json()
    assert update["text"].startswith("UPDATE CRITICAL: 50 alerts")
    assert "now 50 active (was 40)" in update["blocks"][0]["text"]["text"]


def test_a_burst_read_over_several_polls_waits_for_the_group_to_settle(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert
) -> None:
    """Following the topic, a storm that arrives in slices is still one page (settle_ms)."""
    settings = topics
    stop = threading.Event()
    notifier = Notifier(storm_config(recorder, settle_ms=1500), stop=stop)
    sink = NotifySink(settings, notifier, stop=stop)
    reports: list[NotifyReport] = []
    runner = threading.Thread(target=lambda: reports.append(sink.run()), daemon=True)
    runner.start()
    try:
        alerts = trivy_report(make_alert, 600)
        for i in range(0, 600, 200):  # the worker's checkpoints, 200 ms apart
            produce_alerts(settings, alerts[i : i + 200])
            time.sleep(0.2)
        deadline = time.monotonic() + 60
        while len(recorder.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)  # anything else would have come by now
    finally:
        stop.set()
        runner.join(timeout=60)
        notifier.close()
    (pd,) = [r.json() for r in recorder.on("/pd/v2/enqueue")]
    assert pd["payload"]["custom_details"]["alerts"] == 600
    assert len(recorder.on(SLACK_PATH)) == 1
    assert reports and reports[0].records == 600
    assert committed_total(settings, notify_group(settings)) == 600


def test_a_group_notice_that_keeps_failing_is_dead_lettered_with_its_last_record(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert
) -> None:
    settings = topics
    recorder.script(SLACK_PATH, (400, {}, b"invalid_blocks STORMSECRET"))
    alerts = trivy_report(make_alert, 5)
    encoded = produce_alerts(settings, alerts)
    report = run_once(settings, storm_config(recorder))
    assert report.dead_lettered == 1 and report.groups_opened == 1  # PagerDuty took it
    (dl_msg,) = read_topic(settings, settings.topics.dlq, expected=1)
    dl = make_codec(settings).decode_dead_letter(dl_msg.value())
    assert dl["reason"] == "delivery_failed"
    assert dl["value"] in encoded and dl["key"] == dl_msg.key()
    assert "slack-security (slack)" in dl["detail"] and "(open, 5 active alert(s))" in dl["detail"]
    assert "400" in dl["detail"]
    assert "STORMSECRET" not in dl["detail"]  # the webhook URL's secret path, echoed, is scrubbed
    # dead-lettered counts as done
    assert committed_total(settings, notify_group(settings)) == 5


def test_the_rebuild_skips_records_written_before_any_group_it_could_hold(
    topics: Settings, recorder: Recorder, make_alert: MakeAlert
) -> None:
    """A restart seeks past history older than forget_after_ms + a window + a day."""
    settings = topics
    codec = make_codec(settings)
    old = [make_alert(trigger=f"old-{i}", release="1.0.0", notify=["sre"]) for i in range(5)]
    new = [make_alert(trigger=f"new-{i}", release="2.0.0", notify=["sre"]) for i in range(5)]
    producer = Producer(producer_config(settings))
    ten_days_ago = int(time.time() * 1000) - 10 * 24 * 3_600_000
    for alert in old:
        producer.produce(
            settings.topics.alerts,
            key=alert["alert_id"].encode(),
            value=codec.encode_alert(alert),
            timestamp=ten_days_ago,
        )
    for alert in new:
        producer.produce(
            settings.topics.alerts, key=alert["alert_id"].encode(), value=codec.encode_alert(alert)
        )
    assert producer.flush(30) == 0
    first = run_once(settings, storm_config(recorder))
    assert first.records == 10 and first.groups_opened == 2  # two releases, one page each
    again = run_once(settings, storm_config(recorder))
    assert again.rebuilt_records == 5  # only the new ones were read back
    assert again.deliveries == 0 and len(recorder.requests) == 2
