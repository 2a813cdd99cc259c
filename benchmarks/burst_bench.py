"""Scanner-burst benchmark: `relsec replay --as-arrived` against sorted replay of one file.

    python benchmarks/burst_bench.py --sizes 1000 5000 20000 --runs 3

Each file is the shape of a scanner report landing on a running release: one deploy of
``checkout`` 1.0.0, then N ``security_flag`` raises on (checkout, 1.0.0), all at one
instant, with hashed event ids (so the file order is not the order-key order: each
arrival lands inside the lateness log). Every raise fires
``flag-raised-on-running-release``, so the output is N alerts in both modes.

Each mode runs in a fresh process (`relsec replay` end to end: read, parse, engine,
alert output to /dev/null). Prints the wall time of every run, the median of each mode
and the as-arrived / sorted ratio of each run (taken within one run, so machine load
hits both alike). ``--deploys-after`` adds deploys of the flagged release after the
burst (each one builds an alert over all N flags: the evidence cap's case).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from agents.model.timefmt import format_rfc3339_ms, parse_rfc3339_ms

DEPLOY_AT = parse_rfc3339_ms("2026-03-04T09:00:00Z")
SCAN_AT = DEPLOY_AT + 3_600_000


def burst_lines(findings: int, deploys_after: int = 0) -> list[bytes]:
    """The burst file's lines, in arrival order."""
    lines = [
        orjson.dumps({
            "type": "deploy", "event_id": "deploy-1", "occurred_at": format_rfc3339_ms(DEPLOY_AT),
            "source": "argocd", "service": "checkout", "environment": "production",
            "release": "1.0.0", "previous_release": None, "action": "deploy",
        })
    ]
    for n in range(findings):
        event_id = hashlib.sha256(f"finding-{n}".encode()).hexdigest()[:24]
        lines.append(orjson.dumps({
            "type": "security_flag", "event_id": event_id,
            "occurred_at": format_rfc3339_ms(SCAN_AT), "source": "trivy",
            "service": "checkout", "flag_id": f"CVE-2026-{n:05d}", "release": "1.0.0",
            "status": "raised", "severity": ("critical", "high", "medium", "low")[n % 4],
            "vulnerabilities": [f"CVE-2026-{n:05d}"], "title": "a finding", "fixed_in": None,
        }))
    for n in range(deploys_after):
        lines.append(orjson.dumps({
            "type": "deploy", "event_id": f"redeploy-{n}",
            "occurred_at": format_rfc3339_ms(SCAN_AT + (n + 1) * 60_000), "source": "argocd",
            "service": "checkout", "environment": "production", "release": "1.0.0",
            "previous_release": "1.0.0", "action": "deploy",
        }))
    return lines


def run_replay(path: Path, as_arrived: bool) -> tuple[float, str]:
    """Wall seconds and the summary line of one `relsec replay` process."""
    cmd = [sys.executable, "-m", "streams.cli", "replay", str(path)]
    if as_arrived:
        cmd.append("--as-arrived")
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    wall = time.perf_counter() - start
    return wall, proc.stderr.decode().strip().splitlines()[-1]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--deploys-after", type=int, default=0)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="relsec-burst-"))
    for size in a.sizes:
        path = tmp / f"burst-{size}.jsonl"
        path.write_bytes(b"\n".join(burst_lines(size, a.deploys_after)) + b"\n")
        walls: dict[str, list[float]] = {"sorted": [], "as-arrived": []}
        ratios: list[float] = []
        for run in range(a.runs):
            for mode in ("sorted", "as-arrived"):
                wall, summary = run_replay(path, mode == "as-arrived")
                walls[mode].append(wall)
                print(f"{size:6d} run {run + 1} {mode:10s} {wall:7.2f} s | {summary}", flush=True)
            ratios.append(walls["as-arrived"][-1] / walls["sorted"][-1])
        med = {m: statistics.median(w) for m, w in walls.items()}
        print(
            f"{size:6d} findings: sorted median {med['sorted']:.2f} s, as-arrived median "
            f"{med['as-arrived']:.2f} s, ratio per run "
            f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f}x)",
            flush=True,
        )
        path.unlink()
    tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
