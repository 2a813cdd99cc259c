"""Ingest: turn the payloads of the tools teams already run into relsec events.

``convert(source, payload, options)`` dispatches to the pure adapter of a
source; ``decode_payload(source, raw)`` turns bytes into the decoded JSON an
adapter reads (an :class:`~agents.errors.AdapterError` naming ``$`` when the
bytes are not one JSON value). ``relsec ingest convert|publish|serve`` build on
these; docs/ingest.md tells how to wire each tool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from agents.errors import AdapterError
from streams.ingest.cdevents import cdevents
from streams.ingest.common import Conversion, IngestOptions
from streams.ingest.deploys import argocd, flux, github
from streams.ingest.incidents import opsgenie, pagerduty
from streams.ingest.security import dependency_track, grype, trivy

Adapter = Callable[[Any, IngestOptions], Conversion]

ADAPTERS: Final[dict[str, Adapter]] = {
    "github": github,
    "argocd": argocd,
    "flux": flux,
    "cdevents": cdevents,
    "pagerduty": pagerduty,
    "opsgenie": opsgenie,
    "trivy": trivy,
    "grype": grype,
    "dependency-track": dependency_track,
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
    "convert",
    "decode_payload",
]
