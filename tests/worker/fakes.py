"""Fakes for the worker's in-process tests: a producer that acknowledges when told to.

:class:`FakeProducer` behaves as far as the checkpoints can tell like librdkafka's
producer: ``produce`` queues a record (``BufferError`` when its queue is full),
offsets are assigned per partition in produce order, and delivery reports reach
their callbacks only inside ``poll`` / ``flush``. The test decides what is
acknowledged (:meth:`FakeProducer.ack`), refused (:meth:`FakeProducer.refuse`) or
never answered (nothing: Kafka gone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams.settings import Settings, Topics
from streams.worker.changelog import ChangelogStore

Match = Callable[["Produced"], bool]


@dataclass(frozen=True, slots=True)
class FakeError:
    reason: str

    def str(self) -> str:
        return self.reason

    def code(self) -> int:
        return 10  # MSG_SIZE_TOO_LARGE, for what it is worth


@dataclass(eq=False, slots=True)
class Produced:
    """One record handed to the fake producer, and what became of it."""

    topic: str
    value: bytes | None
    key: bytes | None
    partition: int
    on_delivery: Callable[[Any, Any], None] | None
    offset: int = -1
    state: str = "queued"  # queued -> ready (acked or refused, report not polled) -> reported
    error: FakeError | None = None


class _Message:
    __slots__ = ("record",)

    def __init__(self, record: Produced) -> None:
        self.record = record

    def topic(self) -> str:
        return self.record.topic

    def partition(self) -> int:
        return self.record.partition

    def offset(self) -> int:
        return self.record.offset

    def key(self) -> bytes | None:
        return self.record.key

    def value(self) -> bytes | None:
        return self.record.value


@dataclass
class FakeProducer:
    """See the module docstring. ``auto_ack``: every ``poll`` acknowledges what is queued."""

    auto_ack: bool = False
    queue_limit: int | None = None
    records: list[Produced] = field(default_factory=list)
    history: list[Produced] = field(default_factory=list)
    """Every record ever produced, for the tests' questions (``records`` drops reported ones)."""
    next_offset: dict[tuple[str, int], int] = field(default_factory=dict)
    polls: int = 0
    full_once: int = 0
    """Refuse this many next ``produce`` calls with BufferError (a full queue)."""

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        *,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        if self.full_once > 0:
            self.full_once -= 1
            raise BufferError("queue full")
        if self.queue_limit is not None and len(self) >= self.queue_limit:
            raise BufferError("queue full")
        record = Produced(topic, value, key, max(partition, 0), on_delivery)
        self.records.append(record)
        self.history.append(record)

    def __len__(self) -> int:
        return sum(1 for r in self.records if r.state != "reported")

    # -- the test's hand ---------------------------------------------------------

    def queued(self, match: Match | None = None) -> list[Produced]:
        return [r for r in self.records if r.state == "queued" and (match is None or match(r))]

    def ack(self, match: Match | None = None, limit: int | None = None) -> int:
        """Acknowledge queued records (in produce order); reports arrive at the next poll."""
        done = 0
        for record in self.queued(match):
            if limit is not None and done >= limit:
                break
            key = (record.topic, record.partition)
            record.offset = self.next_offset.get(key, 0)
            self.next_offset[key] = record.offset + 1
            record.state = "ready"
            done += 1
        return done

    def refuse(self, match: Match | None = None, reason: str = "Broker: refused") -> int:
        done = 0
        for record in self.queued(match):
            record.state = "ready"
            record.error = FakeError(reason)
            done += 1
        return done

    # -- what librdkafka does ------------------------------------------------------

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        if self.auto_ack:
            self.ack()
        reported = 0
        for record in self.records:
            if record.state == "ready":
                record.state = "reported"
                reported += 1
                if record.on_delivery is not None:
                    record.on_delivery(record.error, _Message(record))
        self.records = [r for r in self.records if r.state != "reported"]
        return reported

    def flush(self, timeout: float = 0) -> int:
        self.poll(timeout)
        return len(self)

    def delivered(self, topic: str) -> list[Produced]:
        """Records of ``topic`` acknowledged so far (refusals excluded), in offset order."""
        return [r for r in self.history if r.topic == topic and r.error is None]


class FakeClock:
    """A monotonic clock the test moves."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def store(prefix: str = "t.") -> ChangelogStore:
    """An in-memory changelog store (no Kafka until ``restore`` is called)."""
    settings = Settings(bootstrap_servers="127.0.0.1:1", topics=Topics(prefix))
    return ChangelogStore(settings, settings.topics.state_changelog)
