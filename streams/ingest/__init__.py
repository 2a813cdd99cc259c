"""Ingest: turn the payloads of the tools teams already run into relsec events.

``convert(source, payload, options)`` dispatches to the pure adapter of a
source; ``decode_payload(source, raw)`` turns bytes into the decoded JSON an
adapter reads (an :class:`~streams.ingest.errors.AdapterError` naming ``$`` when the
bytes are not one JSON value). ``relsec ingest convert|publish|serve`` build on
these; docs/ingest.md tells how to wire each tool.

Every entry of :data:`ADAPTERS` is guarded the same way, whoever calls it: only
relsec's own errors leave an adapter (an unexpected exception becomes an
AdapterError at ``$`` naming it, so a strange payload is a 400, never a crash),
and with ``IngestOptions.require_catalog`` the events of a service the catalog
does not know are withheld, each reason in ``skipped``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from agents.errors import RelsecError
from streams.ingest.cdevents import cdevents
from streams.ingest.common import Conversion, IngestOptions, Unresolved
from streams.ingest.deploys import argocd, flux, github
from streams.ingest.errors import AdapterError
from streams.ingest.incidents import opsgenie, pagerduty
from streams.ingest.security import dependency_track, grype, trivy

Adapter = Callable[[Any, IngestOptions], Conversion]


def require_catalog(conversion: Conversion) -> Conversion:
    """``conversion`` without the events of services the catalog did not resolve."""
    unknown = {u.service for u in conversion.unresolved}
    if not unknown:
        return conversion
    kept = tuple(e for e in conversion.events if e.get("service") not in unknown)
    withheld = len(conversion.events) - len(kept)
    reasons = tuple(
        f"{u.detail}; --require-catalog: no event"
        + (f" ({withheld} withheld)" if withheld else "")
        for u in dict.fromkeys(conversion.unresolved)
    )
    return Conversion(kept, conversion.skipped + reasons, conversion.unresolved)


def guarded(source: str, adapter: Adapter) -> Adapter:
    """``adapter`` that raises only RelsecError and applies ``require_catalog``."""

    def run(payload: Any, options: IngestOptions) -> Conversion:
        try:
            conversion = adapter(payload, options)
        except RelsecError:
            raise
        except RecursionError:
            raise AdapterError(source, "$", "is nested too deeply to convert") from None
        except Exception as exc:  # a payload shape no adapter check foresaw: a 400, not a crash
            raise AdapterError(
                source, "$", f"cannot be converted ({type(exc).__name__}: {exc})"
            ) from exc
        return require_catalog(conversion) if options.require_catalog else conversion

    run.__name__ = getattr(adapter, "__name__", source)
    run.__doc__ = adapter.__doc__
    return run


ADAPTERS: Final[dict[str, Adapter]] = {
    name: guarded(name, adapter)
    for name, adapter in (
        ("github", github),
        ("argocd", argocd),
        ("flux", flux),
        ("cdevents", cdevents),
        ("pagerduty", pagerduty),
        ("opsgenie", opsgenie),
        ("trivy", trivy),
        ("grype", grype),
        ("dependency-track", dependency_track),
    )
}
SOURCES: Final = tuple(ADAPTERS)


def decode_payload(source: str, raw: bytes) -> Any:
    """Decode one JSON payload; AdapterError at ``$`` naming line and column when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AdapterError(
            source, "$", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def convert(source: str, payload: Any, options: IngestOptions | None = None) -> Conversion:
    """The events of one decoded payload of ``source``."""
    adapter = ADAPTERS.get(source)
    if adapter is None:
        raise AdapterError(source, "$", f"unknown source; expected one of {', '.join(SOURCES)}")
    return adapter(payload, options or IngestOptions())


__all__ = [
    "ADAPTERS",
    "SOURCES",
    "Adapter",
    "Conversion",
    "IngestOptions",
    "Unresolved",
    "convert",
    "decode_payload",
    "guarded",
    "require_catalog",
]
