"""What keeping the local Kafka's state private costs at ``relsec kafka up``.

``up`` on an existing cluster walks its state directory once (``tighten_tree``) and
checks the directories from the cache root down (``private_dirs``). This times both on
synthetic state trees shaped like a broker's: ``--partitions`` partition directories of
``--files`` files each (a segment, its indexes, a leader-epoch checkpoint), once as an
older relsec left them (0755/0644: everything changes) and then in the steady state
(already private: nothing changes), medians of ``--runs``.

Usage::

    python benchmarks/devkafka_private_bench.py --partitions 100 1000 5000 --runs 5
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.devkafka.files import private_dirs, tighten_tree


def build_state(root: Path, partitions: int, files: int) -> Path:
    state = root / "cache" / "run" / "bench"
    data = state / "node-0" / "data"
    for index in range(partitions):
        partition = data / f"topic-{index // 6}-{index % 6}"
        partition.mkdir(parents=True)
        for number in range(files):
            (partition / f"00000000000000000000.{number}").write_bytes(b"x")
    for path in [root / "cache", *(root / "cache").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return state


def time_ms(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("| partitions | entries | tighten, first up (ms) | tighten, steady (ms) | dirs (ms) |")
    print("|---|---|---|---|---|")
    for partitions in args.partitions:
        first, steady, dirs = [], [], []
        entries = 0
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as scratch:
                root = Path(scratch)
                state = build_state(root, partitions, args.files)
                cache = root / "cache"
                entries = sum(1 for _ in state.rglob("*"))
                first.append(time_ms(functools.partial(tighten_tree, state)))
                steady.append(time_ms(functools.partial(tighten_tree, state)))
                dirs.append(time_ms(functools.partial(private_dirs, state, top=cache)))
        print(
            f"| {partitions} | {entries} | {statistics.median(first):.1f} "
            f"| {statistics.median(steady):.1f} | {statistics.median(dirs):.2f} |"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
