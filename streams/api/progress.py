"""How far behind its topics the read model is: per topic, per partition.

The source (one consumer thread) records, per partition, the next offset it will read,
the high watermark the broker last reported, and when it was last at the end. Every
answer of the API carries :meth:`TopicProgress.snapshot` of the topics it was built
from, so a caller can tell a fresh answer from a stale one.

* ``records_behind``: records between what was read and the high watermark (0 for a
  partition at its end: transaction markers after the last record are not counted);
* ``behind_ms``: 0 when every partition is at its end, else how long ago the laggiest
  partition was last at its end (or since the read model started);
* ``caught_up``: every partition has been read to its end at least once since the
  start, and none is behind now.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class PartitionProgress:
    """The read position of one partition."""

    position: int = 0
    high: int = 0
    at_end: bool = False
    reached_end_once: bool = False
    last_at_end_ms: int | None = None

    def behind(self) -> int:
        return 0 if self.at_end else max(0, self.high - self.position)


class TopicProgress:
    """The read position of every partition of one topic; thread-safe."""

    def __init__(self, topic: str, started_ms: int) -> None:
        self.topic = topic
        self.started_ms = started_ms
        self._lock = threading.Lock()
        self._partitions: dict[int, PartitionProgress] = {}
        self.known = False
        """The topic's partitions are known (it exists and is assigned)."""

    def assign(self, partitions: list[int]) -> None:
        with self._lock:
            for p in partitions:
                self._partitions.setdefault(p, PartitionProgress())
            self.known = True

    def read(self, partition: int, offset: int) -> None:
        with self._lock:
            part = self._partitions.setdefault(partition, PartitionProgress())
            part.position = max(part.position, offset + 1)
            part.at_end = False

    def watermark(self, partition: int, high: int, position: int | None) -> None:
        with self._lock:
            part = self._partitions.setdefault(partition, PartitionProgress())
            part.high = high
            if position is not None and position >= 0:
                part.position = max(part.position, position)
            if part.position < high:
                part.at_end = False

    def at_end(self, partition: int, offset: int, now_ms: int) -> None:
        with self._lock:
            part = self._partitions.setdefault(partition, PartitionProgress())
            part.position = max(part.position, offset)
            part.high = max(part.high, offset)
            part.at_end = True
            part.reached_end_once = True
            part.last_at_end_ms = now_ms

    def caught_up(self) -> bool:
        with self._lock:
            return self._caught_up()

    def _caught_up(self) -> bool:
        return (
            self.known
            and all(p.reached_end_once for p in self._partitions.values())
            and all(p.behind() == 0 for p in self._partitions.values())
        )

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        with self._lock:
            parts = self._partitions
            behind = sum(p.behind() for p in parts.values())
            lagging = [p for p in parts.values() if not p.at_end]
            if not self.known:
                behind_ms = now_ms - self.started_ms
            elif lagging:
                behind_ms = max(
                    now_ms - (p.last_at_end_ms if p.last_at_end_ms is not None else self.started_ms)
                    for p in lagging
                )
            else:
                behind_ms = 0
            return {
                "topic": self.topic,
                "caught_up": self._caught_up(),
                "records_behind": behind,
                "behind_ms": max(0, behind_ms),
                "partitions": len(parts),
            }
