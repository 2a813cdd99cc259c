"""The two record values the worker moves: one consumed (:class:`InputRecord`), one to produce
(:class:`Output`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One consumed record and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Output:
    """A record to produce; ``partition`` ``None`` lets the partitioner choose (murmur2)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None

    @property
    def size(self) -> int:
        return len(self.value or b"") + len(self.key or b"")
