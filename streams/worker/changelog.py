"""The worker's state changelog on Kafka: created at start, read back on assignment.

:class:`ChangelogStore` keeps, for the assigned partitions, the state heads and
parts of every service (the record format is :mod:`streams.worker.state_records`):
the engine cache loads a service from it, and the checkpoints write through it.
With a hundred thousand services these bytes *are* the store: an engine evicted
from the cache costs its stored bytes only. Outbox chunks are not kept: the
checkpoint that wrote them holds the outputs until they are sent, and a restore
reads them only to re-send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from agents.errors import TopicError
from streams.kafka.clients import admin_config, consumer_config
from streams.kafka.topics import changelog_spec
from streams.settings import Settings
from streams.worker.errors import RestoreFailed
from streams.worker.state_records import (
    OUTBOX_SENT_KEY,
    RestorePlan,
    StoredState,
    decode_state,
    key_kind,
    plan_restore,
)

log = logging.getLogger("relsec.worker")

RESTORE_TIMEOUT_S = 300.0
RESTORE_BATCH = 10_000


def ensure_state_changelog(settings: Settings, partitions: int, replication_factor: int) -> None:
    """Create the compacted state topic if missing (as ``relsec topics create`` does);
    refuse one with another partition count than the inputs."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    spec = changelog_spec(settings.topics, partitions, replication_factor)
    admin = AdminClient(admin_config(settings))
    existing = admin.list_topics(timeout=15).topics.get(spec.name)
    if existing is not None and existing.error is None:
        if len(existing.partitions) != partitions:
            raise TopicError(
                f"{spec.name} has {len(existing.partitions)} partitions but the inputs have "
                f"{partitions}: a service's state must live on its input partition number"
            )
        return
    new = NewTopic(
        spec.name,
        num_partitions=spec.partitions,
        replication_factor=spec.replication_factor,
        config=dict(spec.config),
    )
    futures = admin.create_topics([new], request_timeout=30)
    try:
        futures[spec.name].result()
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise TopicError(f"cannot create {spec.name}: {exc.args[0].str()}") from None


class ChangelogStore:
    """The state heads and parts of every service of the assigned partitions.

    A partition read once is remembered with the offset read up to, so when it is
    assigned again (every rebalance revokes everything first) only what was
    written since is read. A partition lost without a clean revocation is
    forgotten, since its last writes may land after the next owner's.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self._topic = topic
        self.values: dict[bytes, bytes] = {}
        self.keys_of: dict[int, set[bytes]] = {}
        self.read_to: dict[int, int] = {}
        self.offset_of: dict[bytes, int] = {}
        self.partition_of: dict[bytes, int] = {}
        self.sent_to: dict[int, int] = {}

    @property
    def topic(self) -> str:
        return self._topic

    def get(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    def state_of(self, service: str) -> StoredState | None:
        """The stored state of ``service`` (StateError when its records are malformed)."""
        key = service.encode("utf-8")
        head = self.values.get(key)
        return None if head is None else decode_state(key, head, self.values.get)

    def put(self, key: bytes, partition: int, value: bytes | None) -> None:
        if value is None:
            self.values.pop(key, None)
            self.offset_of.pop(key, None)
            self.partition_of.pop(key, None)
            keys = self.keys_of.get(partition)
            if keys is not None:
                keys.discard(key)
            return
        self.values[key] = value
        self.partition_of[key] = partition
        self.keys_of.setdefault(partition, set()).add(key)

    def written(self, partition: int, offset: int) -> None:
        """A delivery report: our own write is already applied, read past it next time."""
        if offset + 1 > self.read_to.get(partition, 0):
            self.read_to[partition] = offset + 1

    def held_bytes(self) -> int:
        return sum(len(v) for v in self.values.values())

    def services(self) -> int:
        return sum(1 for k in self.values if key_kind(k) == "state")

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            for key in self.keys_of.pop(p, ()):
                self.values.pop(key, None)
                self.offset_of.pop(key, None)
                self.partition_of.pop(key, None)
            self.read_to.pop(p, None)
            self.sent_to.pop(p, None)

    def restore(
        self,
        partitions: Sequence[int],
        timeout_s: float = RESTORE_TIMEOUT_S,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[int, dict[int, RestorePlan]]:
        """Read the changelog partitions to their end (their last stable offset).

        Returns the number of records read and, per partition, what its new owner
        must re-send and delete (:func:`~streams.worker.state_records.plan_restore`).
        ``progress`` is told the records read so far after each batch (the worker's
        health counts a restore as progress).
        """
        if not partitions:
            return 0, {}
        reader_conf: dict[str, Any] = {"enable.partition.eof": True, "enable.auto.commit": False}
        consumer = Consumer(consumer_config(self.settings, None, **reader_conf))
        fresh: dict[int, set[bytes]] = {p: set() for p in partitions}
        chunks: dict[int, dict[bytes, bytes]] = {p: {} for p in partitions}
        try:
            consumer.assign(
                [
                    TopicPartition(self.topic, p, self.read_to.get(p, OFFSET_BEGINNING))
                    for p in partitions
                ]
            )
            remaining = set(partitions)
            deadline = time.monotonic() + timeout_s
            read = 0
            while remaining:
                if time.monotonic() > deadline:
                    raise RestoreFailed(
                        self.topic, sorted(remaining), f"not read to its end in {timeout_s:.0f} s"
                    )
                for msg in consumer.consume(num_messages=RESTORE_BATCH, timeout=0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            remaining.discard(msg.partition())
                            continue
                        if err.fatal():
                            raise RestoreFailed(self.topic, sorted(remaining), err.str())
                        log.warning("restoring %s: %s", self.topic, err.str())
                        continue
                    key, value = msg.key(), msg.value()
                    p, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                    self._apply(key, value, p, offset, fresh[p], chunks[p])
                    self.read_to[p] = offset + 1
                    read += 1
                if progress is not None:
                    progress(read)
        finally:
            consumer.close()
        plans = {}
        for p in partitions:
            records = {
                key: (self.offset_of.get(key, -1), self.values[key])
                for key in self.keys_of.get(p, ())
            }
            plan = plan_restore(records, self.sent_to.get(p, 0), chunks[p], fresh[p])
            for problem in plan.unreadable:
                log.error("stored state %s on %s[%d] is unreadable", problem, self.topic, p)
            plans[p] = plan
        return read, plans

    def _apply(
        self,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        offset: int,
        fresh: set[bytes],
        chunks: dict[bytes, bytes],
    ) -> None:
        if key is None:
            return
        if key == OUTBOX_SENT_KEY:
            try:
                self.sent_to[partition] = int(value or b"0")
            except ValueError:
                # Unreadable: every state counts as unsent (a duplicate at worst).
                log.warning(
                    "%s[%d]@%d: unreadable sent mark %r", self.topic, partition, offset, value
                )
                self.sent_to[partition] = 0
            return
        if key_kind(key) == "outbox":
            if value is None:
                chunks.pop(key, None)
            else:
                chunks[key] = value
            return
        if value is None:
            self.put(key, partition, None)
            fresh.discard(key)
            return
        self.put(key, partition, value)
        self.offset_of[key] = offset
        fresh.add(key)
