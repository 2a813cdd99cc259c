"""relsec's Avro schemas (``*.avsc`` beside this file) and a loader for them.

Current schemas live beside this file (``deploy.avsc``, ...); the version
before each lives in ``previous/<name>.v<N>.avsc``. Both ship in the wheel as
package data. See docs/schemas.md for the encoding and the evolution rule.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

#: Schema names, as in the file names: the three input events, alerts, dead letters.
EVENT_SCHEMAS: Final = ("deploy", "incident", "security_flag")
SCHEMA_NAMES: Final = (*EVENT_SCHEMAS, "alert", "dead_letter")

#: The version number of the current schemas and of the ones kept in ``previous/``.
CURRENT_VERSION: Final = 1
PREVIOUS_VERSION: Final = 0


def _check(name: str) -> None:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no relsec schema named {name!r} (known: {', '.join(SCHEMA_NAMES)})")


def schema_text(name: str, previous: bool = False) -> str:
    """The ``.avsc`` text of schema ``name``: the current version, or the previous one."""
    _check(name)
    base = resources.files(__name__)
    if previous:
        path = base / "previous" / f"{name}.v{PREVIOUS_VERSION}.avsc"
    else:
        path = base / f"{name}.avsc"
    return path.read_text(encoding="utf-8")


def load_schema(name: str, previous: bool = False) -> dict[str, Any]:
    """Schema ``name`` as a JSON object (a fresh copy each call, safe to mutate)."""
    loaded: dict[str, Any] = json.loads(schema_text(name, previous))
    return loaded


def all_schemas(previous: bool = False) -> dict[str, dict[str, Any]]:
    """Every schema by name."""
    return {name: load_schema(name, previous) for name in SCHEMA_NAMES}
