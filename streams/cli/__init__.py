"""The ``relsec`` console command: one argparse tree, a module per group of subcommands.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)`` which adds
its subcommands with ``set_defaults(func=handler)``; a handler takes the parsed
arguments and returns the exit status. Heavy imports (Faust, confluent-kafka)
happen inside handlers so ``relsec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agents.errors import RelsecError

COMMAND_MODULES = (
    "streams.cli.replay",
    "streams.cli.pipeline",
    "streams.cli.notify",
    "streams.cli.ingest",
    "streams.cli.catalog",
    "streams.cli.kafka",
    "streams.cli.api",
)


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    """The options every Kafka-facing subcommand shares, from their declarations
    (:data:`streams.settings.KAFKA_FLAGS`: each says its default and its variable)."""
    from streams.settings import KAFKA_FLAGS, add_flags

    add_flags(parser, KAFKA_FLAGS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relsec",
        description="Conflict alerts between SRE and security, from deploy, incident and "
        "security-finding streams.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except RelsecError as exc:
        print(f"relsec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``relsec replay … | head``): not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
