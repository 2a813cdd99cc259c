"""relsec's Avro schemas (``*.avsc`` beside this file) and a loader for them.

Current schemas live beside this file (``deploy.avsc``, ...); every older
version still readable lives in ``previous/<name>.v<N>.avsc``
(:data:`KEPT_VERSIONS`). All ship in the wheel as package data. See
docs/schemas.md for the encoding and the evolution rule.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

#: Schema names, as in the file names: the three input events, alerts, dead letters.
EVENT_SCHEMAS: Final = ("deploy", "incident", "security_flag")
SCHEMA_NAMES: Final = (*EVENT_SCHEMAS, "alert", "dead_letter")

#: The version of each current schema (the file beside this one).
CURRENT_VERSIONS: Final[dict[str, int]] = {
    "deploy": 2,
    "incident": 2,
    "security_flag": 2,
    "alert": 2,
    "dead_letter": 1,
}
#: The older versions kept in ``previous/`` (``<name>.v<N>.avsc``), oldest first. Readers
#: know all of them, so a record written by any of these schemas still decodes.
KEPT_VERSIONS: Final[dict[str, tuple[int, ...]]] = {
    name: tuple(range(CURRENT_VERSIONS[name])) for name in SCHEMA_NAMES
}


def _check(name: str) -> None:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no relsec schema named {name!r} (known: {', '.join(SCHEMA_NAMES)})")


def previous_version(name: str) -> int:
    """The version just before the current one of schema ``name``."""
    _check(name)
    return KEPT_VERSIONS[name][-1]


def schema_text(name: str, previous: bool = False, version: int | None = None) -> str:
    """The ``.avsc`` text of schema ``name``: the current version, the one before it
    (``previous``), or a given kept ``version``."""
    _check(name)
    if version is None and previous:
        version = previous_version(name)
    base = resources.files(__name__)
    if version is None or version == CURRENT_VERSIONS[name]:
        path = base / f"{name}.avsc"
    elif version in KEPT_VERSIONS[name]:
        path = base / "previous" / f"{name}.v{version}.avsc"
    else:
        raise KeyError(
            f"schema {name!r} has no kept version {version} (kept: "
            f"{', '.join(map(str, KEPT_VERSIONS[name]))}; current: {CURRENT_VERSIONS[name]})"
        )
    return path.read_text(encoding="utf-8")


def load_schema(name: str, previous: bool = False, version: int | None = None) -> dict[str, Any]:
    """Schema ``name`` as a JSON object (a fresh copy each call, safe to mutate)."""
    loaded: dict[str, Any] = json.loads(schema_text(name, previous, version))
    return loaded


def all_schemas(previous: bool = False) -> dict[str, dict[str, Any]]:
    """Every schema by name."""
    return {name: load_schema(name, previous) for name in SCHEMA_NAMES}
