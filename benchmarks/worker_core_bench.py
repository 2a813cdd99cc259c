"""The worker's own per-record work without Kafka: admit, merge, engine, outputs, checkpoints.

    python benchmarks/worker_core_bench.py --events 100000 --services 2000 --runs 3
    python benchmarks/worker_core_bench.py --events 50000 --profile   # cProfile, top functions
    python benchmarks/worker_core_bench.py --runs 3 --compare /tmp/before  # A/B, alternating
    python benchmarks/worker_core_bench.py --runs 5 --fastavro-ab   # direct Avro vs fastavro

The synthetic backlog of ``benchmarks/pipeline_bench.py``, encoded as the default codec
writes it (Avro single-object) and split by service over 6 partitions as ``relsec
publish`` sends it, is fed through the kafka runtime's core exactly as its loop does —
``WorkerCore.admit`` per record, ``WorkerCore.release`` one slice at a time, the outputs
held in the at-least-once checkpoint machine, a checkpoint sealed every
``checkpoint_records`` records — over a producer stand-in that acknowledges every
record at the next poll (no broker, no librdkafka). CPU time, medians of ``--runs``.
What this measures is the ceiling of the worker's Python side: the live worker adds
the consumer, the producer's queues and the delivery reports' C side on top. The
collector is set as the worker's loop sets it (the young-generation threshold, and
``gc.freeze`` once a second); ``--default-gc`` leaves Python's defaults instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# RELSEC_BENCH_TREE: the source tree to measure (``--compare`` runs the other tree's code
# through this same script); this checkout by default.
sys.path.insert(0, os.environ.get("RELSEC_BENCH_TREE") or str(Path(__file__).resolve().parents[1]))

from agents.model.events import event_to_dict, parse_event
from streams.codecs import make_codec
from streams.kafka.clients import murmur2_partition
from streams.settings import Settings, Topics
from streams.synthetic import SyntheticSpec, generate
from streams.worker.changelog import ChangelogStore
from streams.worker.checkpoint import AtLeastOnceCheckpoints
from streams.worker.core import WorkerCore
from streams.worker.delivery import RecordLimits
from streams.worker.kafka_runtime import GC_FREEZE_EVERY_MS, GC_YOUNG_THRESHOLD
from streams.worker.merge import CAUGHT_UP
from streams.worker.options import WorkerOptions
from streams.worker.records import InputRecord

PARTITIONS = 6


class _Acked:
    """The message a delivery report names (topic, partition, offset)."""

    __slots__ = ("_offset", "_partition", "_topic")

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class AckingProducer:
    """Queues delivery reports and runs them at the next poll, every record acknowledged."""

    def __init__(self) -> None:
        self.reports: list[tuple[Callable[[Any, Any], None] | None, _Acked]] = []
        self.offsets: dict[tuple[str, int], int] = {}
        self.produced = 0

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        *,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        at = (topic, max(partition, 0))
        offset = self.offsets.get(at, 0)
        self.offsets[at] = offset + 1
        self.produced += 1
        self.reports.append((on_delivery, _Acked(at[0], at[1], offset)))

    def poll(self, timeout: float = 0) -> int:
        reports, self.reports = self.reports, []
        for callback, msg in reports:
            if callback is not None:
                callback(None, msg)
        return len(reports)

    def flush(self, timeout: float = 0) -> int:
        while self.reports:
            self.poll()
        return 0

    def __len__(self) -> int:
        return len(self.reports)


class AllCaughtUp:
    def lag_state(self, topic: str, partition: int) -> str:
        return CAUGHT_UP


def records(settings: Settings, events: int, services: int) -> list[InputRecord]:
    codec = make_codec(settings)
    topics = settings.topics
    offsets: dict[tuple[str, int], int] = {}
    out = []
    spec = SyntheticSpec(
        services=services, events=events, out_of_order_share=0.0, duplicate_share=0.0
    )
    for obj in generate(spec):
        event = parse_event(obj)
        topic = topics.input_for_type(event.type)
        key = event.service.encode()
        partition = murmur2_partition(key, PARTITIONS)
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        value = codec.encode_event(event_to_dict(event))
        out.append(InputRecord(topic, partition, offset, key, value))
    return out


def run_once(
    settings: Settings, inputs: list[InputRecord], worker_gc: bool = True, direct: bool = True
) -> tuple[float, int, int]:
    """CPU seconds to work ``inputs`` off, alerts and records produced. ``direct=False``:
    Avro read and written by fastavro, as before ``streams.codecs.avro_direct``."""
    options = WorkerOptions(partitions=PARTITIONS)
    store = ChangelogStore(settings, settings.topics.state_changelog)
    core = WorkerCore(settings, options, store.state_of, "kafka")
    from streams.codecs import single_object

    saved_reader = single_object._direct_reader
    if not direct:
        core.processor.codec._direct_alerts = False  # type: ignore[attr-defined]
        single_object._direct_reader = lambda known: None
    producer = AckingProducer()
    limits = RecordLimits.learned({}, options.producer_max_message_bytes)
    checkpoints = AtLeastOnceCheckpoints(producer, store, settings.topics, limits)
    lag = AllCaughtUp()
    batch = options.batch_records
    now = int(time.time() * 1000)
    since = 0
    saved_thresholds = gc.get_threshold()
    if worker_gc:
        gc.set_threshold(GC_YOUNG_THRESHOLD, *saved_thresholds[1:])
    start = last_freeze = time.process_time()
    for i in range(0, len(inputs), batch):
        if worker_gc and (time.process_time() - last_freeze) * 1000 >= GC_FREEZE_EVERY_MS:
            gc.freeze()
            last_freeze = time.process_time()
        for record in inputs[i : i + batch]:
            disposal = core.admit(record, now)
            if disposal:
                checkpoints.send_durable(disposal)
        since += batch
        more = True
        now += 20  # past the merge's caught-up grace: this batch goes through now
        while more:
            released = core.release(now, lag)
            for service, outputs in released.outputs.items():
                checkpoints.hold(service, outputs)
            more = released.full
            producer.poll(0)
            checkpoints.advance()
        if since >= options.checkpoint_records:
            checkpoints.seal(core.take_states(), {})
            since = 0
    # The tail: every partition caught up, all released.
    while core.buffered():
        released = core.release(now + 10_000, lag)
        for service, outputs in released.outputs.items():
            checkpoints.hold(service, outputs)
    checkpoints.seal(core.take_states(), {})
    checkpoints.drain()
    took = time.process_time() - start
    single_object._direct_reader = saved_reader
    gc.set_threshold(*saved_thresholds)
    gc.unfreeze()
    alerts = sum(child.value for child in core.metrics.alerts._children.values())
    return took, alerts, producer.produced


def fastavro_ab(settings: Settings, inputs: list[InputRecord], runs: int) -> int:
    """Pairs of runs in this process, fastavro and direct Avro alternating which goes first."""
    ratios = []
    for run in range(runs):
        took: dict[bool, float] = {}
        for direct in (False, True) if run % 2 == 0 else (True, False):
            took[direct] = run_once(settings, inputs, direct=direct)[0]
        ratios.append(took[False] / took[True])
        print(
            f"pair {run + 1}: fastavro {len(inputs) / took[False]:,.0f}, direct "
            f"{len(inputs) / took[True]:,.0f} events/s CPU: {ratios[-1]:.3f}x",
            flush=True,
        )
    each = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"direct / fastavro: median {statistics.median(ratios):.3f}x ({each})")
    return 0


def compare(a: argparse.Namespace) -> int:
    """Each round: this tree and DIR, alternating which goes first, one fresh process each."""
    trees = {"after": str(Path(__file__).resolve().parents[1]), "before": a.compare}
    rates: dict[str, list[float]] = {"after": [], "before": []}
    for run in range(a.runs):
        order = ["before", "after"] if run % 2 == 0 else ["after", "before"]
        for label in order:
            cmd = [sys.executable, __file__, "--runs", "1", "--events", str(a.events)]
            cmd += ["--services", str(a.services)] + (["--default-gc"] if a.default_gc else [])
            env = dict(os.environ, RELSEC_BENCH_TREE=trees[label])
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            rate = float(out.rsplit("median: ", 1)[1].split()[0].replace(",", ""))
            rates[label].append(rate)
            print(f"round {run + 1} {label}: {rate:,.0f} events/s CPU", flush=True)
        print(f"round {run + 1} after / before: {rates['after'][-1] / rates['before'][-1]:.2f}")
    for label, values in rates.items():
        print(f"{label}: median {statistics.median(values):,.0f} events/s CPU")
    ratios = [x / y for x, y in zip(rates["after"], rates["before"], strict=True)]
    each = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"after / before: median {statistics.median(ratios):.2f} ({each})")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--services", type=int, default=2_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="one run under cProfile")
    p.add_argument("--top", type=int, default=40)
    p.add_argument(
        "--default-gc", action="store_true", help="Python's collector settings, not the worker's"
    )
    p.add_argument(
        "--fastavro-ab",
        action="store_true",
        help="alternate, in this process, runs with the direct Avro paths and with fastavro",
    )
    p.add_argument(
        "--compare",
        metavar="DIR",
        default=None,
        help="alternate each run with one of the source tree DIR's code (fresh processes)",
    )
    a = p.parse_args()
    if a.compare:
        return compare(a)
    settings = Settings(bootstrap_servers="127.0.0.1:1", topics=Topics("bench."))
    inputs = records(settings, a.events, a.services)
    if a.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_once(settings, inputs, not a.default_gc)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(a.top)
        return 0
    if a.fastavro_ab:
        return fastavro_ab(settings, inputs, a.runs)
    rates = []
    for run in range(a.runs):
        took, alerts, produced = run_once(settings, inputs, not a.default_gc)
        rates.append(len(inputs) / took)
        print(
            f"run {run + 1}: {len(inputs)} events in {took:.2f} s CPU = {rates[-1]:,.0f} "
            f"events/s; {alerts} alerts, {produced} records produced",
            flush=True,
        )
    print(f"median: {statistics.median(rates):,.0f} events/s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
