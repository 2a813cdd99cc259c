"""The worker under real traffic shapes, on a local Apache Kafka.

    python benchmarks/worker_traffic_bench.py --report 20000 --events 60000 --services 200

Reports, in one run:

1. **a scanner's report**: a Trivy report of ``--report`` findings on one release (one
   instant, hashed ids) published with ``relsec ingest publish`` into a running worker
   whose service has that release deployed; seconds from the start of the publish to
   the last of its alerts on the alerts topic (target: under 30 s here), and the
   worker's longest loop turn (``relsec_loop_turn_seconds``);
2. **a hot service**: the worker's throughput over a backlog of ``--events`` events
   where one service holds 80% of them, against a uniform backlog of the same size
   over the same number of services (events/s from the first alert to the last input
   offset committed, as ``pipeline_bench.py`` measures), and their ratio.

Starts its own single-node Kafka in a temp dir unless --bootstrap-servers is given.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from pipeline_bench import throughput

from agents.model.events import order_key, parse_event
from agents.model.timefmt import format_rfc3339_ms
from streams.devkafka import LocalKafka, pick_free_ports
from streams.kafka.clients import consumer_config
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings, Topics
from streams.synthetic import SyntheticSpec, generate
from tests.worker.harness import (
    WorkerProcess,
    health,
    replay_expected,
    skewed_events,
    trivy_report,
)


def longest_turn(worker: WorkerProcess) -> str:
    """The upper bound of the histogram bucket holding the longest loop turn."""
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    buckets = []
    for line in lines:
        if line.startswith("relsec_loop_turn_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((bound, float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0
    for bound, count in buckets:
        if count >= total:
            return f"<= {bound} s"
    return "unknown"


def report_burst(settings: Settings, tmp: Path, findings: int, runtime: str) -> tuple[float, str]:
    """Seconds from the start of ``relsec ingest publish`` to the report's last alert."""
    from confluent_kafka import Consumer

    now_ms = int(time.time() * 1000)
    deploy = parse_event(
        {
            "type": "deploy",
            "event_id": "checkout-1.0.0-deploy",
            "occurred_at": format_rfc3339_ms(now_ms - 7_200_000),
            "source": "argocd",
            "service": "checkout",
            "environment": "production",
            "release": "1.0.0",
            "previous_release": None,
            "action": "deploy",
            "status": "succeeded",
        }
    )
    image = "ghcr.io/acme/checkout:1.0.0"
    path = tmp / f"trivy-{uuid.uuid4().hex[:6]}.json"
    path.write_bytes(
        orjson.dumps(trivy_report(findings, format_rfc3339_ms(now_ms - 3_600_000), image))
    )
    scope = ["--service", "checkout", "--release", "1.0.0"]
    cli = [sys.executable, "-m", "streams.cli"]
    converted = subprocess.run(
        [*cli, "ingest", "convert", "trivy", str(path), *scope], capture_output=True, check=True
    )
    flags = [parse_event(orjson.loads(line)) for line in converted.stdout.splitlines() if line]
    expected = len(replay_expected(sorted([deploy, *flags], key=order_key)))
    assert publish_events(settings, [deploy]).ok
    worker = WorkerProcess(settings, tmp, "--runtime", runtime, name=f"report-{runtime}")
    reader = Consumer(consumer_config(settings, None, **{"auto.offset.reset": "earliest"}))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                status, report = health(worker)
                if status == 200 and report.get("partitions"):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        reader.subscribe([settings.topics.alerts])
        started = time.monotonic()
        kafka = [
            "--bootstrap-servers",
            settings.bootstrap_servers,
            "--topic-prefix",
            settings.topics.prefix,
        ]
        subprocess.run(
            [*cli, "ingest", "publish", "trivy", str(path), *scope, *kafka],
            check=True,
            capture_output=True,
        )
        seen: set[bytes] = set()
        last = started
        deadline = time.monotonic() + 600
        while len(seen) < expected and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.2):
                if msg.error() is None and msg.key() is not None:
                    seen.add(msg.key())
                    last = time.monotonic()
            if not worker.alive():
                raise RuntimeError(f"worker died:\n{worker.log_tail()}")
        if len(seen) < expected:
            raise RuntimeError(f"{len(seen)} of {expected} alerts after 600 s")
        return last - started, longest_turn(worker)
    finally:
        reader.close()
        worker.stop()


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--report", type=int, default=20_000, help="findings in the scanner's report")
    p.add_argument("--events", type=int, default=60_000, help="backlog of the skew comparison")
    p.add_argument("--services", type=int, default=200)
    p.add_argument("--runtimes", default="kafka", help="comma-separated worker runtimes")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: report,skew")
    p.add_argument("--bootstrap-servers", default=None)
    a = p.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    tmp = Path(tempfile.mkdtemp(prefix="relsec-traffic-"))
    kafka = None
    if a.bootstrap_servers:
        bootstrap = a.bootstrap_servers
    else:
        kafka = LocalKafka(tmp / "kafka", brokers=1, port=pick_free_ports(1)[0])
        bootstrap = kafka.up()
    try:
        for runtime in a.runtimes.split(","):
            if "report" not in skip:
                s = Settings(
                    bootstrap_servers=bootstrap, topics=Topics(f"rep-{uuid.uuid4().hex[:6]}.")
                )
                create_topics(s, partitions=6)
                took, turn = report_burst(s, tmp, a.report, runtime)
                print(
                    f"runtime {runtime}: a report of {a.report} findings: last alert {took:.1f} s "
                    f"after the publish began; longest loop turn {turn}"
                )
            if "skew" not in skip:
                uniform = [
                    parse_event(e)
                    for e in generate(SyntheticSpec(services=a.services, events=a.events, seed=5))
                ]
                skewed = skewed_events(a.events, 0.8, a.services - 1, seed=5)
                rates = {}
                for name, events in (("uniform", uniform), ("skewed", skewed)):
                    s = Settings(
                        bootstrap_servers=bootstrap,
                        topics=Topics(f"{name}-{uuid.uuid4().hex[:6]}."),
                    )
                    create_topics(s, partitions=6)
                    rates[name], secs = throughput(s, tmp, events, runtime)
                    print(
                        f"runtime {runtime}: {name} backlog: {rates[name]:,.0f} events/s "
                        f"({len(events)} in {secs:.1f} s)"
                    )
                ratio = rates["skewed"] / rates["uniform"]
                print(f"runtime {runtime}: skewed / uniform = {ratio:.2f}")
    finally:
        if kafka is not None:
            kafka.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
