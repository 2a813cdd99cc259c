"""What order barriers cost `relsec publish`: a backfill published with and without them.

    python benchmarks/publish_bench.py --bootstrap 127.0.0.1:19092 [--events 30000] [--runs 5]

Publishes one synthetic stream (30 days of event time) alternately with the default
barriers (a flush per hour of event time at 24 h lateness) and with barriers made
rare (the step is 1/24 of the lateness, so a lateness of 10 000 h gives a step of
about 17 days), each run to fresh topics, and prints the median wall time of each and
their ratio. Only the publishing is timed: no worker runs. See docs/performance.md §6.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.model.events import parse_event
from streams.kafka.topics import create_topics
from streams.publish import publish_events
from streams.settings import Settings, Topics
from streams.synthetic import SyntheticSpec, generate

HOUR_MS = 3_600_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    events = [
        parse_event(e) for e in generate(SyntheticSpec(services=300, events=args.events, seed=5))
    ]
    times: dict[str, list[float]] = {"barriers": [], "rare barriers": []}
    counts: dict[str, int] = {}
    for _ in range(args.runs):
        for label, lateness_ms in (("barriers", 24 * HOUR_MS), ("rare barriers", 10_000 * HOUR_MS)):
            settings = Settings(
                bootstrap_servers=args.bootstrap,
                topics=Topics(f"pb-{uuid.uuid4().hex[:8]}."),
            )
            settings = replace(settings, allowed_lateness_ms=lateness_ms)
            create_topics(settings, partitions=6)
            started = time.perf_counter()
            report = publish_events(settings, events)
            times[label].append(time.perf_counter() - started)
            assert report.ok, report.failed[:3]
            counts[label] = report.barriers
    base = statistics.median(times["rare barriers"])
    for label, values in times.items():
        median = statistics.median(values)
        print(
            f"{label:14} {counts[label]:4d} barriers  median {median:.2f} s "
            f"({', '.join(f'{v:.2f}' for v in values)})  ratio {median / base:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
