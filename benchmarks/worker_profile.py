"""Profile of the live kafka-runtime worker working off a backlog (py-spy, sampled).

    python benchmarks/worker_profile.py --events 100000 --services 2000 --out /tmp/worker.raw

Starts its own single-node Kafka (unless --bootstrap-servers), publishes the synthetic
backlog that ``benchmarks/pipeline_bench.py`` uses, starts ``relsec worker``, attaches
``py-spy record`` to it from the first alert until every input offset is committed, and
prints the shares of the samples: per function on top of the stack (self) and per
function anywhere on it (inclusive). ``--out`` keeps py-spy's raw collapsed stacks
(for a flame graph). mypyc-compiled functions (the engine and model) show as time in
their Python caller. Needs py-spy (``pip install py-spy``) and ptrace permission.

``--perf FILE`` samples with Linux ``perf record --call-graph dwarf`` instead and keeps
its data in FILE: there the compiled functions have their own names
(``CPyDef_<module>___<Class>___<method>``); read it with ``perf report -i FILE``.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.model.events import event_to_dict, parse_event
from benchmarks.pipeline_bench import (
    committed,
    cpu_seconds,
    end_offsets,
    first_alert_time,
    latency_stream,
    start_worker,
)
from streams.codecs import make_codec
from streams.devkafka import LocalKafka, pick_free_ports
from streams.kafka.clients import producer_config
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings, Topics
from streams.synthetic import SyntheticSpec, generate


def summarize(raw: Path, top: int, within: str | None = None) -> None:
    """Print self and inclusive shares of py-spy's collapsed stacks (of the stacks that
    pass through the function ``within`` only, when given)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or (within is not None and within not in stack):
            continue
        count = int(count_text)
        frames = [
            f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].split(":")[0] + ")" if " (" in f else f
            for f in stack.split(";")
        ]
        if frames and frames[0].startswith("thread"):  # with --threads
            frames = frames[1:]
        total += count
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    print(f"{total} samples")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"-- {title}")
        for name, count in counter.most_common(top):
            print(f"{100 * count / total:5.1f}%  {name}")


def sampler_command(a: argparse.Namespace, py_spy: str, pid: int, raw: Path) -> list[str]:
    """The sampling profiler to attach to the worker: py-spy, or perf with ``--perf``."""
    if a.perf is not None:
        return [
            "perf", "record", "-F", str(a.rate), "--call-graph", "dwarf,16384",
            "-p", str(pid), "-o", str(a.perf),
        ]  # fmt: skip
    return [
        py_spy, "record", "-p", str(pid), "-r", str(a.rate), "-f", "raw", "-o", str(raw),
        "--nonblocking", *(["--idle"] if a.idle else []),
    ]  # fmt: skip


def produce_at(settings: Settings, events: list[Any], rate: int) -> None:
    """Produce ``events`` at ``rate`` per second, as ``relsec publish`` sends (encoded ahead)."""
    from confluent_kafka import Producer

    codec = make_codec(settings)
    producer = Producer(producer_config(settings))
    values = [codec.encode_event(event_to_dict(e)) for e in events]
    start = time.monotonic()
    for i, (event, value) in enumerate(zip(events, values, strict=True)):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.produce(
            settings.topics.input_for_type(event.type), key=event.service.encode(), value=value
        )
        producer.poll(0)
    producer.flush(30)


def print_counts(web_port: int) -> None:
    """Checkpoints and loop turns so far, from the worker's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    for line in text.splitlines():
        if line.startswith(
            (
                "relsec_checkpoint_seconds_count",
                "relsec_loop_turn_seconds_count",
                "relsec_loop_turn_seconds_sum",
            )
        ):
            print(line)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--services", type=int, default=2_000)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=45)
    p.add_argument("--out", type=Path, default=None, help="keep the raw collapsed stacks here")
    p.add_argument(
        "--live",
        type=int,
        default=0,
        metavar="RATE",
        help="profile a live stream at RATE events/s (for --seconds) instead of a backlog",
    )
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--worker-args", default="", help="extra `relsec worker` options, quoted")
    p.add_argument(
        "--idle",
        action="store_true",
        help="sample waiting too (py-spy --idle), the loop's thread only: where the wall "
        "time of a turn goes, not only its CPU",
    )
    p.add_argument(
        "--perf",
        type=Path,
        default=None,
        metavar="FILE",
        help="sample with `perf record --call-graph dwarf` into FILE instead of py-spy",
    )
    a = p.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    from benchmarks import pipeline_bench

    pipeline_bench.WORKER_ARGS.extend(a.worker_args.split())
    tmp = Path(tempfile.mkdtemp(prefix="relsec-prof-"))
    kafka = None
    if a.bootstrap_servers:
        bootstrap = a.bootstrap_servers
    else:
        kafka = LocalKafka(tmp / "kafka", brokers=1, port=pick_free_ports(1)[0])
        bootstrap = kafka.up()
    raw = a.out or tmp / "worker.raw"
    try:
        spec = SyntheticSpec(
            services=a.services, events=a.events, out_of_order_share=0.0, duplicate_share=0.0
        )
        events = [parse_event(e) for e in generate(spec)]
        settings = Settings(
            bootstrap_servers=bootstrap, topics=Topics(f"prof-{uuid.uuid4().hex[:6]}.")
        )
        create_topics(settings, partitions=6)
        if a.live:
            events = latency_stream(a.services, a.live, a.seconds)
            assert publish_events(settings, events[: a.live]).ok  # warm-up
            events = events[a.live :]
        else:
            assert publish_events(settings, events).ok
        ends = end_offsets(settings, settings.topics.inputs)
        worker = start_worker(settings, tmp, "profiled", "kafka")
        try:
            first_alert_time(settings, 180)
            if a.live:
                time.sleep(2)
            spy = subprocess.Popen(
                sampler_command(a, py_spy, worker.pid, raw),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            t0 = time.monotonic()
            cpu0 = cpu_seconds(worker.pid)
            if a.live:
                produce_at(settings, events, a.live)
            else:
                while True:
                    done = committed(settings, settings.topics.consumer_group, list(ends))
                    if all(done.get(tp, -1) >= end for tp, end in ends.items()):
                        break
                    time.sleep(0.05)
            took = time.monotonic() - t0
            cpu = cpu_seconds(worker.pid) - cpu0
            spy.send_signal(2)  # py-spy and perf write their output on SIGINT
            spy.wait(60)
            print_counts(worker.web_port)
        finally:
            worker.stop()
        print(f"worker CPU {cpu:.1f} s over {took:.1f} s ({cpu / took:.2f} of a core)")
        print(f"{len(events)} events worked off in {took:.1f} s while profiled")
        if a.perf is None:
            summarize(raw, a.top, "KafkaRuntime.run" if a.idle else None)
        else:
            print(f"perf data in {a.perf}: perf report -i {a.perf} --no-children")
    finally:
        if kafka is not None:
            kafka.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
