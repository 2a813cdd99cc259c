"""The tool payloads the adapter fuzzing starts from, and one call of an adapter.

``tests/data/payloads/<source>/`` always; ``../shared/payloads/<source>/`` beside the
checkout when it exists (real payloads from the tools' own projects, not the
project's to copy). Only files that decode as one JSON value are used.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agents.errors import RelsecError, ValidationError
from agents.model.events import event_to_dict, parse_event
from streams.ingest import ADAPTERS, IngestOptions

REPO = Path(__file__).resolve().parents[2]
FOLDERS = (REPO / "tests" / "data" / "payloads", REPO.parent / "shared" / "payloads")
RECEIVED_MS = 1_772_600_000_000


@dataclass(frozen=True, slots=True)
class Payload:
    source: str
    name: str
    value: Any


def load_payloads() -> list[Payload]:
    out: list[Payload] = []
    for folder in FOLDERS:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.json")):
            source = path.relative_to(folder).parts[0]
            if source not in ADAPTERS:
                continue
            try:
                value = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                continue
            out.append(Payload(source, str(path.relative_to(REPO.parent)), value))
    return out


@dataclass(frozen=True, slots=True)
class Crash:
    """An exception other than a RelsecError out of an adapter."""

    source: str
    exception: str
    where: str
    """``file.py in function`` of the innermost relsec frame (no line: edits move lines)."""
    line: int = 0

    @property
    def signature(self) -> tuple[str, str, str]:
        return (self.source, self.exception.split(":", 1)[0], self.where)


def call_adapter(source: str, payload: Any, options: IngestOptions) -> Crash | None:
    """Run one adapter; None when it gave valid events or refused with a RelsecError.

    A ValidationError out of an adapter counts as a crash: adapters must turn what the
    event model refuses into an AdapterError naming the payload's path."""
    try:
        conversion = ADAPTERS[source](payload, options)
        for event in conversion.events:  # what an adapter gives must be a valid event
            if event_to_dict(parse_event(event)) != event:
                return Crash(source, "NotCanonical: an event differs from its canonical form",
                             "(adapter output)")
    except ValidationError as exc:
        return Crash(source, f"InvalidEvent: {exc}"[:200], "(adapter output)")
    except RelsecError:
        return None
    except Exception as exc:  # finding these is the point
        frames = traceback.extract_tb(exc.__traceback__)
        inside = [f for f in frames if "/streams/" in f.filename or "/agents/" in f.filename]
        frame = (inside or frames)[-1]
        where = f"{Path(frame.filename).name} in {frame.name}"
        return Crash(source, f"{type(exc).__name__}: {str(exc)[:200]}", where, frame.lineno or 0)
    return None


def options_for(choice: int) -> IngestOptions:
    """A few realistic option sets: with and without a receive time, an override."""
    if choice == 0:
        return IngestOptions()
    if choice == 1:
        return IngestOptions(service="checkout", environment="production")
    return IngestOptions(received_at_ms=RECEIVED_MS)
