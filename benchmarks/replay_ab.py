"""Before/after `relsec replay` in one run: alternating fresh processes, CPU time.

    python benchmarks/replay_ab.py --file events-1m.jsonl --before /tmp/before --runs 3

``--before DIR`` is another checkout (``git archive`` of an older commit; compile its
``agents`` with ``mypyc`` for a compiled before), run with ``PYTHONPATH=DIR``; "after" is
this checkout. Each round runs a bare ``orjson.loads`` loop over the file (the
yardstick), then sorted before, sorted after, ``--as-arrived`` before, ``--as-arrived``
after, and reports the user + system time of each child process; medians at the end.
Alternating puts both trees under the same load, on a machine where the load moves.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
_CHILD = "import sys; from streams.cli import main; sys.exit(main(sys.argv[1:]))"
_ORJSON_LOOP = (
    "import sys, orjson\nloads = orjson.loads\n"
    "with open(sys.argv[1], 'rb') as f:\n    for line in f:\n        loads(line)\n"
)


def child_cpu_seconds(command: list[str], tree: Path) -> float:
    """Run ``command`` from ``tree`` (on its ``PYTHONPATH``); its user + system seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        command,
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--before", required=True, type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sorted-only", action="store_true")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    modes = [[]] if args.sorted_only else [[], ["--as-arrived"]]
    results: dict[str, list[float]] = {}
    for round_ in range(args.runs):
        loop = child_cpu_seconds([sys.executable, "-c", _ORJSON_LOOP, args.file], HERE)
        results.setdefault("orjson loop", []).append(loop)
        for mode in modes:
            for name, tree in trees.items():
                key = f"{name} {'as-arrived' if mode else 'sorted'}"
                command = [sys.executable, "-c", _CHILD, "replay", "--quiet", *mode, args.file]
                results.setdefault(key, []).append(child_cpu_seconds(command, tree))
                print(f"round {round_ + 1}: {key} {results[key][-1]:.1f} s CPU", flush=True)
    with open(args.file, "rb") as handle:
        lines = sum(1 for _ in handle)
    for key, seconds in results.items():
        median = statistics.median(seconds)
        print(f"{key:20s} median {median:7.1f} s CPU = {lines / median:9.0f}/s  {seconds}")
    for mode in ("sorted", "as-arrived"):
        if f"before {mode}" in results:
            pairs = zip(results[f"before {mode}"], results[f"after {mode}"], strict=True)
            ratios = [before / after for before, after in pairs]
            print(f"after/before {mode}, per round: {[round(r, 2) for r in ratios]}")


if __name__ == "__main__":
    main()
