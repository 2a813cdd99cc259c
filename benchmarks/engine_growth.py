"""The engine's cost per event along a stream: does it grow as the state does?

    python benchmarks/engine_growth.py --file events-1m.jsonl --step 100000

Decodes every line first (timed apart), sorts by order key, then feeds the engine (as
sorted replay configures it) slice by slice and prints CPU µs per event, alerts per event
and the live/idle service counts for each slice.
"""

from __future__ import annotations

import argparse
import gc
import time

from agents.model.events import order_key
from agents.model.wire import event_from_json
from streams.replay import make_engine

NOW_MS = 4_000_000_000_000  # far after the synthetic events: nothing is "future"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--step", type=int, default=100_000)
    args = parser.parse_args()
    gc.disable()  # as replay runs (streams.replay.collector_paused)
    with open(args.file, "rb") as handle:
        lines = handle.read().splitlines()
    started = time.process_time()
    events = [e for e in map(event_from_json, lines) if e is not None]
    print(f"decode: {(time.process_time() - started) / len(lines) * 1e6:.1f} µs a line")
    events.sort(key=order_key)
    engine = make_engine(False, 24 * 3_600_000)
    for start in range(0, len(events), args.step):
        part = events[start : start + args.step]
        began, alerts = time.process_time(), 0
        for event in part:
            alerts += len(engine.process(event, NOW_MS).alerts)
        spent = time.process_time() - began
        print(
            f"{start // 1000}k: {spent / len(part) * 1e6:.1f} µs an event, "
            f"{alerts / len(part):.2f} alerts an event, "
            f"{len(engine.services)} live, {len(engine.idle)} idle services"
        )


if __name__ == "__main__":
    main()
