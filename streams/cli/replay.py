"""``relsec replay FILE…``: run the rules over JSONL event files and print alert JSON lines."""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from agents.errors import ConfigError
from agents.model.alerts import Alert
from agents.model.timefmt import parse_duration_ms
from streams.replay import (
    DeadLetter,
    Replayer,
    make_engine,
    read_lines,
    replay_as_arrived,
    replay_sorted,
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="run the rules over JSONL event files (no Kafka), print alerts as JSON lines",
        description="Run the rules over JSONL event files and write alert JSON lines to stdout. "
        "The last line of stderr summarizes the counts.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="JSONL event files ('-' for stdin)")
    p.add_argument(
        "--as-arrived",
        action="store_true",
        help="process lines in file order as a stream would (alerts may be retracted, "
        "too-late events are dead-lettered); default: sorted by event time",
    )
    p.add_argument(
        "--allowed-lateness",
        default="24h",
        metavar="DURATION",
        help="how far behind the newest event of its service an event may arrive "
        "(with --as-arrived; default 24h)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when any line was dead-lettered")
    p.add_argument(
        "--dead-letters",
        metavar="FILE",
        default=None,
        help="also write each dead-lettered line, with its reason, as a JSON line to FILE",
    )
    p.add_argument("--quiet", action="store_true", help="do not report each bad line on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        lateness_ms = parse_duration_ms(args.allowed_lateness)
    except ValueError as exc:
        raise ConfigError(f"--allowed-lateness: {exc}") from None
    out = sys.stdout.buffer
    err = sys.stderr
    dl_out = open(args.dead_letters, "wb") if args.dead_letters else None  # noqa: SIM115

    def on_alert(alert: Alert) -> None:
        out.write(orjson.dumps(alert.to_dict()))
        out.write(b"\n")

    def on_dead_letter(dl: DeadLetter) -> None:
        if not args.quiet:
            print(f"relsec replay: {dl.message()}", file=err)
        if dl_out is not None:
            dl_out.write(orjson.dumps(dl.to_dict(wall_clock_ms())))
            dl_out.write(b"\n")

    replayer = Replayer(
        make_engine(args.as_arrived, lateness_ms), wall_clock_ms, on_alert, on_dead_letter
    )
    try:
        lines = read_lines(args.files)
        if args.as_arrived:
            report = replay_as_arrived(lines, replayer)
        else:
            report = replay_sorted(lines, replayer)
    finally:
        out.flush()
        if dl_out is not None:
            dl_out.close()
    print(report.summary_line(), file=err)
    if args.strict and report.dead_lettered:
        return 1
    return 0
