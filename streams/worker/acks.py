"""Acknowledging input records in offset order (the Faust runtime's commits).

Faust commits, per partition, the longest run of consecutive acknowledged
offsets, and that run may start one past the committed offset (upstream
faust #606, #401). Records do not finish in offset order here: a valid event
waits in the event-time merge while a bad record right behind it is
dead-lettered at once. Acknowledging the dead letter first would let Faust
commit past the waiting event, and a crash would lose it. So the runtime hands
each finished record to :class:`OffsetOrderedAcks`, which releases, per
partition, only the finished records with nothing unfinished before them.

Offsets that are never delivered (a transactional producer's commit markers,
aborted records, compacted-away records) are reported with the record after
them, so they can be acknowledged too: otherwise Faust's run of consecutive
offsets stops at each of them and commits crawl (its own gap tracking adds
the offsets twice, which breaks the run).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class Delivered(Generic[T]):
    """One input record: its offset, the offsets skipped just before it, its payload."""

    offset: int
    skipped_from: int
    item: T
    done: bool = False

    @property
    def skipped(self) -> range:
        """Offsets between the previous delivered record (or the start) and this one."""
        return range(self.skipped_from, self.offset)


@dataclass(slots=True)
class OffsetOrderedAcks(Generic[P, T]):
    """Finished records, released per partition in offset order."""

    _waiting: dict[P, deque[Delivered[T]]] = field(default_factory=dict)
    _next_offset: dict[P, int] = field(default_factory=dict)
    finished: int = 0

    def deliver(self, partition: P, offset: int, item: T, start: int | None = None) -> Delivered[T]:
        """Register a record as it arrives (offsets only grow within a partition).

        ``start``: where reading began, for the first record after an assignment
        (the committed offset); the offsets from there to this record count as skipped.
        """
        expected = self._next_offset.get(partition, offset if start is None else start)
        entry = Delivered(offset, min(max(expected, 0), offset), item)
        self._waiting.setdefault(partition, deque()).append(entry)
        self._next_offset[partition] = offset + 1
        return entry

    def finish(self, entry: Delivered[T]) -> None:
        """The record's effects are produced; it may be acknowledged once those before it are."""
        if not entry.done:
            entry.done = True
            self.finished += 1

    def take_ready(self) -> list[tuple[P, Delivered[T]]]:
        """Per partition, the finished records with no unfinished record before them."""
        ready: list[tuple[P, Delivered[T]]] = []
        for partition, waiting in self._waiting.items():
            while waiting and waiting[0].done:
                ready.append((partition, waiting.popleft()))
        self.finished -= len(ready)
        return ready

    def unfinished(self) -> int:
        return sum(len(w) for w in self._waiting.values()) - self.finished

    def clear(self) -> None:
        self._waiting.clear()
        self._next_offset.clear()
        self.finished = 0
