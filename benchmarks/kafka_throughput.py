"""Local Apache Kafka: time to ready, and raw produce / consume throughput of both clients.

Measures, against the real broker started by ``streams.devkafka``:

* ``ready``: wall time of ``relsec kafka up`` (the CLI, in a subprocess) until it
  has printed the bootstrap address, for 1 and 3 brokers:
  ``cold``  — an empty cache dir (Maven resolves the jars from Maven Central, no
  class-data archive yet), once per broker count;
  ``warm``  — jars and class-data archive cached, a new state dir (so it formats);
  ``restart`` — ``up`` again after ``down`` on the same state dir.
* ``throughput``: confluent-kafka and aiokafka producing N messages of S bytes
  (``acks=all``, idempotent, murmur2 keys, the project's client configs) to a
  6-partition topic, and consuming them back from the beginning; medians of R runs.

Usage::

    python benchmarks/kafka_throughput.py --ready --throughput \
        --messages 200000 --size 300 --runs 3

Prints a Markdown report on stdout (``--json FILE`` also writes the raw numbers).
Everything listens on 127.0.0.1 and is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiokafka import (  # type: ignore[import-untyped]  # noqa: E402
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka import TopicPartition as CTopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # noqa: E402

from streams.devkafka import LocalKafka, cache_root, pick_free_ports  # noqa: E402
from streams.kafka.clients import (  # noqa: E402
    admin_config,
    aiokafka_kwargs,
    consumer_config,
    producer_config,
)
from streams.settings import Settings  # noqa: E402

PARTITIONS = 6


# ---------------------------------------------------------------------------
# time to ready


def _relsec(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    elapsed_s = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"relsec {' '.join(args)} failed:\n{done.stderr}")
    return elapsed_s, done.stdout.strip()


def _free_base_port(count: int) -> int:
    """A port P such that P .. P+count-1 are all free on 127.0.0.1."""
    import socket

    for _ in range(200):
        base = pick_free_ports(1)[0]
        if base + count >= 65535:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def measure_ready(brokers: int, runs: int, cold: bool, work: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("KAFKA_HOME", None)
    result: dict[str, Any] = {"brokers": brokers}
    if cold:
        cold_cache = work / f"cold-cache-{brokers}"
        shutil.rmtree(cold_cache, ignore_errors=True)
        cold_env = {**env, "RELSEC_CACHE_DIR": str(cold_cache)}
        state = work / f"cold-state-{brokers}"
        port = _free_base_port(2 * brokers)
        up_s, _ = _relsec(
            [
                "kafka",
                "up",
                "--brokers",
                str(brokers),
                "--port",
                str(port),
                "--state-dir",
                str(state),
            ],
            cold_env,
        )
        _relsec(["kafka", "down", "--purge", "--state-dir", str(state)], cold_env)
        result["cold_s"] = round(up_s, 2)
        shutil.rmtree(cold_cache, ignore_errors=True)
    warm: list[float] = []
    restart: list[float] = []
    for run in range(runs):
        state = work / f"warm-state-{brokers}-{run}"
        port = _free_base_port(2 * brokers)
        base = ["--state-dir", str(state)]
        up_s, _ = _relsec(
            ["kafka", "up", "--brokers", str(brokers), "--port", str(port), *base], env
        )
        _relsec(["kafka", "down", *base], env)
        again_s, _ = _relsec(["kafka", "up", *base], env)
        _relsec(["kafka", "down", "--purge", *base], env)
        warm.append(up_s)
        restart.append(again_s)
    result["warm_runs_s"] = [round(x, 2) for x in warm]
    result["warm_median_s"] = round(statistics.median(warm), 2)
    result["restart_runs_s"] = [round(x, 2) for x in restart]
    result["restart_median_s"] = round(statistics.median(restart), 2)
    return result


# ---------------------------------------------------------------------------
# throughput


def _payloads(count: int, size: int) -> list[tuple[bytes, bytes]]:
    body = os.urandom(size // 2).hex().encode()[:size]
    body = body + b"x" * (size - len(body))
    return [(f"service-{i % 500}".encode(), body) for i in range(count)]


def _create_topic(settings: Settings, topic: str) -> None:
    admin = AdminClient(admin_config(settings))
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[
        topic
    ].result(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        if md and md.error is None and all(p.leader >= 0 for p in md.partitions.values()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{topic}: no leaders")


def confluent_produce(settings: Settings, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer(
        producer_config(
            settings, on_delivery=on_delivery, **{"queue.buffering.max.messages": 1_000_000}
        )
    )
    started = time.monotonic()
    for key, value in msgs:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(120) != 0 or errors:
        raise RuntimeError(f"confluent produce failed: {errors[:3]}")
    return time.monotonic() - started


def confluent_consume(settings: Settings, topic: str, count: int) -> float:
    conf = consumer_config(settings)
    conf["fetch.max.bytes"] = 52428800
    consumer = Consumer(conf)
    consumer.assign([CTopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = 0
    started = time.monotonic()
    while got < count:
        batch = consumer.consume(num_messages=10000, timeout=1.0)
        for msg in batch:
            if msg.error() is None:
                got += 1
        if time.monotonic() - started > 300:
            raise RuntimeError(f"confluent consume stalled at {got}")
    elapsed_s = time.monotonic() - started
    consumer.close()
    return elapsed_s


async def _aio_produce(settings: Settings, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(
        **aiokafka_kwargs(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=65536,
    )
    await producer.start()
    started = time.monotonic()
    pending = []
    for key, value in msgs:
        pending.append(await producer.send(topic, key=key, value=value))
        if len(pending) >= 20000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    elapsed_s = time.monotonic() - started
    await producer.stop()
    return elapsed_s


async def _aio_consume(settings: Settings, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1048576,
        fetch_max_bytes=52428800,
    )
    await consumer.start()
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    got = 0
    started = time.monotonic()
    while got < count:
        batches = await consumer.getmany(timeout_ms=1000, max_records=20000)
        got += sum(len(records) for records in batches.values())
        if time.monotonic() - started > 300:
            raise RuntimeError(f"aiokafka consume stalled at {got}")
    elapsed_s = time.monotonic() - started
    await consumer.stop()
    return elapsed_s


def measure_throughput(
    bootstrap: str, messages: int, size: int, runs: int
) -> dict[str, dict[str, Any]]:
    msgs = _payloads(messages, size)
    timings: dict[str, list[float]] = {
        "confluent produce": [],
        "confluent consume": [],
        "aiokafka produce": [],
        "aiokafka consume": [],
    }
    for run in range(runs):
        settings = Settings(bootstrap_servers=bootstrap)
        for client in ("confluent", "aiokafka"):
            topic = f"bench-{client}-{run}-{os.getpid()}"
            _create_topic(settings, topic)
            if client == "confluent":
                timings["confluent produce"].append(confluent_produce(settings, topic, msgs))
                timings["confluent consume"].append(confluent_consume(settings, topic, messages))
            else:
                timings["aiokafka produce"].append(asyncio.run(_aio_produce(settings, topic, msgs)))
                timings["aiokafka consume"].append(
                    asyncio.run(_aio_consume(settings, topic, messages))
                )
    out: dict[str, dict[str, Any]] = {}
    for name, values in timings.items():
        median_s = statistics.median(values)
        out[name] = {
            "runs_s": [round(v, 3) for v in values],
            "median_s": round(median_s, 3),
            "msgs_per_s": round(messages / median_s),
            "mb_per_s": round(messages * size / median_s / 1e6, 1),
        }
    return out


# ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ready", action="store_true", help="measure time to ready")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold (Maven) runs")
    parser.add_argument("--throughput", action="store_true", help="measure client throughput")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=300, help="value size in bytes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write raw numbers here")
    args = parser.parse_args()
    if not (args.ready or args.throughput):
        parser.error("choose --ready and/or --throughput")

    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_before": os.getloadavg(),
    }
    work = Path(tempfile.mkdtemp(prefix="relsec-kafka-bench-"))
    try:
        if args.ready:
            report["ready"] = [measure_ready(n, args.runs, not args.no_cold, work) for n in (1, 3)]
        if args.throughput:
            ports = pick_free_ports(2)
            cluster = LocalKafka(
                work / "tp-state", broker_ports=[ports[0]], controller_ports=[ports[1]]
            )
            try:
                bootstrap = cluster.up()
                report["throughput"] = measure_throughput(
                    bootstrap, args.messages, args.size, args.runs
                )
                report["throughput_setup"] = {
                    "messages": args.messages,
                    "size_bytes": args.size,
                    "runs": args.runs,
                    "partitions": PARTITIONS,
                    "brokers": 1,
                    "jvm_opts": os.environ.get("RELSEC_KAFKA_JVM_OPTS", ""),
                }
            finally:
                cluster.down(purge=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["load_after"] = os.getloadavg()
    report["cache_dir"] = str(cache_root())

    print(
        f"machine: {report['machine']}; load average before {report['load_before']}, "
        f"after {report['load_after']}"
    )
    if "ready" in report:
        print(
            "\n| brokers | cold (Maven, no CDS) s | warm (new state) runs s | median "
            "| restart runs s | median |"
        )
        print("|---|---|---|---|---|---|")
        for row in report["ready"]:
            print(
                f"| {row['brokers']} | {row.get('cold_s', '-')} | {row['warm_runs_s']} | "
                f"{row['warm_median_s']} | {row['restart_runs_s']} | {row['restart_median_s']} |"
            )
    if "throughput" in report:
        setup = report["throughput_setup"]
        print(
            f"\n{setup['messages']} messages x {setup['size_bytes']} B, {PARTITIONS} partitions, "
            f"1 broker, medians of {setup['runs']}"
        )
        print("\n| client / direction | runs s | median s | msgs/s | MB/s |")
        print("|---|---|---|---|---|")
        for name, row in report["throughput"].items():
            print(
                f"| {name} | {row['runs_s']} | {row['median_s']} | {row['msgs_per_s']} | "
                f"{row['mb_per_s']} |"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
