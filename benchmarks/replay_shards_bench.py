"""What sorted replay in N processes (``relsec replay --workers N``) costs and buys.

    python benchmarks/replay_shards_bench.py --file events-1m.jsonl --shards 2,4,8,16 \\
        --runs 3 --before /tmp/shards2-before

The two phases of ``--workers N`` (``streams/replay_shards.py``), each piece alone in a
fresh process, one after another (so that none waits for a core: this machine has two,
shared), each reporting its own CPU time:

* **plan**: this process cuts the input into byte ranges at line starts;
* **route** (phase 1): each task reads its ranges, routes every line, writes buckets;
* **shard** (phase 2): each worker's group of shards (``SHARDS_PER_WORKER`` a worker,
  grouped by the bytes routed to them), sorted replay over their buckets;
* **merge**: this process merges the shards' output (to /dev/null).

On a machine with N free cores, the wall time of ``--workers N`` is at least plan +
slowest task + slowest worker's shards + merge (the **critical path**); the **total CPU** is what
the pieces cost together, against one process's (``--one``: ``replay_sorted`` here).
Both are CPU measurements, so the neighbours' load changes them little; N cores share
memory bandwidth and caches, so the critical path is a lower bound of the wall time, not
a promise. Process start and imports (about 0.4 s, once: both phases run in the same
processes) are not in it. ``--before DIR`` runs DIR's own copy of this benchmark (the
design before, where every shard read every line) for each N and run, alternating.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from agents.engine.core import DUPLICATE_WINDOW_MS  # noqa: E402
from streams.cli.replay import wall_clock_ms  # noqa: E402
from streams.replay_ranges import RangeTask, RoutedTask, plan_tasks, remove_buckets  # noqa: E402
from streams.replay_shards import (  # noqa: E402
    SHARDS_PER_WORKER,
    ShardGroup,
    ShardJob,
    ShardResult,
    merge_shards,
    route,
    run_shard_group,
    shard_plan,
    sharded_job,
)

LATENESS_MS = 24 * 3_600_000


@dataclass
class Run:
    plan: float
    routes: list[float]
    shards: list[float]
    merge: float
    alerts: int

    @property
    def critical_path(self) -> float:
        return self.plan + max(self.routes) + max(self.shards) + self.merge

    @property
    def total(self) -> float:
        return self.plan + sum(self.routes) + sum(self.shards) + self.merge


def timed_route(task: RangeTask, shards: int) -> tuple[float, RoutedTask]:
    started = time.process_time()
    result = route(task, shards)
    return time.process_time() - started, result


def timed_group(job: ShardJob, group: ShardGroup) -> tuple[float, list[ShardResult]]:
    started = time.process_time()
    results = run_shard_group(job, group)
    return time.process_time() - started, results


def alone(function: Any, *args: Any) -> Any:
    """``function(*args)`` in a fresh process of its own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        return pool.submit(function, *args).result()


def measure(path: str, workers: int, shards_per_worker: int) -> Run:
    """One run of ``--workers N``: ``shards`` in the result are the workers' groups."""
    job = ShardJob((path,), 0, workers, LATENESS_MS, DUPLICATE_WINDOW_MS, (), wall_clock_ms)
    job = sharded_job(job, shards_per_worker)
    started = time.process_time()
    tasks = plan_tasks(job.files, job.processes)
    plan = time.process_time() - started
    routes: list[float] = []
    routed: list[RoutedTask] = []
    try:
        for task in tasks:
            cpu, routed_task = alone(timed_route, task, job.shards)
            routes.append(cpu)
            routed.append(routed_task)
        started = time.process_time()
        groups = shard_plan(job, routed)
        plan += time.process_time() - started
        seconds: list[float] = []
        results: list[ShardResult] = []
        for group in groups:
            cpu, made = alone(timed_group, job, group)
            seconds.append(cpu)
            results.extend(made)
    finally:
        remove_buckets(routed)
    written = 0
    with open("/dev/null", "wb") as sink:

        def write(line: bytes) -> None:
            nonlocal written
            written += 1
            sink.write(line)

        started = time.process_time()
        merge_shards(results, write, lambda dl: None)
        merge = time.process_time() - started
    return Run(plan, routes, seconds, merge, written)


_BEFORE_LINE = re.compile(r"N=(\d+): shards \[([^\]]*)\] s CPU, merge ([\d.]+) s \((\d+) alerts\)")


def measure_before(tree: Path, path: str, shards: int) -> Run:
    """DIR's benchmark for one N, one run: each shard reads every line (no route phase)."""
    output = subprocess.run(
        [sys.executable, str(tree / "benchmarks" / "replay_shards_bench.py"), "--file", path,
         "--shards", str(shards), "--runs", "1"],
        cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True,
        check=True,
    ).stdout
    found = _BEFORE_LINE.search(output)
    if found is None:
        raise SystemExit(f"cannot read the before benchmark's output:\n{output}")
    seconds = [float(s) for s in found.group(2).split(",")]
    return Run(0.0, [0.0], seconds, float(found.group(3)), int(found.group(4)))


def one_process(path: str) -> float:
    """CPU seconds of ``replay_sorted`` over the file in one fresh process (no output)."""
    return float(alone(_one_process_cpu, path))


def _one_process_cpu(path: str) -> float:
    from streams.replay import Replayer, make_engine, read_lines, replay_sorted
    from streams.settings import Settings

    started = time.process_time()
    engine = make_engine(False, LATENESS_MS, Settings().engine_config())
    replayer = Replayer(engine, wall_clock_ms, lambda alert: None, lambda dl: None)
    replay_sorted(read_lines([path]), replayer)
    return time.process_time() - started


def report(label: str, shards: int, runs: list[Run], lines: int, one: float | None) -> None:
    path = statistics.median(r.critical_path for r in runs)
    total = statistics.median(r.total for r in runs)
    against = f" ({total / one:.2f}x of one process)" if one else ""
    print(
        f"{label} N={shards}: critical path {path:5.2f} s = {lines / path:8.0f} events/s "
        f"[plan {statistics.median(r.plan for r in runs):.2f} + slowest route "
        f"{statistics.median(max(r.routes) for r in runs):.2f} + slowest shard "
        f"{statistics.median(max(r.shards) for r in runs):.2f} + merge "
        f"{statistics.median(r.merge for r in runs):.2f}]; total CPU {total:5.1f} s{against}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--shards", default="2,4,8,16")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--before", type=Path, help="a checkout of the design before")
    parser.add_argument("--one", action="store_true", help="time one process too")
    parser.add_argument("--shards-per-worker", type=int, default=SHARDS_PER_WORKER)
    args = parser.parse_args()
    with open(args.file, "rb") as handle:
        lines = sum(1 for _ in handle)
    one = statistics.median(one_process(args.file) for _ in range(args.runs)) if args.one else None
    if one:
        print(f"one process: {one:.1f} s CPU = {lines / one:.0f} events/s", flush=True)
    summary: list[tuple[str, int, list[Run]]] = []
    for shards in (int(n) for n in args.shards.split(",")):
        after: list[Run] = []
        before: list[Run] = []
        for _ in range(args.runs):
            if args.before:
                run = measure_before(args.before, args.file, shards)
                before.append(run)
                print(f"before N={shards}: shards {[round(s, 2) for s in run.shards]} s CPU, "
                      f"merge {run.merge:.2f} s ({run.alerts} alerts)", flush=True)
            run = measure(args.file, shards, args.shards_per_worker)
            after.append(run)
            print(
                f"after N={shards}: plan {run.plan:.3f} s, routes "
                f"{[round(s, 2) for s in run.routes]}, workers' shards "
                f"{[round(s, 2) for s in run.shards]}"
                f" s CPU, merge {run.merge:.2f} s ({run.alerts} alerts)",
                flush=True,
            )
        if before:
            summary.append(("before", shards, before))
            report("before", shards, before, lines, one)
        summary.append(("after", shards, after))
        report("after", shards, after, lines, one)
    print("summary:")
    for label, shards, runs in summary:
        report(label, shards, runs, lines, one)


if __name__ == "__main__":
    main()
