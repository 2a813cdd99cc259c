"""Memory of as-arrived replay over many services: peak RSS of one `relsec replay` process.

    python benchmarks/memory_bench.py --events 1000000 --services 100000

The synthetic stream (``streams/synthetic.py``) spreads the events over the services, so
most services are touched a few times and then sit idle: what an idle service costs is
what this measures. Prints the wall time, the peak RSS (``ru_maxrss`` of the replay
process) and the summary line of each run, and the peak RSS per service.
``--file`` reuses a generated events file.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from streams.synthetic import SyntheticSpec, generate

_CHILD = (
    "import resource, sys\n"
    "from streams.cli import main\n"
    "status = main(sys.argv[1:])\n"
    "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(status)\n"
)


def run_cli(path: Path, as_arrived: bool) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and the summary line of one `relsec replay` process."""
    cmd = [sys.executable, "-c", _CHILD, "replay", "--quiet", str(path)]
    if as_arrived:
        cmd.append("--as-arrived")
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    wall = time.perf_counter() - start
    lines = proc.stderr.decode().strip().splitlines()
    return wall, int(lines[-1].split()[1]), lines[-2]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--services", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--modes", nargs="+", default=["as-arrived"], choices=["as-arrived", "sorted"])
    p.add_argument("--file", default=None, help="reuse (or create) this events file")
    a = p.parse_args()
    path = Path(a.file) if a.file else Path(tempfile.mkdtemp(prefix="relsec-mem-")) / "ev.jsonl"
    if not path.exists():
        with path.open("wb") as out:
            for event in generate(SyntheticSpec(services=a.services, events=a.events)):
                out.write(orjson.dumps(event))
                out.write(b"\n")
    for mode in a.modes:
        peaks: list[int] = []
        for run in range(a.runs):
            wall, peak, summary = run_cli(path, mode == "as-arrived")
            peaks.append(peak)
            print(f"run {run + 1} {mode}: {wall:.1f} s, peak RSS {peak / 1024:.0f} MiB | {summary}",
                  flush=True)
        median = statistics.median(peaks)
        print(f"{mode}: median peak RSS {median / 1024:.0f} MiB = "
              f"{median * 1024 / a.services:,.0f} bytes per service", flush=True)
    if not a.file:
        path.unlink()
        path.parent.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
