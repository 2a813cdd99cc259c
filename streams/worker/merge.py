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
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

T = TypeVar("T")

CAUGHT_UP: Final = "caught_up"
LAGGING: Final = "lagging"
UNKNOWN: Final = "unknown"
LagState = Literal["caught_up", "lagging", "unknown"]
OrderKey = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class MergePolicy:
    """How long the merge waits, built once from the worker's options (see
    :meth:`PartitionMerge.release` for what each wait is for)."""

    idle_ms: int = 2_000
    lagging_max_ms: int = 60_000
    caught_up_grace_ms: int = 0
    far_ahead_ms: int | None = None
    far_ahead_grace_ms: int = 0


# Plain classes, not dataclasses: this module is compiled with mypyc (agents.model._pure),
# which cannot apply ``@dataclass`` to a generic class.
class _Buffered(Generic[T]):
    __slots__ = ("arrived_ms", "item", "key")

    def __init__(self, key: OrderKey, arrived_ms: int, item: T) -> None:
        self.key = key
        self.arrived_ms = arrived_ms
        self.item = item


class PartitionMerge(Generic[T]):
    """The merge of one partition number across the input topics."""

    __slots__ = ("buffers", "first_time_ms", "last_time_ms", "topics", "waiting_since")

    def __init__(self, topics: tuple[str, ...]) -> None:
        self.topics = topics
        self.buffers: dict[str, deque[_Buffered[T]]] = {topic: deque() for topic in topics}
        self.waiting_since: dict[str, int] = {}
        self.last_time_ms: dict[str, int] = {}
        self.first_time_ms: int | None = None

    def add(self, topic: str, key: OrderKey, arrived_ms: int, item: T) -> None:
        self.buffers[topic].append(_Buffered(key, arrived_ms, item))
        self.waiting_since.pop(topic, None)
        if key[0] > self.last_time_ms.get(topic, key[0] - 1):
            self.last_time_ms[topic] = key[0]
        if self.first_time_ms is None or key[0] < self.first_time_ms:
            self.first_time_ms = key[0]

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def release(
        self,
        lag_state: Callable[[str], str],
        now_ms: int,
        policy: MergePolicy,
        limit: int | None = None,
        confirm_caught_up: Callable[[str, int], bool] | None = None,
    ) -> Iterator[tuple[str, T]]:
        """Yield ``(topic, item)`` in merged order while the rule allows, at most ``limit``.

        ``policy.idle_ms`` / ``policy.lagging_max_ms``: how long an empty topic of unknown
        lag / known to be behind holds the others back (module docstring).

        ``caught_up_grace_ms``: a record is not released ahead of a caught-up but empty
        topic until it has waited that long. "Caught up" is only as fresh as the last
        fetch response; when a producer writes a burst spanning days of event time
        (a backfill), the other topics' records of the same moment are often a fetch
        behind, and releasing at once would make them late.

        ``far_ahead_ms`` / ``far_ahead_grace_ms``: when the record's event time is more
        than ``far_ahead_ms`` past the newest record the empty topic has delivered, it
        is a burst running ahead (live streams move together), and it waits the longer
        grace. The worker sets ``far_ahead_ms`` to half the allowed lateness: only such
        a jump can make the empty topic's next records late. A topic that never
        delivered is measured from the first event time this merge saw. A topic passed
        after the long grace counts, once the record is released, as having reached
        that record's time, so the long wait comes once per jump, not once per record.

        ``confirm_caught_up(topic, since_ms)`` (when given) is asked once the grace is
        over: is the topic caught up according to the broker, asked at or after
        ``since_ms`` (when the record arrived)? "Caught up" by the cached watermark may
        be a fetch old, and on a loaded machine a fetch can take longer than the grace;
        a topic the broker shows behind is waited for as a lagging one.
        """
        caught_up_grace_ms = policy.caught_up_grace_ms
        far_ahead_ms = policy.far_ahead_ms
        far_ahead_grace_ms = policy.far_ahead_grace_ms
        released = 0
        while limit is None or released < limit:
            head_topic: str | None = None
            head: _Buffered[T] | None = None
            for topic, buffer in self.buffers.items():
                if buffer and (head is None or buffer[0].key < head.key):
                    head_topic, head = topic, buffer[0]
            if head is None or head_topic is None:
                return
            passed_far: list[str] = []
            for topic, buffer in self.buffers.items():
                if topic == head_topic or buffer:
                    continue
                state = lag_state(topic)
                if state == CAUGHT_UP:
                    grace_ms = caught_up_grace_ms
                    far = False
                    if far_ahead_ms is not None:
                        last = self.last_time_ms.get(topic, self.first_time_ms)
                        if last is not None and head.key[0] - last > far_ahead_ms:
                            grace_ms = max(grace_ms, far_ahead_grace_ms)
                            far = True
                    if now_ms - head.arrived_ms < grace_ms:
                        return
                    if confirm_caught_up is None or confirm_caught_up(topic, head.arrived_ms):
                        if far:
                            passed_far.append(topic)
                        continue
                    state = LAGGING
                since = self.waiting_since.setdefault(topic, now_ms)
                limit_ms = policy.lagging_max_ms if state == LAGGING else policy.idle_ms
                if now_ms - since < limit_ms:
                    return
            self.buffers[head_topic].popleft()
            for topic in passed_far:
                self.last_time_ms[topic] = max(self.last_time_ms.get(topic, 0), head.key[0])
            released += 1
            yield head_topic, head.item

    def first_held(self, topic: str) -> T | None:
        """The oldest record of ``topic`` still waiting (its offset is where a commit must stop)."""
        buffer = self.buffers.get(topic)
        return buffer[0].item if buffer else None

    def clear(self) -> None:
        """Drop the held records (a revocation). The newest event time seen per topic is
        kept: it is what tells a burst from a live stream when the partition comes back."""
        for buffer in self.buffers.values():
            buffer.clear()
        self.waiting_since.clear()
