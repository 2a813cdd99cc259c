"""Decoding the worker's state changelog records for the read model.

The record format belongs to the worker (:mod:`streams.worker.state_records`); this
is the one module of the API that imports it. A state too big for one record is
stored as parts written before the head that names them, so the read model holds
the parts it has read (:class:`PartsBuffer`) until their head arrives.
"""

from __future__ import annotations

from agents.errors import StateError
from streams.worker.state_records import OUTBOX_SENT_KEY, decode_state, head_parts, key_kind

__all__ = ["OUTBOX_SENT_KEY", "PartsBuffer", "engine_bytes_of", "is_part_key", "is_service_key"]


def is_service_key(key: bytes | None) -> bool:
    """Whether a changelog key names a service (not a part, an outbox or a mark)."""
    return bool(key) and key is not None and key_kind(key) == "state"


def is_part_key(key: bytes | None) -> bool:
    """Whether a changelog key is a part of a service's state too big for one record."""
    return bool(key) and key is not None and key_kind(key) == "part"


class PartsBuffer:
    """State parts read but not yet claimed by their head (parts precede their head)."""

    def __init__(self) -> None:
        self._parts: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return len(self._parts)

    def put(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self._parts.pop(key, None)
        else:
            self._parts[key] = value

    def get(self, key: bytes) -> bytes | None:
        return self._parts.get(key)

    def release(self, service_key: bytes, head: bytes) -> None:
        """Forget the parts ``head`` names (decoded once; a later head names new ones)."""
        parts = head_parts(head)
        if parts is not None:
            for key in parts.part_keys(service_key):
                self._parts.pop(key, None)


def engine_bytes_of(service_key: bytes, value: bytes, parts: PartsBuffer | None = None) -> bytes:
    """The engine state a changelog head stores; :class:`StateError` when malformed
    or when a part it names has not been read."""
    buffer = parts if parts is not None else PartsBuffer()
    engine_bytes = decode_state(service_key, value, buffer.get).engine
    if not engine_bytes:
        raise StateError("stored state holds no engine state")
    buffer.release(service_key, value)
    return engine_bytes
