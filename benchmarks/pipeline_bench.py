"""End-to-end worker benchmark on a local Apache Kafka.

    python benchmarks/pipeline_bench.py --events 100000 --services 2000 --rates 2000,5000 \
        --seconds 20 --runs 3

Reports, in one run:

1. **ceiling**: raw confluent-kafka consume + Avro decode of the input topics (events/s);
2. **throughput**: one `relsec worker` working off the whole backlog — events/s from the
   first alert to the last input offset committed — and its ratio to the ceiling;
3. **latency**: events produced at a fixed rate into a running worker; event-to-alert
   latency = the alert record's timestamp (set when the worker produced it) minus the
   triggering input record's timestamp (set when the publisher produced it); p50/p99,
   at each of ``--rates``.

Throughput is given twice: by wall time, and by the worker process's CPU time (user +
system, all its threads, from ``/proc``) over the same interval; the ceiling likewise by
this process's CPU time. On a shared machine wall time measures the neighbours; the CPU
ratio is the steadier one. With ``--runs N`` everything is measured N times (fresh
topics each run, one broker) and the medians printed at the end.

Starts its own single-node Kafka in a temp dir unless --bootstrap-servers is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.model.events import Event, event_to_dict, parse_event
from streams.codecs import make_codec
from streams.devkafka import LocalKafka, pick_free_ports
from streams.kafka.clients import admin_config, consumer_config, producer_config
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings, Topics
from streams.synthetic import SyntheticSpec, generate
from tests.worker.harness import WorkerProcess


def end_offsets(settings: Settings, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(consumer_config(settings, group_id=f"bench-{uuid.uuid4().hex[:6]}"))
    try:
        out = {}
        md = c.list_topics(timeout=10)
        for t in topics:
            for p in md.topics[t].partitions:
                out[(t, p)] = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
        return out
    finally:
        c.close()


def committed(
    settings: Settings, group: str, tps: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(admin_config(settings))
    req = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])]
    fut = admin.list_consumer_group_offsets(req)[group]
    res = fut.result(timeout=10)
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ceiling(settings: Settings, total: int) -> tuple[float, float]:
    """Raw consume + decode of every input record: (events/s wall, events/s CPU)."""
    from confluent_kafka import Consumer

    codec = make_codec(settings)
    c = Consumer(
        consumer_config(
            settings,
            group_id=f"ceiling-{uuid.uuid4().hex[:6]}",
            **{"auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    c.subscribe(list(settings.topics.inputs))
    n = 0
    start = None
    cpu_start = 0.0
    while n < total:
        for msg in c.consume(1000, 1.0):
            if msg.error():
                continue
            if start is None:
                start = time.perf_counter()
                cpu_start = time.process_time()
            topic_type = settings.topics.type_for_input(msg.topic())
            codec.decode_event(msg.value(), topic_type)
            n += 1
    wall, cpu = time.perf_counter() - start if start else 0.0, time.process_time() - cpu_start
    c.close()
    assert start is not None
    return n / wall, n / cpu


WORKER_ARGS: list[str] = []
WORKER_CODE: dict[str, str] = {}
PER_SECOND: list[bool] = []  # --per-second
"""Runtime label -> a source tree the worker runs from instead (``--compare``)."""


def start_worker(settings: Settings, tmp: Path, name: str, runtime: str) -> WorkerProcess:
    code = WORKER_CODE.get(runtime)
    real = runtime.split("@", 1)[0]
    if code is None:
        return WorkerProcess(settings, tmp, "--runtime", real, *WORKER_ARGS, name=name)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = code
    try:
        return WorkerProcess(settings, tmp, "--runtime", real, *WORKER_ARGS, name=name)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def first_alert_time(settings: Settings, timeout_s: float) -> float:
    from confluent_kafka import Consumer

    c = Consumer(
        consumer_config(
            settings,
            group_id=f"first-{uuid.uuid4().hex[:6]}",
            **{"auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    c.subscribe([settings.topics.alerts])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.1)
            if msg is not None and not msg.error():
                return time.monotonic()
        raise RuntimeError("no alert appeared")
    finally:
        c.close()


def throughput(
    settings: Settings, tmp: Path, events: list, runtime: str
) -> tuple[float, float, float]:
    """(events/s wall, seconds wall, events/s of the worker's CPU time)."""
    assert publish_events(settings, events).ok
    ends = end_offsets(settings, settings.topics.inputs)
    worker = start_worker(settings, tmp, f"throughput-{runtime}", runtime)
    try:
        t0 = first_alert_time(settings, 180)
        cpu0 = cpu_seconds(worker.pid)
        while True:
            done = committed(settings, settings.topics.consumer_group, list(ends))
            if all(done.get(tp, -1) >= end for tp, end in ends.items()):
                break
            if not worker.alive():
                log = (tmp / f"throughput-{runtime}.log").read_text()[-2000:]
                raise RuntimeError(f"worker died: {log}")
            time.sleep(0.05)
        t1 = time.monotonic()
        cpu1 = cpu_seconds(worker.pid)
    finally:
        worker.stop()
    return len(events) / (t1 - t0), t1 - t0, len(events) / (cpu1 - cpu0)


def latency(
    settings: Settings, tmp: Path, events: list, rate: int, seconds: int, runtime: str
) -> list[float]:
    from confluent_kafka import Consumer, Producer

    worker = start_worker(settings, tmp, f"latency-{runtime}", runtime)
    codec = make_codec(settings)
    producer = Producer(producer_config(settings))  # as `relsec publish` sends
    sent_at: dict[str, int] = {}
    try:
        # Warm-up: the worker has joined its group when a first event produced an alert.
        warm = events[:rate]
        assert publish_events(settings, warm).ok
        first_alert_time(settings, 180)
        time.sleep(2)
        reader = Consumer(
            consumer_config(
                settings,
                group_id=f"lat-{uuid.uuid4().hex[:6]}",
                **{"auto.offset.reset": "latest", "enable.auto.commit": False},
            )
        )
        reader.subscribe([settings.topics.alerts])
        reader.poll(2.0)
        stream = events[rate : rate + rate * seconds]
        # Encoded ahead: at 5,000/s this process's own encoding would compete for the cores.
        values = [codec.encode_event(event_to_dict(event)) for event in stream]
        changelog = (settings.topics.state_changelog,)
        stored_before = sum(end_offsets(settings, changelog).values())
        start = time.monotonic()
        start_wall_ms = int(time.time() * 1000)
        cpu_start = cpu_seconds(worker.pid)
        for i, (event, value) in enumerate(zip(stream, values, strict=True)):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent_at[event.event_id] = int(time.time() * 1000)
            producer.produce(
                settings.topics.input_for_type(event.type), key=event.service.encode(), value=value
            )
            producer.poll(0)
        producer.flush(30)
        busy = (cpu_seconds(worker.pid) - cpu_start) / (time.monotonic() - start)
        print(f"  worker CPU while {rate}/s were produced: {busy:.2f} of a core", flush=True)
        latencies: list[float] = []
        by_second: dict[int, list[float]] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for msg in reader.consume(500, 0.5):
                if msg.error():
                    continue
                alert = codec.decode_alert(msg.value())
                trigger = alert["trigger"]
                if trigger in sent_at and alert["status"] == "firing":
                    took_ms = msg.timestamp()[1] - sent_at[trigger]
                    latencies.append(took_ms)
                    second = (sent_at[trigger] - start_wall_ms) // 1000
                    by_second.setdefault(second, []).append(took_ms)
        reader.close()
        stored = sum(end_offsets(settings, changelog).values()) - stored_before
        print(f"  state changelog records: {stored:,} ({stored / len(stream):.2f} an event)")
        if PER_SECOND:
            for second, values in sorted(by_second.items()):
                values.sort()
                print(
                    f"    second {second:3d}: {len(values):5d} alerts, p50 "
                    f"{statistics.median(values):6.0f} ms, max {values[-1]:6.0f} ms"
                )
        return latencies
    finally:
        worker.stop()


def latency_stream(services: int, rate: int, seconds: int) -> list[Event]:
    """The latency phase's stream: ``rate`` events a second for ``seconds`` + 1 (the first
    second warms up), in order, event time moving an hour a second (a replayed day of a
    busy fleet); also what worker_profile.py and latency_floor.py produce live."""
    spec = SyntheticSpec(
        services=services,
        events=rate * (seconds + 1),
        out_of_order_share=0.0,
        duplicate_share=0.0,
        seed=99,
        span_ms=(seconds + 1) * 1000 * 3600,
    )
    return [parse_event(e) for e in generate(spec)]


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * share))]


def one_run(
    a: argparse.Namespace,
    bootstrap: str,
    tmp: Path,
    events: list,
    lat_events: list,
    results: dict[str, list[float]],
) -> None:
    rate_ceiling = cpu_ceiling = None
    variants = list(a.variants)
    if a.run_index % 2:  # alternate which code goes first
        variants.reverse()
    for runtime in variants:
        s1 = Settings(bootstrap_servers=bootstrap, topics=Topics(f"bench-{uuid.uuid4().hex[:6]}."))
        create_topics(s1, partitions=6)
        rate_worker, took, cpu_worker = throughput(s1, tmp, events, runtime)
        if rate_ceiling is None or cpu_ceiling is None:
            rate_ceiling, cpu_ceiling = ceiling(s1, len(events))
            print(
                f"ceiling (consume + Avro decode): {rate_ceiling:,.0f} events/s wall, "
                f"{cpu_ceiling:,.0f} events/s CPU"
            )
            results["ceiling wall"].append(rate_ceiling)
            results["ceiling cpu"].append(cpu_ceiling)
        print(
            f"runtime {runtime}: worker: {rate_worker:,.0f} events/s ({len(events)} events in "
            f"{took:.1f} s), {rate_worker / rate_ceiling:.3f} of the ceiling; CPU time: "
            f"{cpu_worker:,.0f} events/s, {cpu_worker / cpu_ceiling:.3f} of the CPU ceiling"
        )
        results[f"{runtime} wall"].append(rate_worker)
        results[f"{runtime} wall ratio"].append(rate_worker / rate_ceiling)
        results[f"{runtime} cpu"].append(cpu_worker)
        results[f"{runtime} cpu ratio"].append(cpu_worker / cpu_ceiling)
    for rate in a.rate_list:
        for runtime in variants:
            s2 = Settings(
                bootstrap_servers=bootstrap, topics=Topics(f"lat-{uuid.uuid4().hex[:6]}.")
            )
            create_topics(s2, partitions=6)
            lats = sorted(latency(s2, tmp, lat_events, rate, a.seconds, runtime))
            if lats:
                p50, p99 = statistics.median(lats), percentile(lats, 0.99)
                print(
                    f"runtime {runtime}: latency at {rate} events/s for {a.seconds} s: "
                    f"{len(lats)} alerts, p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
                    f"max {lats[-1]:.0f} ms",
                    flush=True,
                )
                results[f"{runtime} p50 @{rate}"].append(p50)
                results[f"{runtime} p99 @{rate}"].append(p99)
                results[f"{runtime} max @{rate}"].append(lats[-1])
            else:
                print(f"runtime {runtime}: latency at {rate}/s: no alerts matched")


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--services", type=int, default=2_000)
    p.add_argument("--rate", type=int, default=None, help="one latency rate (see --rates)")
    p.add_argument("--rates", default="2000,5000", help="comma-separated latency rates")
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--runs", type=int, default=1, help="repeat everything; medians at the end")
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--runtimes", default="kafka", help="comma-separated worker runtimes to measure")
    p.add_argument("--worker-args", default="", help="extra `relsec worker` options, quoted")
    p.add_argument(
        "--compare",
        default=None,
        metavar="DIR",
        help="also measure workers running the source tree DIR (on PYTHONPATH), alternating "
        "with this tree's in every run (the ratios of the two are taken within a run)",
    )
    p.add_argument(
        "--per-second",
        action="store_true",
        help="print each second's latencies (p50, max) by when the event was sent",
    )
    a = p.parse_args()
    if a.per_second:
        PER_SECOND.append(True)
    a.variants = a.runtimes.split(",")
    if a.compare:
        for runtime in list(a.variants):
            WORKER_CODE[f"{runtime}@before"] = a.compare
            a.variants.append(f"{runtime}@before")
    a.rate_list = [a.rate] if a.rate else [int(r) for r in a.rates.split(",") if r]
    WORKER_ARGS.extend(a.worker_args.split())
    tmp = Path(tempfile.mkdtemp(prefix="relsec-pipe-"))
    kafka = None
    if a.bootstrap_servers:
        bootstrap = a.bootstrap_servers
    else:
        kafka = LocalKafka(tmp / "kafka", brokers=1, port=pick_free_ports(1)[0])
        bootstrap = kafka.up()
    try:
        spec = SyntheticSpec(
            services=a.services, events=a.events, out_of_order_share=0.0, duplicate_share=0.0
        )
        events = [parse_event(e) for e in generate(spec)]
        top = max(a.rate_list, default=0)
        lat_events = latency_stream(a.services, top, a.seconds)
        results: dict[str, list[float]] = {}
        results.setdefault("ceiling wall", [])
        results.setdefault("ceiling cpu", [])
        from collections import defaultdict

        results = defaultdict(list, results)
        for run in range(a.runs):
            print(
                f"-- run {run + 1} of {a.runs} (load average {os.getloadavg()[0]:.1f})", flush=True
            )
            a.run_index = run
            one_run(a, bootstrap, tmp, events, lat_events, results)
        if a.runs > 1:
            print(f"-- medians of {a.runs} runs")
            for name, values in results.items():
                shown = ", ".join(f"{v:,.3f}" if v < 10 else f"{v:,.0f}" for v in values)
                median = statistics.median(values)
                print(
                    f"{name}: median {median:,.3f} ({shown})"
                    if median < 10
                    else f"{name}: median {median:,.0f} ({shown})"
                )
    finally:
        if kafka is not None:
            kafka.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
