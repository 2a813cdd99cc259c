"""The latency floor of this machine and broker: how fast a bare forwarder can turn an
input record into an output record, next to ``relsec worker``, in one run.

    python benchmarks/latency_floor.py --rate 5000 --seconds 10 --runs 3

The p99 ≤ 50 ms target of issue 14 is absolute, and on a small machine the broker, the
publisher and the reader share the cores with the worker. This benchmark measures, with
the same publisher, topics and reader as ``pipeline_bench.py``'s latency phase:

* **forward**: a confluent-kafka consumer that produces each input record again at once
  (the worker's consumer and producer settings: ``fetch.wait.max.ms``, ``linger.ms`` 1,
  idempotent, ``acks=all``), in its own process: what any Kafka stream processor in
  Python pays before doing any work;
* **store-first**: the same, but each consumed batch first writes one record to a second
  topic and waits for its acknowledgement before the outputs leave: the round trip that
  relsec's at-least-once checkpoint adds so that no alert leaves before the state that can
  retract it is stored (docs/decisions.md);
* **worker**: ``relsec worker`` (``pipeline_bench.latency``).

Latency is the output record's timestamp minus the input record's (both set by their
producers on this machine). Variants alternate in each run; medians at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.model.events import event_to_dict
from benchmarks.pipeline_bench import cpu_seconds, latency, latency_stream, percentile
from streams.codecs import make_codec
from streams.devkafka import LocalKafka, pick_free_ports
from streams.kafka.clients import consumer_config, producer_config
from streams.kafka.topics import create_topics
from streams.settings import Settings, Topics

FETCH_MAX_WAIT_MS = 100  # the worker's default (--fetch-max-wait-ms)
SENT_HEADER = "floor-sent-ms"
MODES = ("forward", "store-first")


def forward(bootstrap: str, prefix: str, mode: str) -> None:
    """The forwarder process: input records to the alerts topic until SIGTERM."""
    from confluent_kafka import Consumer, Producer

    settings = Settings(bootstrap_servers=bootstrap, topics=Topics(prefix))
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.clear())
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=f"floor-{uuid.uuid4().hex[:6]}",
            **{
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": FETCH_MAX_WAIT_MS,
            },
        )
    )
    producer = Producer(producer_config(settings, **{"linger.ms": 1}))
    consumer.subscribe(list(settings.topics.inputs))
    out, store = settings.topics.alerts, settings.topics.dlq  # dlq: any created topic
    acked = [0]

    def on_stored(err: Any, _msg: Any) -> None:
        acked[0] += 1

    stored = 0
    while running:
        messages = consumer.consume(num_messages=500, timeout=0.01)
        batch = [m for m in messages if m.error() is None]
        if not batch:
            producer.poll(0)
            continue
        if mode == "store-first":
            producer.produce(store, key=b"state", value=b"x" * 64, on_delivery=on_stored)
            stored += 1
            while acked[0] < stored and running:
                producer.poll(0.001)
        for m in batch:
            producer.produce(
                out,
                key=m.key(),
                value=m.value(),
                headers=[(SENT_HEADER, str(m.timestamp()[1]).encode())],
            )
        producer.poll(0)
    consumer.close()
    producer.flush(10)


def forwarder_latency(
    bootstrap: str, events: list[Any], rate: int, seconds: int, mode: str
) -> tuple[list[float], float]:
    """Latencies of the forwarder in ``mode`` and its CPU share while producing."""
    from confluent_kafka import Consumer, Producer

    settings = Settings(
        bootstrap_servers=bootstrap, topics=Topics(f"floor-{uuid.uuid4().hex[:6]}.")
    )
    create_topics(settings, partitions=6)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--forward", mode, "--bootstrap-servers", bootstrap,
         "--prefix", settings.topics.prefix],
    )  # fmt: skip
    codec = make_codec(settings)
    producer = Producer(producer_config(settings))
    reader = Consumer(
        consumer_config(
            settings,
            group_id=f"floor-read-{uuid.uuid4().hex[:6]}",
            **{"auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    try:
        reader.subscribe([settings.topics.alerts])
        values = [
            (settings.topics.input_for_type(e.type), e.service.encode(),
             codec.encode_event(event_to_dict(e)))
            for e in events[: rate * (seconds + 1)]
        ]  # fmt: skip
        # Warm-up: a second's worth, until the first forwarded record is read.
        for topic, key, value in values[:rate]:
            producer.produce(topic, key=key, value=value)
        producer.flush(30)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            msg = reader.poll(0.2)
            if msg is not None and msg.error() is None:
                break
        else:
            raise RuntimeError("the forwarder forwarded nothing")
        time.sleep(2)
        for _ in reader.consume(10_000, 1.0):
            pass  # the warm-up's records
        start = time.monotonic()
        cpu_start = cpu_seconds(proc.pid)
        for i, (topic, key, value) in enumerate(values[rate:]):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            producer.produce(topic, key=key, value=value)
            producer.poll(0)
        producer.flush(30)
        busy = (cpu_seconds(proc.pid) - cpu_start) / (time.monotonic() - start)
        expected = len(values) - rate
        latencies: list[float] = []
        deadline = time.monotonic() + 15
        while len(latencies) < expected and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                sent = dict(msg.headers() or []).get(SENT_HEADER)
                if sent is not None:
                    latencies.append(msg.timestamp()[1] - int(sent))
        return latencies[-expected:], busy
    finally:
        reader.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--services", type=int, default=2_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--no-worker", action="store_true", help="the forwarders only")
    p.add_argument("--forward", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.forward:
        forward(a.bootstrap_servers, a.prefix, a.forward)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="relsec-floor-"))
    kafka = None
    if a.bootstrap_servers:
        bootstrap = a.bootstrap_servers
    else:
        kafka = LocalKafka(tmp / "kafka", brokers=1, port=pick_free_ports(1)[0])
        bootstrap = kafka.up()
    events = latency_stream(a.services, a.rate, a.seconds)
    variants = [*MODES] + ([] if a.no_worker else ["worker"])
    results: dict[str, list[float]] = {}
    try:
        for run in range(a.runs):
            print(f"-- run {run + 1} of {a.runs} (load average {os.getloadavg()[0]:.1f})")
            order = variants if run % 2 == 0 else variants[::-1]
            for variant in order:
                if variant == "worker":
                    settings = Settings(
                        bootstrap_servers=bootstrap, topics=Topics(f"lat-{uuid.uuid4().hex[:6]}.")
                    )
                    create_topics(settings, partitions=6)
                    lats = latency(settings, tmp, events, a.rate, a.seconds, "kafka")
                    busy = float("nan")
                else:
                    lats, busy = forwarder_latency(bootstrap, events, a.rate, a.seconds, variant)
                lats.sort()
                if not lats:
                    print(f"{variant}: nothing came out")
                    continue
                p50, p99 = statistics.median(lats), percentile(lats, 0.99)
                print(
                    f"{variant}: {len(lats)} records, p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
                    f"max {lats[-1]:.0f} ms, {busy:.2f} of a core",
                    flush=True,
                )
                results.setdefault(f"{variant} p50", []).append(p50)
                results.setdefault(f"{variant} p99", []).append(p99)
        print(f"-- medians of {a.runs} runs at {a.rate}/s")
        for name, values in results.items():
            shown = ", ".join(f"{v:.0f}" for v in values)
            print(f"{name}: {statistics.median(values):.0f} ms ({shown})")
    finally:
        if kafka is not None:
            kafka.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
