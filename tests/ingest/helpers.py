"""Shared paths and checks of the ingest tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from agents.model.events import event_to_dict, parse_event
from streams.ingest import IngestOptions, convert
from streams.ingest.common import Conversion

REPO = Path(__file__).resolve().parents[2]
PAYLOADS = REPO / "tests" / "data" / "payloads"
SHARED = REPO.parent / "shared" / "payloads"
ARGOCD_CM = REPO / "deploy" / "argocd" / "relsec-notifications-cm.yaml"
RECEIVED_MS = 1_772_600_000_000  # 2026-03-04T04:53:20Z, the receive time the tests pass


def load(rel: str, base: Path = PAYLOADS) -> Any:
    return orjson.loads((base / rel).read_bytes())


def run(source: str, rel: str, base: Path = PAYLOADS, **options: Any) -> Conversion:
    """Convert a payload file and check every event validates and is already canonical."""
    options.setdefault("received_at_ms", RECEIVED_MS)
    conversion = convert(source, load(rel, base), IngestOptions(**options))
    assert_canonical(conversion)
    return conversion


def assert_canonical(conversion: Conversion) -> None:
    for event in conversion.events:
        assert event_to_dict(parse_event(event)) == event
    ids = [e["event_id"] for e in conversion.events]
    assert len(ids) == len(set(ids)), f"duplicate event ids in one conversion: {ids}"


def only(conversion: Conversion) -> dict[str, Any]:
    assert len(conversion.events) == 1, conversion
    return conversion.events[0]
