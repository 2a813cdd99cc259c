"""Write a synthetic JSONL event stream (arrival order) for benchmarks and tests.

python benchmarks/generate.py --events 1000000 --services 10000 -o /tmp/events.jsonl
"""

from __future__ import annotations

import argparse
import sys

import orjson

from streams.synthetic import SyntheticSpec, generate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--services", type=int, default=1_000)
    p.add_argument("--duplicate-share", type=float, default=0.02)
    p.add_argument("--out-of-order-share", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("-o", "--output", default="-")
    a = p.parse_args()
    spec = SyntheticSpec(
        services=a.services,
        events=a.events,
        duplicate_share=a.duplicate_share,
        out_of_order_share=a.out_of_order_share,
        seed=a.seed,
    )
    out = sys.stdout.buffer if a.output == "-" else open(a.output, "wb")  # noqa: SIM115
    with out:
        for event in generate(spec):
            out.write(orjson.dumps(event))
            out.write(b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
