"""A large fuzz campaign, outside the test suite: ``python -m tests.fuzz.campaign``.

Defaults: 60 000 valid lines (a synthetic stream of 200 services with a 300-finding
scanner report) mixed with 36 000 hostile lines, through ``relsec replay`` in both
modes, each checked against the valid lines alone (``check_mixed_run``); then 24 000
mutated tool payloads through the adapters, and a hostile value at every leaf of every
payload. Prints the figures (docs/performance.md has a run) and exits 1 when anything
crashed other than the crashes already reported (``KNOWN_CRASHES``).
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time

import orjson

from streams.ingest import IngestOptions

from .hostile import RandomChooser, json_paths, mutate_payload, set_at
from .payloads import RECEIVED_MS, Crash, call_adapter, load_payloads, options_for
from .replay_harness import MODES, baseline_run, check_mixed_run, valid_events
from .test_fuzz_adapters import KNOWN_CRASHES, SWEEP_VALUES


def lines_campaign(args: argparse.Namespace) -> int:
    valid = valid_events(events=args.valid - 300, services=200, seed=args.seed)
    failures = 0
    for mode in sorted(MODES):
        started = time.monotonic()
        base = baseline_run(valid, mode)
        chooser = RandomChooser(random.Random(f"{args.seed}/{mode}"), args.max_string)
        try:
            run = check_mixed_run(chooser, valid, base, mode, args.hostile)
        except Exception as exc:  # a crash or a broken guarantee: report, go on
            failures += 1
            print(f"[{mode}] FAILED: {type(exc).__name__}: {str(exc)[:2000]}")
            continue
        elapsed = time.monotonic() - started
        c = run.counts
        print(
            f"[{mode}] lines read {c['read']} (valid {base.counts['read']}, hostile "
            f"{run.hostile}); applied {c['applied']}, duplicates {c['duplicates']}, "
            f"dead-lettered {c['dead_lettered']} (invalid {c['invalid']}, late {c['late']}, "
            f"future {c['future']}); read = applied + duplicates + dead_lettered: "
            f"{c['read'] == c['applied'] + c['duplicates'] + c['dead_lettered']}; "
            f"every hostile line dead-lettered with its line, reason and bytes: True; "
            f"alerts {c['firing']} firing / {c['retracted']} retracted, identical to the "
            f"valid lines alone: True; crashes 0; {elapsed:.1f} s for both runs"
        )
        print(f"[{mode}]   by mutation: {dict(sorted(run.by_mutation.items()))}")
        print(f"[{mode}]   by reason:   {dict(sorted(run.by_reason.items()))}")
    return failures


def payload_campaign(args: argparse.Namespace) -> int:
    payloads = load_payloads()
    rng = random.Random(f"{args.seed}/payloads")
    chooser = RandomChooser(rng, max_string=70_000)
    crashes: collections.Counter[tuple[str, str, str]] = collections.Counter()
    by_pass: collections.Counter[str] = collections.Counter()
    example: dict[tuple[str, str, str], str] = {}
    per_source: collections.Counter[str] = collections.Counter()
    started = time.monotonic()

    def record(crash: Crash | None, where: str, phase: str) -> None:
        if crash is not None:
            crashes[crash.signature] += 1
            by_pass[phase] += 1
            example.setdefault(crash.signature, f"{crash.exception} <- {where}")

    for _ in range(args.payloads):
        payload = chooser.pick(payloads)
        mutated = mutate_payload(chooser, payload.value)
        options = options_for(chooser.integer(0, 2))
        if payload.source in ("trivy", "grype", "dependency-track") and rng.random() < 0.25:
            options = IngestOptions(
                received_at_ms=RECEIVED_MS, previous=mutate_payload(chooser, payload.value)
            )
        per_source[payload.source] += 1
        record(call_adapter(payload.source, mutated, options), payload.name, "mutated")
    mutated_s = time.monotonic() - started
    sweep = 0
    for payload in payloads:
        text = orjson.dumps(payload.value)
        for path in [p for p in json_paths(payload.value) if p]:
            for value in SWEEP_VALUES:
                for choice in (0, 2):
                    sweep += 1
                    crash = call_adapter(
                        payload.source, set_at(orjson.loads(text), path, value),
                        options_for(choice),
                    )
                    record(crash, f"{payload.name}: {path} = {str(value)[:40]!r}", "sweep")
    total_s = time.monotonic() - started
    print(
        f"[payloads] {args.payloads} mutated payloads from {len(payloads)} files "
        f"({dict(sorted(per_source.items()))}) in {mutated_s:.1f} s; leaf sweep "
        f"{sweep} calls; {total_s:.1f} s in all; crashes: {by_pass['mutated']} of the "
        f"mutated payloads, {by_pass['sweep']} in the sweep"
    )
    unknown = 0
    for signature, count in crashes.most_common():
        known = signature in KNOWN_CRASHES
        unknown += 0 if known else count
        print(f"[payloads]   {'known' if known else 'NEW'} crash x{count}: {signature}")
        print(f"[payloads]     e.g. {example[signature][:300]}")
    if not crashes:
        print("[payloads]   crashes: 0")
    return unknown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--valid", type=int, default=60_000)
    parser.add_argument("--hostile", type=int, default=36_000)
    parser.add_argument("--payloads", type=int, default=24_000)
    parser.add_argument("--max-string", type=int, default=600_000)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args(argv)
    started = time.monotonic()
    failures = lines_campaign(args) + payload_campaign(args)
    print(f"campaign: {time.monotonic() - started:.1f} s, "
          f"{'no unexpected crash' if not failures else f'{failures} FAILURES'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
