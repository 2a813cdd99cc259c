"""``relsec settings``: every declared setting of every command, as the table in docs/settings.md.

Each command module of :data:`streams.cli.COMMAND_MODULES` has ``COMMANDS``, the
declarations (:class:`streams.settings.Setting`) of each of its commands; the Kafka
connection's (:data:`streams.settings.CONNECTION`, :data:`streams.settings.SECURITY`)
apply to every command that reaches Kafka, and the local Kafka's environment
(:data:`streams.devkafka.settings.DEVKAFKA_ENVIRONMENT`) to the development tool.
:func:`settings_table` renders them all: flag, environment variable, default,
meaning. ``docs/settings.md`` is its output (``relsec settings > docs/settings.md``),
and a test keeps the two equal.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Final

from streams.devkafka.settings import DEVKAFKA_ENVIRONMENT
from streams.settings import BUILD_ENVIRONMENT, CONNECTION, SECURITY, Setting

CONNECTION_TITLE: Final = "Kafka connection (every command that reaches Kafka)"
DEVKAFKA_TITLE: Final = "Local Apache Kafka (`relsec kafka up`, `relsec demo`, the test suite)"


def command_settings() -> dict[str, tuple[Setting[Any], ...]]:
    """Each command (``"api"``, ``"ingest serve"``) and its declarations, in CLI order."""
    from streams.cli import COMMAND_MODULES

    out: dict[str, tuple[Setting[Any], ...]] = {}
    for name in COMMAND_MODULES:
        if name != __name__:
            out.update(getattr(importlib.import_module(name), "COMMANDS", {}))
    return out


def every_declaration() -> list[Setting[Any]]:
    """Every declared setting once (one object may serve several commands)."""
    seen: dict[int, Setting[Any]] = {}
    for settings in (
        CONNECTION,
        SECURITY,
        DEVKAFKA_ENVIRONMENT,
        BUILD_ENVIRONMENT,
        *command_settings().values(),
    ):
        for setting in settings:
            seen.setdefault(id(setting), setting)
    return list(seen.values())


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "—"


def _rows(settings: tuple[Setting[Any], ...]) -> list[str]:
    rows = ["| Flag | Environment variable | Default | Meaning |", "|---|---|---|---|"]
    for s in settings:
        flag = f"`{s.option}`" if s.option else ""
        env = f"`{s.env}`" if s.env else ""
        secret = " Secret: never a flag, never printed." if s.secret else ""
        rows.append(
            f"| {_cell(flag)} | {_cell(env)} | {_cell(s.describe_default())} | "
            f"{_cell(s.help + '.' + secret)} |"
        )
    return rows


def settings_table() -> str:
    """docs/settings.md: every declaration, by command."""
    lines = [
        "# Settings",
        "",
        "Every setting of every `relsec` command, generated from their declarations",
        "(`streams.settings.Setting`) by `relsec settings > docs/settings.md`; a test keeps",
        "this file up to date. A flag wins over its environment variable, which wins over",
        "the default; an empty variable counts as unset. Durations are written `24h`, `90m`,",
        "`30s` or `250ms`.",
        "",
        f"## {CONNECTION_TITLE}",
        "",
        *_rows((*CONNECTION, *SECURITY)),
    ]
    for command, settings in command_settings().items():
        lines += ["", f"## relsec {command}", "", *_rows(settings)]
    lines += ["", f"## {DEVKAFKA_TITLE}", "", *_rows(DEVKAFKA_ENVIRONMENT)]
    lines += ["", "## The build of the engine", "", *_rows(BUILD_ENVIRONMENT)]
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "settings",
        help="print every setting of every command (flag, environment variable, default)",
        description="Print the settings table (Markdown) that docs/settings.md holds; with "
        "--check FILE, exit 1 when FILE differs from it.",
    )
    p.add_argument("--check", metavar="FILE", default=None, help="compare with FILE instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    table = settings_table()
    if args.check is None:
        sys.stdout.write(table)
        return 0
    try:
        current = Path(args.check).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"relsec settings: {args.check}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if current != table:
        print(
            f"relsec settings: {args.check} is out of date: relsec settings > {args.check}",
            file=sys.stderr,
        )
        return 1
    return 0
