"""What sorted replay in N processes (``relsec replay --workers N``) costs and buys.

    python benchmarks/replay_shards_bench.py --file events-1m.jsonl --shards 1,2,4,8

For each N, every shard runs alone in a fresh process, one after another (so that no
shard waits for a core: this machine has two, shared), and reports its own CPU time;
then this process merges the shards' output (to /dev/null) and times that. The wall time
of ``--workers N`` on a machine with N free cores is at least the slowest shard plus the
merge (the **critical path**), and the **total CPU** is what the N processes cost
together, against one process's. Both are CPU measurements, so the neighbours' load
changes them little; a machine with N cores shares its memory bandwidth and caches
between them, so the critical path is a lower bound of the wall time, not a promise.
Run ``replay_ab.py --workers 2`` for a real parallel run here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from agents.engine.core import DUPLICATE_WINDOW_MS  # noqa: E402
from streams.cli.replay import wall_clock_ms  # noqa: E402
from streams.replay_shards import (  # noqa: E402
    ShardJob,
    ShardResult,
    merge_shards,
    run_shard,
    shard_jobs,
)

LATENESS_MS = 24 * 3_600_000


def timed_shard(job: ShardJob) -> tuple[float, ShardResult]:
    """One shard in this (fresh) process: its CPU seconds and its result."""
    started = time.process_time()
    result = run_shard(job)
    return time.process_time() - started, result


def measure(path: str, shards: int) -> tuple[list[float], float, int]:
    """Each shard's CPU seconds, the merge's, and the alert lines merged."""
    job = ShardJob((path,), 0, shards, LATENESS_MS, DUPLICATE_WINDOW_MS, (), wall_clock_ms)
    seconds: list[float] = []
    results: list[ShardResult] = []
    context = get_context("spawn")
    for one in shard_jobs(job):
        with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
            cpu, result = pool.submit(timed_shard, one).result()
        seconds.append(cpu)
        results.append(result)
    written = 0
    with open("/dev/null", "wb") as sink:

        def write(line: bytes) -> None:
            nonlocal written
            written += 1
            sink.write(line)

        started = time.process_time()
        merge_shards(results, write, lambda dl: None)
        merge = time.process_time() - started
    return seconds, merge, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--shards", default="1,2,4,8")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with open(args.file, "rb") as handle:
        lines = sum(1 for _ in handle)
    one_total: float | None = None
    for shards in (int(n) for n in args.shards.split(",")):
        paths, totals, merges, alerts = [], [], [], 0
        for _ in range(args.runs):
            seconds, merge, alerts = measure(args.file, shards)
            paths.append(max(seconds) + merge)
            totals.append(sum(seconds) + merge)
            merges.append(merge)
            print(
                f"N={shards}: shards {[round(s, 1) for s in seconds]} s CPU, "
                f"merge {merge:.2f} s ({alerts} alerts)",
                flush=True,
            )
        path, total = statistics.median(paths), statistics.median(totals)
        if one_total is None:
            one_total = total
        print(
            f"N={shards}: critical path {path:6.1f} s = {lines / path:8.0f} events/s; "
            f"total CPU {total:6.1f} s ({total / one_total:.2f}x of the first N); "
            f"merge {statistics.median(merges):.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
