"""Probe of ``relsec worker --exactly-once`` (Faust transactions) on three local brokers.

    python benchmarks/exactly_once_probe.py [--events 6000]

Starts a three-node Apache Kafka in a temp dir, publishes a synthetic stream,
runs a worker with ``--exactly-once``, SIGKILLs it a third of the way through,
restarts it, and compares the final active alerts (read_committed) with
`relsec replay`, counting duplicate firing records. Exit status 1 when they
differ. Results are recorded in docs/exactly-once.md. Not part of the test
suite: Faust's transactional producers are chosen by the output record's
partition, not the input partition whose offsets they commit, and this probe
shows the consequence (see the doc).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.model.events import order_key, parse_event
from streams.alerts_reader import read_alerts
from streams.devkafka import LocalKafka, pick_free_ports
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings, Topics
from streams.synthetic import SyntheticSpec, generate
from tests.worker.harness import (
    WorkerProcess,
    comparable,
    replay_expected,
    wait_for_alerts,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=6_000)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="relsec-eos-"))
    kafka = LocalKafka(tmp / "kafka", brokers=3, port=pick_free_ports(1)[0], heap_max="512m")
    try:
        bootstrap = kafka.up()
        settings = Settings(
            bootstrap_servers=bootstrap, topics=Topics(f"eos-{uuid.uuid4().hex[:8]}.")
        )
        events = [
            parse_event(e) for e in generate(SyntheticSpec(services=80, events=a.events, seed=41))
        ]
        expected = replay_expected(sorted(events, key=order_key))
        create_topics(settings, partitions=6)
        assert publish_events(settings, events).ok
        first = WorkerProcess(settings, tmp, "--exactly-once", name="eos-first")
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and first.alive():
                if sum(1 for _ in read_alerts(settings)) >= len(expected) // 3:
                    break
                time.sleep(0.3)
        finally:
            first.kill()
        second = WorkerProcess(settings, tmp, "--exactly-once", name="eos-second")
        try:
            active = wait_for_alerts(settings, expected, timeout_s=240, workers=[second])
        finally:
            second.stop()
        got, want = comparable(active), comparable(expected)
        firing = [r for r in read_alerts(settings) if r["status"] == "firing"]
        duplicates = len(firing) - len({r["alert_id"] for r in firing})
        missing = len(set(want) - set(got))
        extra = len(set(got) - set(want))
        changed = sum(1 for k in set(want) & set(got) if want[k] != got[k])
        print(
            f"expected {len(want)} alerts; missing {missing}, extra {extra}, "
            f"different content {changed}; {len(firing)} firing records, {duplicates} duplicates"
        )
        return 0 if got == want and duplicates == 0 else 1
    finally:
        kafka.down(purge=True)


if __name__ == "__main__":
    sys.exit(main())
