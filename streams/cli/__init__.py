"""The ``relsec`` console command: one argparse tree, a module per group of subcommands.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)`` which adds
its subcommands with ``set_defaults(func=handler, settings=DECLARATIONS)``, and
``COMMANDS``, each command's declarations (:class:`streams.settings.Setting`: the
flags are built from them, ``relsec settings`` lists them). Before a handler runs,
:func:`main` resolves the command's declarations (flag, else ``RELSEC_*`` variable,
else default; checked) onto the parsed arguments; the handler takes them and
returns the exit status. Heavy imports (Faust, confluent-kafka)
happen inside handlers so ``relsec --help`` stays fast, and :func:`main` registers only
the module of the command asked for (:data:`COMMAND_OWNERS`): ``relsec replay`` does not
import the webhook gateway (aiohttp, an SSL context), which was a sixth of a
100 000-event replay.
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
    "streams.cli.settings",
)

COMMAND_OWNERS = {
    "replay": "streams.cli.replay",
    "worker": "streams.cli.pipeline",
    "publish": "streams.cli.pipeline",
    "alerts": "streams.cli.pipeline",
    "demo": "streams.cli.pipeline",
    "notify": "streams.cli.notify",
    "ingest": "streams.cli.ingest",
    "catalog": "streams.cli.catalog",
    "kafka": "streams.cli.kafka",
    "topics": "streams.cli.kafka",
    "api": "streams.cli.api",
    "check": "streams.cli.api",
    "settings": "streams.cli.settings",
}
"""Each top-level command and the module of :data:`COMMAND_MODULES` that registers it
(a test holds the two together)."""


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The argument parser of the commands that ``modules`` register (all by default)."""
    parser = argparse.ArgumentParser(
        prog="relsec",
        description="Conflict alerts between SRE and security, from deploy, incident and "
        "security-finding streams.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    owner = COMMAND_OWNERS.get(arguments[0]) if arguments else None
    parser = build_parser((owner,) if owner is not None else COMMAND_MODULES)
    args = parser.parse_args(arguments)
    try:
        from streams.settings import apply

        apply(args, getattr(args, "settings", ()))
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
