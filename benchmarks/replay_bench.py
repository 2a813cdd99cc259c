"""Replay benchmark: events/s, per-event engine time, peak RSS and state size.

    python benchmarks/replay_bench.py --events 1000000 --services 10000 --runs 3

Measures, in one run on this machine:

* a bare loop of ``orjson.loads`` over the file's lines, in a fresh process (the yardstick:
  the issue's targets are ratios to it, measured in the same run);
* `relsec replay` end to end (read, parse, validate, sort, engine, write alerts),
  sorted and `--as-arrived`, each in a fresh process: CPU time (user + system, start-up
  included), events/s, peak RSS;
* the engine alone (events parsed beforehand), sorted and as-arrived: µs per event;
* state after pruning: serialized bytes per active (service, environment).

Medians over ``--runs``; the as-arrived/sorted ratio is computed from the same run.
``--code DIR`` runs the child processes on another checkout's ``agents`` and ``streams``
(an export of an older commit: the "before" column); ``RELSEC_PURE_PYTHON=1`` in the
environment runs them on the pure-Python engine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from agents.engine import Engine, EngineConfig
from agents.model.events import order_key, parse_event
from streams.synthetic import SyntheticSpec, generate

NOW_MS = 4_000_000_000_000  # far after the synthetic events: nothing is "future"


def write_events(path: Path, spec: SyntheticSpec) -> None:
    with path.open("wb") as out:
        for event in generate(spec):
            out.write(orjson.dumps(event))
            out.write(b"\n")


_CHILD = (
    "import resource, sys\n"
    "from streams.cli import main\n"
    "status = main(sys.argv[1:])\n"
    "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(status)\n"
)


_ORJSON_LOOP = (
    "import sys, orjson\n"
    "loads = orjson.loads\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    for line in f:\n"
    "        loads(line)\n"
)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(
    cmd: list[str], code: Path | None
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """CPU seconds (user + system) of one child process, and the process.

    CPU time, not wall time: this machine is shared and often runs several times more
    work than it has cores, and the wall time then measures the neighbours."""
    start = _children_cpu()
    proc = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, cwd=code
    )
    return _children_cpu() - start, proc


def run_orjson_loop(path: Path) -> float:
    """Wall seconds of a fresh process that runs ``orjson.loads`` over every line."""
    return run_child([sys.executable, "-c", _ORJSON_LOOP, str(path)], None)[0]


def run_cli(path: Path, as_arrived: bool, code: Path | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and the summary line of one `relsec replay` process."""
    cmd = [sys.executable, "-c", _CHILD, "replay", str(path)]
    if as_arrived:
        cmd.append("--as-arrived")
    cpu, proc = run_child(cmd, code)
    lines = proc.stderr.decode().strip().splitlines()
    peak = int(lines[-1].split()[1])
    return cpu, peak, lines[-2]


def engine_only(events: list, config: EngineConfig) -> tuple[float, Engine]:
    engine = Engine(config, compact_idle=False)  # every service live: its state is measured
    process = engine.process
    start = time.perf_counter()
    for event in events:
        process(event, NOW_MS)
    return time.perf_counter() - start, engine


def state_per_service_env(engine: Engine) -> tuple[float, int]:
    total = 0
    pairs = 0
    for service in engine.services.values():
        total += len(service.to_bytes())
        pairs += max(1, len(service.head.envs))
    return total / max(1, pairs), pairs


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--services", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--file", default=None, help="reuse an events file (else generated in a temp dir)"
    )
    p.add_argument("--code", type=Path, default=None, help="run the children on this checkout")
    p.add_argument("--cli-only", action="store_true", help="skip the engine-only timing")
    a = p.parse_args()
    spec = SyntheticSpec(services=a.services, events=a.events)
    tmp = Path(tempfile.mkdtemp(prefix="relsec-bench-"))
    path = Path(a.file) if a.file else tmp / "events.jsonl"
    if not path.exists():
        t = time.perf_counter()
        write_events(path, spec)
        print(
            f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t:.1f} s"
        )
    lines = sum(1 for _ in path.open("rb"))
    results: dict[str, list[tuple[float, int]]] = {"sorted": [], "as-arrived": []}
    loops: list[float] = []
    ratios: dict[str, list[float]] = {"sorted": [], "as-arrived": []}
    for run in range(a.runs):
        loop = run_orjson_loop(path)
        loops.append(loop)
        print(f"run {run + 1} orjson loop {loop:7.1f} s CPU {lines / loop:9.0f} lines/s")
        for mode in ("sorted", "as-arrived"):
            cpu, rss, summary = run_cli(path, mode == "as-arrived", a.code)
            results[mode].append((cpu, rss))
            ratios[mode].append(loop / cpu)
            print(
                f"run {run + 1} {mode:10s} {cpu:7.1f} s CPU {lines / cpu:9.0f} events/s  "
                f"({loop / cpu:.3f} of the orjson loop)  "
                f"peak RSS {rss / 1024:6.0f} MiB  | {summary}"
            )
    print()
    med = {m: statistics.median(w for w, _ in r) for m, r in results.items()}
    print(f"bare orjson.loads loop  : median {lines / statistics.median(loops):,.0f} lines/s")
    for mode, runs in results.items():
        print(
            f"relsec replay {mode:10s}: median {med[mode]:.1f} s CPU = "
            f"{lines / med[mode]:,.0f} events/s, "
            f"median ratio to the orjson loop {statistics.median(ratios[mode]):.3f}, "
            f"peak RSS {max(r for _, r in runs) / 1024:.0f} MiB"
        )
    per_run = [a_w / s_w for (a_w, _), (s_w, _) in zip(
        results["as-arrived"], results["sorted"], strict=True)]
    print(f"as-arrived / sorted CPU time: median {statistics.median(per_run):.2f}x (per run)")
    if a.cli_only:
        return 0

    events = [parse_event(orjson.loads(line)) for line in path.open("rb")]
    sorted_events = sorted({e.event_id: e for e in reversed(events)}.values(), key=order_key)
    sorted_times, arrived_times = [], []
    engine = None
    for _ in range(a.runs):
        # As `relsec replay` runs them: sorted input in-order, arrivals with the lateness log.
        sorted_times.append(engine_only(sorted_events, EngineConfig(in_order=True))[0])
        t, engine = engine_only(events, EngineConfig(allowed_lateness_ms=24 * 3_600_000))
        arrived_times.append(t)
    s_us = statistics.median(sorted_times) / len(events) * 1e6
    a_us = statistics.median(arrived_times) / len(events) * 1e6
    print(f"engine only, sorted    : {s_us:.2f} µs/event = {1e6 / s_us:,.0f} events/s")
    print(
        f"engine only, as-arrived: {a_us:.2f} µs/event = {1e6 / a_us:,.0f} events/s "
        f"({a_us / s_us:.2f}x sorted)"
    )
    assert engine is not None
    per_pair, pairs = state_per_service_env(engine)
    print(
        f"state after pruning: {per_pair:,.0f} bytes per active (service, environment) "
        f"over {pairs} pairs (serialized, lateness log included)"
    )
    if not a.file:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
