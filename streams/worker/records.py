"""The two record values the worker moves: one consumed (:class:`InputRecord`), one to produce
(:class:`Output`).

Both are named tuples: immutable like a frozen dataclass, and built in a third of the
time (a frozen dataclass sets each field through ``object.__setattr__``); the worker
makes one of each per record and per output.
"""

from __future__ import annotations

from typing import NamedTuple

from agents.errors import RecordAt


class InputRecord(NamedTuple):
    """One consumed record and where it came from (:attr:`at`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def at(self) -> RecordAt:
        return RecordAt(self.topic, self.partition, self.offset)


class Output(NamedTuple):
    """A record to produce; ``partition`` ``None`` lets the partitioner choose (murmur2)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None

    @property
    def size(self) -> int:
        return len(self.value or b"") + len(self.key or b"")
