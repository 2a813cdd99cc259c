"""Before/after `relsec replay` in one run: alternating fresh processes, CPU time.

    python benchmarks/replay_ab.py --file events-1m.jsonl --before /tmp/before --runs 3

``--before DIR`` is another checkout (``git archive`` of an older commit; compile its
``agents`` with ``mypyc`` for a compiled before), run with ``PYTHONPATH=DIR``; "after" is
this checkout. Each round runs a bare ``orjson.loads`` loop over the file (the
yardstick), then sorted before, sorted after, ``--as-arrived`` before, ``--as-arrived``
after (and with ``--workers N``, sorted after in N processes), and reports the user +
system time and the wall time of each child process; medians at the end. Alternating
puts both trees under the same load, on a machine where the load moves. CPU time is the
cost; wall time is what ``--workers`` buys, and on a shared machine it measures the
neighbours too.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
_CHILD = "import sys; from streams.cli import main; sys.exit(main(sys.argv[1:]))"
_ORJSON_LOOP = (
    "import sys, orjson\nloads = orjson.loads\n"
    "with open(sys.argv[1], 'rb') as f:\n    for line in f:\n        loads(line)\n"
)


def child_seconds(command: list[str], tree: Path) -> tuple[float, float]:
    """Run ``command`` from ``tree`` (on its ``PYTHONPATH``); its user + system seconds
    (its own processes' included) and its wall seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        command,
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--before", required=True, type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sorted-only", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=0, help="also time sorted replay --workers N (after)"
    )
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    modes = [[]] if args.sorted_only else [[], ["--as-arrived"]]
    cpu: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}

    def timed(key: str, command: list[str], tree: Path) -> None:
        seconds, elapsed = child_seconds(command, tree)
        cpu.setdefault(key, []).append(seconds)
        wall.setdefault(key, []).append(elapsed)
        print(f"{key}: {seconds:.1f} s CPU, {elapsed:.1f} s wall", flush=True)

    replay = [sys.executable, "-c", _CHILD, "replay", "--quiet"]
    for _ in range(args.runs):
        timed("orjson loop", [sys.executable, "-c", _ORJSON_LOOP, args.file], HERE)
        for mode in modes:
            for name, tree in trees.items():
                key = f"{name} {'as-arrived' if mode else 'sorted'}"
                timed(key, [*replay, *mode, args.file], tree)
        if args.workers:
            key = f"after sorted --workers {args.workers}"
            timed(key, [*replay, "--workers", str(args.workers), args.file], HERE)
    with open(args.file, "rb") as handle:
        lines = sum(1 for _ in handle)
    for key, seconds in cpu.items():
        median, median_wall = statistics.median(seconds), statistics.median(wall[key])
        print(
            f"{key:30s} median {median:7.1f} s CPU = {lines / median:9.0f}/s; "
            f"{median_wall:7.1f} s wall = {lines / median_wall:9.0f}/s"
        )
    for label in ("sorted", "as-arrived"):
        if f"before {label}" in cpu:
            pairs = zip(cpu[f"before {label}"], cpu[f"after {label}"], strict=True)
            ratios = [before / after for before, after in pairs]
            print(f"after/before {label}, CPU, per round: {[round(r, 2) for r in ratios]}")
    sharded = f"after sorted --workers {args.workers}"
    if sharded in wall:
        pairs = zip(wall["after sorted"], wall[sharded], strict=True)
        ratios = [one / many for one, many in pairs]
        print(f"wall, one process / {sharded}, per round: {[round(r, 2) for r in ratios]}")


if __name__ == "__main__":
    main()
