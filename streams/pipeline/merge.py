"""Event-time merge of co-partitioned input partitions (as Kafka Streams does in a task).

Records of partition *p* of the three input topics wait in one buffer per
topic. The record with the smallest order key among the buffer heads is
released when every other topic of the partition either has a record
buffered (whose key is then no smaller), or is caught up (everything up to
its high watermark was delivered), or has been empty for long enough:
``idle_ms`` when nothing is known about its lag (Kafka Streams'
``max.task.idle.ms``), ``lagging_max_ms`` when its lag is known to be
positive — records exist and are on their way, so the merge waits for them
(a safety limit, not a tuning knob). The clock of a topic starts when a
release first has to wait for it and stops when it delivers a record, so
time spent processing a backlog never counts as the other topics being
silent.
Within one topic-partition records leave in offset order, so acking them as
they are processed keeps commits contiguous.

The merge only shapes the order in which the engine sees events; the engine
itself stays correct for any order within the allowed lateness (it retracts
and re-fires). The merge keeps a backlog on one topic from making the other
topics' events late.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

T = TypeVar("T")

CAUGHT_UP: Final = "caught_up"
LAGGING: Final = "lagging"
UNKNOWN: Final = "unknown"
OrderKey = tuple[int, int, str]


@dataclass(slots=True)
class _Buffered(Generic[T]):
    key: OrderKey
    arrived_ms: int
    item: T


@dataclass(slots=True)
class PartitionMerge(Generic[T]):
    """The merge of one partition number across the input topics."""

    topics: tuple[str, ...]
    buffers: dict[str, deque[_Buffered[T]]] = field(default_factory=dict)
    waiting_since: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for topic in self.topics:
            self.buffers.setdefault(topic, deque())

    def add(self, topic: str, key: OrderKey, arrived_ms: int, item: T) -> None:
        self.buffers[topic].append(_Buffered(key, arrived_ms, item))
        self.waiting_since.pop(topic, None)

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def release(
        self,
        lag_state: Callable[[str], str],
        now_ms: int,
        idle_ms: int,
        lagging_max_ms: int,
        limit: int | None = None,
        caught_up_grace_ms: int = 0,
    ) -> Iterator[tuple[str, T]]:
        """Yield ``(topic, item)`` in merged order while the rule allows, at most ``limit``.

        ``caught_up_grace_ms``: a record is not released ahead of a caught-up but empty
        topic until it has waited that long. "Caught up" is only as fresh as the last
        fetch response; when a producer writes a burst spanning days of event time
        (a backfill), the other topics' records of the same moment are often a fetch
        behind, and releasing at once would make them late.
        """
        released = 0
        while limit is None or released < limit:
            head_topic: str | None = None
            head: _Buffered[T] | None = None
            for topic, buffer in self.buffers.items():
                if buffer and (head is None or buffer[0].key < head.key):
                    head_topic, head = topic, buffer[0]
            if head is None or head_topic is None:
                return
            for topic, buffer in self.buffers.items():
                if topic == head_topic or buffer:
                    continue
                state = lag_state(topic)
                if state == CAUGHT_UP:
                    if now_ms - head.arrived_ms < caught_up_grace_ms:
                        return
                    continue
                since = self.waiting_since.setdefault(topic, now_ms)
                limit_ms = lagging_max_ms if state == LAGGING else idle_ms
                if now_ms - since < limit_ms:
                    return
            self.buffers[head_topic].popleft()
            released += 1
            yield head_topic, head.item

    def first_held(self, topic: str) -> T | None:
        """The oldest record of ``topic`` still waiting (its offset is where a commit must stop)."""
        buffer = self.buffers.get(topic)
        return buffer[0].item if buffer else None

    def clear(self) -> None:
        for buffer in self.buffers.values():
            buffer.clear()
        self.waiting_since.clear()
