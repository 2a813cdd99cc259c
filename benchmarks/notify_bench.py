"""``relsec notify`` under alert storms, on a local Apache Kafka and a local HTTP receiver.

    python benchmarks/notify_bench.py --reports 10 --findings 3000

Reports, in one run:

1. **storm**: ``reports`` scanner reports of ``findings`` findings each (one
   service and release per report, one event instant), i.e. reports x findings
   ``flag-raised-on-running-release`` alerts on the alerts topic; one ``--once``
   run delivers them to a PagerDuty and a Slack receiver: wall time, alerts/s,
   HTTP requests sent;
2. **restart**: a second ``--once`` run with nothing new: the time to rebuild the
   groups from the committed part of the topic (it sends nothing);
3. **render**: the time to render one group of ``findings`` members for
   PagerDuty and for Slack, and the bytes of each.

Starts its own single-node Kafka in a temp dir unless --bootstrap-servers is given.
The HTTP receiver is the notify tests' recording server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "notify")]

from notify_helpers import Recorder, build_alert  # noqa: E402

from agents.model.timefmt import format_rfc3339_ms, parse_rfc3339_ms  # noqa: E402
from streams.codecs import make_codec  # noqa: E402
from streams.devkafka import LocalKafka, pick_free_ports  # noqa: E402
from streams.kafka.clients import producer_config  # noqa: E402
from streams.kafka.topics import create_topics  # noqa: E402
from streams.notify.config import parse_config  # noqa: E402
from streams.notify.deliver import Notifier  # noqa: E402
from streams.notify.groups import OPEN, Grouper, RecordRef  # noqa: E402
from streams.notify.render import pagerduty_group_event, slack_group_message  # noqa: E402
from streams.notify.sink import NotifySink  # noqa: E402
from streams.settings import Settings, Topics  # noqa: E402

CONFIG = """
[grouping]
settle_ms = 500

[[destination]]
name = "pd"
type = "pagerduty"
audiences = ["sre"]
url = "{base}/pd"
routing_key_env = "K"

[[destination]]
name = "slack"
type = "slack"
audiences = ["security"]
url = "{base}/slack"
"""


def storm(reports: int, findings: int) -> list[dict[str, Any]]:
    at = format_rfc3339_ms(parse_rfc3339_ms("2026-03-04T09:20:00Z"))
    alerts = []
    for r in range(reports):
        for i in range(findings):
            flag = f"CVE-2026-{100000 + i}"
            alert = build_alert(
                rule="flag-raised-on-running-release",
                service=f"service-{r}",
                environment="prod",
                release="2.7.0",
                trigger=flag,
                severity="critical" if i % 97 == 0 else "high",
                summary=f"Security flagged service-{r} 2.7.0 ({flag}; high), running in prod.",
            )
            alert["occurred_at"] = at
            alerts.append(alert)
    return alerts


def produce(settings: Settings, alerts: list[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    codec = make_codec(settings)
    producer = Producer(producer_config(settings))
    for alert in alerts:
        producer.produce(
            settings.topics.alerts, key=alert["alert_id"].encode(), value=codec.encode_alert(alert)
        )
        producer.poll(0)
    assert producer.flush(60) == 0


def run_once(settings: Settings, recorder: Recorder) -> tuple[float, Any]:
    config = parse_config(CONFIG.format(base=recorder.base_url), env={"K": "routing-key"})
    notifier = Notifier(config)
    started = time.perf_counter()
    try:
        report = NotifySink(settings, notifier).run(once=True)
    finally:
        notifier.close()
    return time.perf_counter() - started, report


def render(findings: int) -> None:
    config = parse_config(CONFIG.format(base="http://127.0.0.1:9"), env={"K": "k"})
    grouper = Grouper(config.grouping, config.destinations)
    for i, alert in enumerate(storm(1, findings)):
        grouper.apply(alert, RecordRef(0, i), 0)
    (group,) = grouper.groups.values()
    for name, fn in (
        ("pagerduty", lambda s: pagerduty_group_event(s, OPEN, "k")),
        ("slack", lambda s: slack_group_message(s, OPEN)),
    ):
        import json

        runs = []
        size = 0
        for _ in range(5):
            t0 = time.perf_counter()
            snapshot = group.snapshot(config.grouping.window_ms)
            body = fn(snapshot)
            size = len(json.dumps(body).encode())
            runs.append(time.perf_counter() - t0)
        print(
            f"render {name}: group of {findings}: median {sorted(runs)[2] * 1000:.1f} ms "
            f"(snapshot included), {size:,} bytes"
        )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--reports", type=int, default=10)
    p.add_argument("--findings", type=int, default=3000)
    p.add_argument("--bootstrap-servers", default=None)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="relsec-notify-bench-"))
    kafka = None
    if a.bootstrap_servers:
        bootstrap = a.bootstrap_servers
    else:
        kafka = LocalKafka(tmp / "kafka", brokers=1, port=pick_free_ports(1)[0])
        bootstrap = kafka.up()
    recorder = Recorder()
    try:
        settings = Settings(
            bootstrap_servers=bootstrap, topics=Topics(f"nbench-{uuid.uuid4().hex[:6]}.")
        )
        create_topics(settings, partitions=6)
        alerts = storm(a.reports, a.findings)
        produce(settings, alerts)
        took, report = run_once(settings, recorder)
        print(
            f"storm: {len(alerts):,} alerts in {a.reports} group(s): {took:.2f} s "
            f"({len(alerts) / took:,.0f} alerts/s), {len(recorder.requests)} HTTP requests "
            f"({report.groups_opened} group notices), connection setup included"
        )
        print(report.line())
        took, report = run_once(settings, recorder)
        print(
            f"restart: rebuilt {report.rebuilt_records:,} records into "
            f"{a.reports} group(s) in {took:.2f} s, {len(recorder.requests)} requests in all"
        )
        print(report.line())
        render(a.findings)
    finally:
        recorder.close()
        if kafka is not None:
            kafka.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
