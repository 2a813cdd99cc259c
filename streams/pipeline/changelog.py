"""The worker's state changelog: the compacted topic holding each service's engine state.

Partition *p* of :attr:`Topics.state_changelog` holds the states of the services
of input partition *p* (the same topic and record format as the Faust runtime's
Table), each stored with its outbox: the outputs its events produced, when the
state is stored before they are sent. A per-partition *outbox-sent* record
(key :data:`OUTBOX_SENT_KEY`, value an offset) says that the outboxes of states
stored below that offset went out; whoever restores a state stored at or after
it re-sends its outbox (a duplicate at worst, never a loss).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from agents.errors import StateError, TopicError
from streams.kafka.clients import admin_config, consumer_config
from streams.settings import Settings

log = logging.getLogger("relsec.worker")

RESTORE_TIMEOUT_S = 300.0
# A changelog record per partition: outboxes of states stored below this offset were sent.
OUTBOX_SENT_KEY = b"\x00relsec:outbox-sent"


def ensure_state_changelog(settings: Settings, partitions: int, replication_factor: int) -> None:
    """Create the compacted state topic if missing; refuse one with another partition count."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    name = settings.topics.state_changelog
    admin = AdminClient(admin_config(settings))
    existing = admin.list_topics(timeout=15).topics.get(name)
    if existing is not None and existing.error is None:
        if len(existing.partitions) != partitions:
            raise TopicError(
                f"{name} has {len(existing.partitions)} partitions but the inputs have "
                f"{partitions}: a service's state must live on its input partition number"
            )
        return
    config = {"cleanup.policy": "compact"}
    if replication_factor >= 3:
        config["min.insync.replicas"] = "2"
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                config=config,
            )
        ],
        request_timeout=30,
    )
    try:
        futures[name].result()
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise TopicError(f"cannot create {name}: {exc.args[0].str()}") from None


class ChangelogStore:
    """The engine state of every service of the assigned partitions, kept from the changelog.

    A partition read once is remembered with the offset read up to, so when it is
    assigned again (every rebalance revokes everything first) only what was
    written since is read. A partition lost without a clean revocation is
    forgotten, since its last writes may land after the next owner's.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.values: dict[bytes, bytes] = {}
        self.keys_of: dict[int, set[bytes]] = {}
        self.read_to: dict[int, int] = {}
        self.offset_of: dict[bytes, int] = {}
        self.partition_of: dict[bytes, int] = {}
        self.sent_to: dict[int, int] = {}

    def get(self, service: str) -> bytes | None:
        return self.values.get(service.encode("utf-8"))

    def put(self, key: bytes, partition: int, value: bytes) -> None:
        self.values[key] = value
        self.partition_of[key] = partition
        self.keys_of.setdefault(partition, set()).add(key)

    def written(self, partition: int, offset: int) -> None:
        """A delivery report: our own write is already applied, read past it next time."""
        if offset + 1 > self.read_to.get(partition, 0):
            self.read_to[partition] = offset + 1

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            for key in self.keys_of.pop(p, ()):
                self.values.pop(key, None)
                self.offset_of.pop(key, None)
                self.partition_of.pop(key, None)
            self.read_to.pop(p, None)
            self.sent_to.pop(p, None)

    def restore(
        self, partitions: Sequence[int], timeout_s: float = RESTORE_TIMEOUT_S
    ) -> tuple[int, list[bytes]]:
        """Read the changelog partitions to their end (their last stable offset).

        Returns the number of records read and the states whose outbox may not have
        been sent (stored at or after their partition's outbox-sent mark).
        """
        if not partitions:
            return 0, []
        reader_conf: dict[str, Any] = {"enable.partition.eof": True, "enable.auto.commit": False}
        consumer = Consumer(consumer_config(self.settings, None, **reader_conf))
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
            touched: set[bytes] = set()
            while remaining:
                if time.monotonic() > deadline:
                    raise StateError(
                        f"restoring {self.topic} partitions {sorted(remaining)} took over "
                        f"{timeout_s:.0f} s"
                    )
                for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            remaining.discard(msg.partition())
                            continue
                        if err.fatal():
                            raise StateError(f"restoring {self.topic}: {err.str()}")
                        log.warning("restoring %s: %s", self.topic, err.str())
                        continue
                    key, value = msg.key(), msg.value()
                    p, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                    if key == OUTBOX_SENT_KEY:
                        self.sent_to[p] = int(value or b"0")
                    elif key is not None:
                        if value is None:
                            self.values.pop(key, None)
                        else:
                            self.put(key, p, value)
                            self.offset_of[key] = offset
                            touched.add(key)
                    self.read_to[p] = offset + 1
                    read += 1
            unsent = [
                self.values[key]
                for key in touched
                if key in self.values
                and self.offset_of[key] >= self.sent_to.get(self.partition_of[key], 0)
            ]
            return read, unsent
        finally:
            consumer.close()
