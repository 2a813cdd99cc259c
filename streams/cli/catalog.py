"""``relsec catalog check PATH…``: what a service catalog resolves, and what is wrong with it.

Prints, for every component, the service name and each identifier it claims
(grouped by what they resolve), the environments its deploy targets stand for,
then the warnings (annotations relsec cannot use) and the problems (malformed
documents, conflicts naming both components). Exit status 0 when the catalog is
usable, 1 when it has problems. ``--json`` prints one JSON object instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Final

import orjson

from streams.catalog import CATALOG_ENV, CatalogReport, catalog_paths, check_catalog
from streams.catalog.entities import KIND_LABELS, Component
from streams.settings import BOOLEAN, TEXT, Setting, add_flags, from_env

CATALOG: Final = Setting(
    "catalog",
    TEXT,
    None,
    "Backstage catalog entity file or folder (*.yaml, *.yml) that resolves services and "
    f"environments (repeatable; the variable separates paths by {os.pathsep!r}); see "
    "docs/ingest.md",
    env=CATALOG_ENV,
    metavar="PATH",
    repeat=True,
)
CHECK_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting("json", BOOLEAN, False, "print one JSON object"),
)

COMMANDS: Final = {"catalog check": CHECK_SETTINGS}
"""``relsec catalog check`` reads :data:`CATALOG`'s variable when no PATH is given."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    catalog = sub.add_parser(
        "catalog",
        help="the service catalog (Backstage entity files) that resolves tool names",
        description="Work with the service catalog relsec resolves tool names through "
        "(SPEC §8; docs/ingest.md lists the annotations).",
    )
    csub = catalog.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    check = csub.add_parser(
        "check",
        help="print what every component resolves, and every problem",
        description="Read Backstage catalog entity files (files or folders of *.yaml / *.yml) "
        "and print what each Component resolves, the warnings and the problems (malformed "
        f"documents, conflicts). Without PATH, ${CATALOG_ENV} is read. Exit 1 on problems.",
    )
    check.add_argument("paths", nargs="*", metavar="PATH", help="catalog files or folders")
    add_flags(check, CHECK_SETTINGS)
    check.set_defaults(func=run_check, settings=CHECK_SETTINGS)


def _grouped(component: Component) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for claim in component.claims:
        out.setdefault(KIND_LABELS[claim.kind], []).append(claim.shown)
    return out


def _as_json(report: CatalogReport) -> dict[str, Any]:
    components = [
        {
            "service": c.name,
            "file": c.file,
            "document": c.document,
            "line": c.line,
            "resolves": _grouped(c),
            "environments": dict(c.environment_targets),
        }
        for c in (report.catalog.components if report.catalog else ())
    ]
    return {
        "ok": report.ok,
        "files": report.read.files,
        "components": components,
        "ignored": report.read.ignored,
        "warnings": report.read.warnings,
        "problems": report.problems,
    }


def run_check(args: argparse.Namespace) -> int:
    paths = catalog_paths(args.paths or from_env(CATALOG), {})
    if not paths:
        print(f"relsec catalog check: give PATH or set ${CATALOG_ENV}", file=sys.stderr)
        return 2
    report = check_catalog(paths)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(_as_json(report), option=orjson.OPT_INDENT_2))
        sys.stdout.buffer.write(b"\n")
        return 0 if report.ok else 1
    out = sys.stdout
    components = report.catalog.components if report.catalog else ()
    for c in components:
        print(f"{c.name}    ({c.where})", file=out)
        for label, values in _grouped(c).items():
            print(f"  {label}: {', '.join(values)}", file=out)
        if c.environment_targets:
            pairs = ", ".join(f"{t} -> {e}" for t, e in c.environment_targets)
            print(f"  environments: {pairs}", file=out)
    ignored = ", ".join(f"{n} {kind}" for kind, n in sorted(report.read.ignored.items()))
    print(
        f"{len(components)} component(s) in {len(report.read.files)} file(s)"
        + (f"; ignored: {ignored}" if ignored else ""),
        file=out,
    )
    for warning in report.read.warnings:
        print(f"warning: {warning}", file=out)
    for problem in report.problems:
        print(f"problem: {problem}", file=out)
    if report.problems:
        print(f"{len(report.problems)} problem(s): the catalog is not usable", file=out)
        return 1
    return 0
