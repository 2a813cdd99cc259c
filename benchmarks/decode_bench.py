"""Input decode benchmark: a record's bytes to a validated ``Event``, as the worker does it.

    python benchmarks/decode_bench.py --records 200000 --runs 5

For the same synthetic events written as JSON records and as Avro single-object records
(the default codec), in one process, records/s of:

* the decode ceiling: ``codec.decode_event`` alone (bytes to a dict, no validation);
* the path before: ``parse_event(codec.decode_event(raw, t), expected_type=t)``;
* the path now: ``decode_input_event(codec, raw, t)`` (JSON on the msgspec fast path).

CPU time; medians of ``--runs``; every ratio is taken within one run. ``RELSEC_PURE_PYTHON=1`` in
the environment runs the pure-Python model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import orjson

from agents.model._pure import loaded_builds
from agents.model.events import parse_event
from streams.codecs import SingleObjectCodec, decode_input_event
from streams.synthetic import SyntheticSpec, generate


def timed(work: Callable[[], object]) -> float:
    """CPU seconds of ``work`` (the machine is shared: wall time measures the neighbours)."""
    start = time.process_time()
    work()
    return time.process_time() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    codec = SingleObjectCodec()
    events = list(generate(SyntheticSpec(services=2_000, events=a.records)))
    formats = {
        "json": [(e["type"], orjson.dumps({k: v for k, v in e.items() if k != "type"}))
                 for e in events],
        "avro": [(e["type"], codec.encode_event(e)) for e in events],
    }
    builds = set(loaded_builds().values()) - {"pure"} or {"pure"}
    print(f"{len(events)} records, model build: {', '.join(sorted(builds))}")
    for name, records in formats.items():
        def ceiling(records: list[tuple[str, bytes]] = records) -> None:
            for kind, raw in records:
                codec.decode_event(raw, kind)

        def before(records: list[tuple[str, bytes]] = records) -> None:
            for kind, raw in records:
                parse_event(codec.decode_event(raw, kind), expected_type=kind)

        def now(records: list[tuple[str, bytes]] = records) -> None:
            for kind, raw in records:
                decode_input_event(codec, raw, kind)

        times: dict[str, list[float]] = {"ceiling": [], "before": [], "now": []}
        ratios: list[float] = []
        for _ in range(a.runs):
            for label, work in (("ceiling", ceiling), ("before", before), ("now", now)):
                times[label].append(timed(work))
            ratios.append(times["ceiling"][-1] / times["now"][-1])
        rates = {k: len(records) / statistics.median(v) for k, v in times.items()}
        print(
            f"{name}: decode only {rates['ceiling']:,.0f}/s, decode+validate before "
            f"{rates['before']:,.0f}/s, now {rates['now']:,.0f}/s "
            f"(median ratio to decode only {statistics.median(ratios):.2f}, "
            f"now/before {rates['now'] / rates['before']:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
