"""Decoding the worker's state changelog records for the read model.

The record format belongs to the worker (``pack_state`` / ``unpack_state``); this is
the one module of the API that imports it, so a move of those functions is a one-line
change here.
"""

from __future__ import annotations

from typing import Final

from agents.errors import StateError
from streams.pipeline.changelog import OUTBOX_SENT_KEY
from streams.pipeline.processor import unpack_state

__all__ = ["OUTBOX_SENT_KEY", "engine_bytes_of", "is_service_key"]

_CONTROL_KEY_PREFIX: Final = b"\x00"


def is_service_key(key: bytes | None) -> bool:
    """Whether a changelog key names a service (not a control record such as outbox-sent)."""
    return bool(key) and key is not None and not key.startswith(_CONTROL_KEY_PREFIX)


def engine_bytes_of(value: bytes) -> bytes:
    """The engine state inside a changelog value; :class:`StateError` when malformed."""
    _offsets, engine_bytes, _outbox = unpack_state(value)
    if not engine_bytes:
        raise StateError("stored state holds no engine state")
    return engine_bytes
