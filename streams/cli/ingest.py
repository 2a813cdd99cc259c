"""``relsec ingest convert|publish|serve``: tool payloads in, relsec events out.

``convert`` prints the canonical events of one payload file as JSON lines,
``publish`` writes them to the input topics, ``serve`` runs the HTTP gateway
(:mod:`streams.ingest.gateway`). A payload that cannot be read exits with status 2
and a message naming the JSON path that was missing or wrong. Reasons a payload
gave no event (a pending deployment, a finding below the minimum severity) go to
stderr, one line each; the last stderr line of ``convert`` and ``publish`` sums up
(events, skipped reasons, service names the catalog did not resolve).

``--catalog PATH`` (repeatable; else ``$RELSEC_CATALOG``) resolves names through a
service catalog (SPEC §8, :mod:`streams.catalog`); ``--require-catalog`` withholds
the events of names it does not know.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any, Final

import orjson

from agents.errors import ConfigError
from agents.model.events import Event, parse_event
from agents.model.timefmt import TimestampError, parse_rfc3339_ms
from streams.catalog import CATALOG_ENV, Catalog, CatalogSource, catalog_paths, load_catalog
from streams.cli.catalog import CATALOG
from streams.ingest import SOURCES, convert, decode_payload
from streams.ingest.common import (
    DEFAULT_ENVIRONMENT,
    DEFAULT_MIN_SEVERITY,
    MIN_SEVERITY_CHOICES,
    Conversion,
    IngestOptions,
    Unresolved,
    parse_mapping,
)
from streams.ingest.errors import AdapterError
from streams.ingest.gateway import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_REPORT_BODY_BYTES,
    DEFAULT_WEBHOOK_BODY_BYTES,
    REPORT_SOURCES,
    GatewayLimits,
)
from streams.ingest.signatures import COMMON_TOKEN_ENV, HMAC_SOURCES, token_env
from streams.settings import (
    BOOLEAN,
    INTEGER,
    KAFKA_FLAGS,
    NUMBER,
    TEXT,
    Kind,
    Setting,
    add_flags,
    at_least,
    not_empty,
)

PAYLOAD_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting("service", TEXT, None, "service name for every event (overrides the mapping)"),
    Setting(
        "release", TEXT, None, "release for every event (for incidents: the suspected release)"
    ),
    Setting("environment", TEXT, None, "environment for deploys and incidents"),
    Setting(
        "previous",
        TEXT,
        None,
        "the previous report of the same scanner for the same release: findings it had that "
        "the new report lacks are cleared (trivy, grype)",
        metavar="FILE",
    ),
    Setting(
        "github_event",
        TEXT,
        None,
        "GitHub event name (X-GitHub-Event header); read from the payload's shape if absent",
        metavar="NAME",
    ),
    Setting(
        "received_at",
        TEXT,
        None,
        "time used when a payload carries none",
        metavar="RFC3339",
        default_text="now",
    ),
)
"""The options of one payload (``convert``, ``publish``)."""


def _conversion_settings(*, per_source: bool) -> tuple[Setting[Any], ...]:
    return (
        CATALOG,
        Setting(
            "require_catalog",
            BOOLEAN,
            False,
            "produce no event for a service the catalog does not know (the reason is printed)",
        ),
        Setting(
            "min_severity",
            TEXT,
            DEFAULT_MIN_SEVERITY,
            "lowest scanner severity that raises a flag ('unknown' also flags "
            "unknown/negligible findings, as low)",
            choices=MIN_SEVERITY_CHOICES,
        ),
        Setting(
            "default_environment",
            TEXT,
            DEFAULT_ENVIRONMENT,
            "environment of incidents whose tool names none",
            check=not_empty,
        ),
        Setting(
            "map",
            TEXT,
            None,
            "where a name comes from: SPEC is a $.json.path or a named value of the adapter "
            "(several, comma-separated, tried in order; repeatable); see docs/ingest.md",
            metavar="SOURCE:FIELD=SPEC" if per_source else "FIELD=SPEC",
            repeat=True,
        ),
    )


CONVERSION_SETTINGS: Final = _conversion_settings(per_source=False)
SERVE_CONVERSION_SETTINGS: Final = _conversion_settings(per_source=True)


def _limit(flag: str, name: str, kind: Kind[Any], what: str) -> Setting[Any]:
    defaults = GatewayLimits()
    return Setting(
        f"gateway_{name}",
        kind,
        getattr(defaults, name),
        what,
        flag=flag,
        check=at_least(1 if kind is INTEGER else 0),
        metavar="SECONDS" if kind is NUMBER else ("BYTES" if name.endswith("bytes") else "N"),
    )


GATEWAY_LIMITS: Final[tuple[Setting[Any], ...]] = (
    Setting(
        "max_body_bytes",
        TEXT,
        None,
        "largest request body, for every source or one (repeatable)",
        metavar="[SOURCE=]BYTES",
        repeat=True,
        default_text=f"{DEFAULT_REPORT_BODY_BYTES} for {', '.join(REPORT_SOURCES)}, "
        f"{DEFAULT_WEBHOOK_BODY_BYTES} for the others",
    ),
    _limit("--max-connections", "max_connections", INTEGER, "open connections"),
    _limit("--max-in-flight", "max_in_flight", INTEGER, "ingest requests handled at once"),
    _limit("--buffered-bytes", "buffered_bytes", INTEGER, "bytes of request bodies held at once"),
    _limit(
        "--unauthenticated-bytes",
        "unauthenticated_bytes",
        INTEGER,
        "bytes of bodies held before their signature is checked",
    ),
    _limit("--header-timeout", "header_timeout_s", NUMBER, "seconds to send a request head"),
    _limit("--body-timeout", "body_timeout_s", NUMBER, "seconds to send a request body"),
    _limit(
        "--idle-timeout", "idle_timeout_s", NUMBER, "seconds an idle keep-alive connection lives"
    ),
    _limit("--conversion-threads", "conversion_threads", INTEGER, "threads converting payloads"),
    _limit(
        "--conversion-timeout",
        "conversion_timeout_s",
        NUMBER,
        "seconds a conversion may take before 503",
    ),
)
"""The gateway's bounds (:class:`GatewayLimits`, whose defaults these are)."""

GATEWAY_SECRETS: Final[tuple[Setting[Any], ...]] = (
    tuple(
        Setting(
            f"secret_{source}",
            TEXT,
            None,
            f"the {source} webhook secret ({header}, HMAC)",
            env=variable,
            flag=None,
            secret=True,
        )
        for source, (variable, header) in HMAC_SOURCES.items()
    )
    + tuple(
        Setting(
            f"token_{source.replace('-', '_')}",
            TEXT,
            None,
            f"the {source} shared-secret token",
            env=token_env(source),
            flag=None,
            secret=True,
        )
        for source in SOURCES
    )
    + (
        Setting(
            "token",
            TEXT,
            None,
            "the shared-secret token of every source without its own",
            env=COMMON_TOKEN_ENV,
            flag=None,
            secret=True,
        ),
    )
)
"""The gateway's secrets, environment only; :class:`streams.ingest.signatures.Secrets`
reads them (a source without one rejects every request)."""

SERVE_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting("host", TEXT, DEFAULT_HOST, "address to bind", check=not_empty),
    Setting("port", INTEGER, DEFAULT_PORT, "port", check=at_least(0)),
    *GATEWAY_LIMITS,
    *SERVE_CONVERSION_SETTINGS,
    *KAFKA_FLAGS,
)
CONVERT_SETTINGS: Final[tuple[Setting[Any], ...]] = (*PAYLOAD_SETTINGS, *CONVERSION_SETTINGS)
PUBLISH_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    *PAYLOAD_SETTINGS,
    *CONVERSION_SETTINGS,
    *KAFKA_FLAGS,
)

COMMANDS: Final = {
    "ingest convert": CONVERT_SETTINGS,
    "ingest publish": PUBLISH_SETTINGS,
    "ingest serve": (*SERVE_SETTINGS, *GATEWAY_SECRETS),
}


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source", choices=SOURCES, metavar="SOURCE", help=f"one of: {', '.join(SOURCES)}"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = sub.add_parser(
        "ingest",
        help="turn tool payloads (GitHub, Argo CD, Flux, CDEvents, PagerDuty, Opsgenie, Trivy, "
        "Grype, Dependency-Track) into relsec events",
        description="Convert, publish or receive (HTTP gateway) the payloads of deploy, incident "
        "and scanner tools as relsec events.",
    )
    isub = ingest.add_subparsers(dest="ingest_command", metavar="ACTION", required=True)

    conv = isub.add_parser(
        "convert",
        help="print the events of one payload file as JSON lines",
        description="Print the canonical SPEC events of one payload as JSON lines on stdout; "
        "reasons a payload gave no event go to stderr. Exit 2 when the payload cannot be read.",
    )
    _add_source(conv)
    add_flags(conv, CONVERT_SETTINGS)
    conv.add_argument("file", metavar="FILE", help="payload file ('-' for stdin)")
    conv.set_defaults(func=run_convert, settings=CONVERT_SETTINGS)

    pub = isub.add_parser(
        "publish",
        help="publish the events of payload files to the input topics",
        description="Convert payload files like 'convert' and publish the events to the input "
        "topics (keyed by service).",
    )
    _add_source(pub)
    add_flags(pub, PAYLOAD_SETTINGS)
    add_flags(pub, CONVERSION_SETTINGS)
    pub.add_argument("files", nargs="+", metavar="FILE", help="payload files ('-' for stdin)")
    add_flags(pub, KAFKA_FLAGS)
    pub.set_defaults(func=run_publish, settings=PUBLISH_SETTINGS)

    srv = isub.add_parser(
        "serve",
        help="HTTP gateway: POST /v1/ingest/{source} -> input topics",
        description="Run the webhook gateway. Secrets come from the environment: "
        "RELSEC_INGEST_GITHUB_SECRET, RELSEC_INGEST_PAGERDUTY_SECRET, RELSEC_INGEST_FLUX_SECRET "
        "(HMAC), RELSEC_INGEST_<SOURCE>_TOKEN or RELSEC_INGEST_TOKEN (shared-secret header). "
        "A source without a secret rejects every request.",
    )
    add_flags(srv, SERVE_SETTINGS)
    srv.set_defaults(func=run_serve, settings=SERVE_SETTINGS)


def _read(source: str, name: str) -> Any:
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise AdapterError(source, "$", f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        return decode_payload(source, raw)
    except AdapterError as exc:
        raise AdapterError(source, exc.path, f"{name}: {exc.detail}") from None


def _catalog(args: argparse.Namespace) -> Catalog | None:
    """The catalog of ``--catalog`` / ``$RELSEC_CATALOG``, or None; CatalogError when unusable."""
    paths = catalog_paths(args.catalog, {})
    if not paths:
        if args.require_catalog:
            raise ConfigError(
                f"--require-catalog needs a catalog: pass --catalog PATH or set ${CATALOG_ENV}"
            )
        return None
    return load_catalog(paths)


def _options(args: argparse.Namespace) -> IngestOptions:
    received_ms = time.time_ns() // 1_000_000
    if args.received_at:
        try:
            received_ms = parse_rfc3339_ms(args.received_at)
        except TimestampError as exc:
            raise ConfigError(f"--received-at: {exc}") from None
    previous = _read(args.source, args.previous) if args.previous else None
    return IngestOptions(
        service=args.service,
        release=args.release,
        environment=args.environment,
        min_severity=args.min_severity,
        mapping=parse_mapping(args.map),
        event_name=args.github_event,
        previous=previous,
        received_at_ms=received_ms,
        default_environment=args.default_environment,
        catalog=_catalog(args),
        require_catalog=args.require_catalog,
    )


def _convert_file(args: argparse.Namespace, name: str, options: IngestOptions) -> Conversion:
    conversion = convert(args.source, _read(args.source, name), options)
    for reason in conversion.skipped:
        print(f"relsec ingest: {name}: {reason}", file=sys.stderr)
    return conversion


def summary(events: int, skipped: int, unresolved: list[Unresolved], catalog: bool) -> str:
    """The last stderr line of ``convert`` / ``publish``."""
    text = f"relsec ingest: {events} event(s), {skipped} skipped reason(s)"
    if not catalog:
        return text + ", no catalog"
    names = list(dict.fromkeys(u.service for u in unresolved))
    text += f", {len(names)} unresolved service name(s)"
    if names:
        shown = ", ".join(repr(n) for n in names[:10])
        text += f": {shown}" + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return text


def run_convert(args: argparse.Namespace) -> int:
    options = _options(args)
    conversion = _convert_file(args, args.file, options)
    out = sys.stdout.buffer
    for event in conversion.events:
        out.write(orjson.dumps(event))
        out.write(b"\n")
    out.flush()
    print(
        summary(
            len(conversion.events),
            len(conversion.skipped),
            list(conversion.unresolved),
            options.catalog is not None,
        ),
        file=sys.stderr,
    )
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from streams.ingest.gateway import _report_failures
    from streams.publish import publish_events
    from streams.settings import Settings

    options = _options(args)
    events: list[Event] = []
    skipped = 0
    unresolved: list[Unresolved] = []
    for name in args.files:
        conversion = _convert_file(args, name, options)
        events.extend(parse_event(e) for e in conversion.events)
        skipped += len(conversion.skipped)
        unresolved.extend(conversion.unresolved)
    settings = Settings.from_args(args)
    line = summary(len(events), skipped, unresolved, options.catalog is not None)
    if not events:
        print("relsec ingest: no events to publish", file=sys.stderr)
        print(line, file=sys.stderr)
        return 0
    report = publish_events(settings, events)
    failures = _report_failures(report)
    if failures:
        for failure in failures[:20]:
            print(f"relsec ingest: publish failed: {failure}", file=sys.stderr)
        print(line, file=sys.stderr)
        return 1
    print(
        f"relsec ingest: published {len(events)} event(s) under prefix {settings.topics.prefix!r}",
        file=sys.stderr,
    )
    print(line, file=sys.stderr)
    return 0


def _per_source_mappings(items: list[str]) -> dict[str, tuple[tuple[str, str], ...]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for item in items:
        source, sep, rest = item.partition(":")
        if not sep or source not in SOURCES:
            raise ConfigError(
                f"--map {item!r}: expected SOURCE:FIELD=SPEC, SOURCE one of {', '.join(SOURCES)}"
            )
        out.setdefault(source, []).extend(parse_mapping([rest]))
    return {k: tuple(v) for k, v in out.items()}


def run_serve(args: argparse.Namespace) -> int:
    from streams.ingest.gateway import GatewayConfig, ProducerPublisher, limits_from_args, serve
    from streams.ingest.signatures import Secrets
    from streams.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings.from_args(args)
    secrets = Secrets.from_env(SOURCES)
    paths = catalog_paths(args.catalog, {})
    if args.require_catalog and not paths:
        raise ConfigError(
            f"--require-catalog needs a catalog: pass --catalog PATH or set ${CATALOG_ENV}"
        )
    catalog = CatalogSource(paths) if paths else None
    if catalog is not None:
        catalog.start_watching()
    config = GatewayConfig(
        secrets=secrets,
        limits=limits_from_args(args),
        min_severity=args.min_severity,
        default_environment=args.default_environment,
        mappings=_per_source_mappings(args.map),
        catalog=catalog,
        require_catalog=args.require_catalog,
    )
    configured = secrets.configured()
    missing = [s for s in SOURCES if s not in configured]

    def ready(host: str, port: int) -> None:
        print(
            f"relsec ingest: listening on http://{host}:{port}/v1/ingest/{{source}}",
            file=sys.stderr,
            flush=True,
        )
        for source, how in sorted(configured.items()):
            print(f"relsec ingest:   {source}: {how}", file=sys.stderr)
        if catalog is not None:
            print(
                f"relsec ingest:   catalog: {len(catalog.catalog)} component(s) from "
                f"{len(catalog.catalog.files)} file(s), re-read when they change",
                file=sys.stderr,
            )
        if missing:
            print(
                f"relsec ingest:   no secret (requests rejected): {', '.join(missing)}",
                file=sys.stderr,
            )

    publisher = ProducerPublisher(settings)
    try:
        asyncio.run(serve(publisher, config, args.host, args.port, ready))
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()
        if catalog is not None:
            catalog.close()
    return 0
