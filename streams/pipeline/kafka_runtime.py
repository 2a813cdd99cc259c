"""The worker on a confluent-kafka consumer: the engine, merge and checkpoints, no Faust.

One loop turn: consume a batch; admit each record (decode, validate,
partition check: a bad record's dead letter is produced at once); valid events
wait in the event-time merge of their partition number; what the merge releases
goes through the engine, and its outputs wait in the outbox of their service.

A checkpoint (every ``checkpoint_every_ms``, 25 ms by default, or
``checkpoint_records``, and before partitions are given up) makes the work
durable, then visible:

* at-least-once (default): write the touched services' states, each with its
  outbox, to the changelog topic and wait for them; send the outboxes and wait;
  mark each changelog partition's outboxes as sent; commit each input partition
  up to its first record still held in the merge. An alert never goes out before
  the state that fired it is stored, so whoever owns the service next can
  retract it; a state whose outbox may not have gone out is re-sent by whoever
  restores it (a duplicate at worst, never a loss).
* exactly-once (``--exactly-once``): the states, the outputs and the input
  offsets (``send_offsets_to_transaction`` with the consumer's group metadata,
  KIP-447) go in one Kafka transaction per checkpoint. A zombie's commit is
  refused by the group coordinator once its generation is gone.

Assignment uses the range assignor: with co-partitioned inputs it gives one
worker the same partition number of all three topics, which the join needs.
The state of the services of partition *p* lives in partition *p* of
:attr:`Topics.state_changelog` — the same topic and record format as the Faust
runtime's Table — and is read back when *p* is assigned. Every assignment
change revokes all partitions first (eager protocol); the revocation
checkpoints what was applied, so the next owner starts exactly there.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from agents.engine import EngineConfig
from agents.errors import RelsecError, StateError, TopicError
from agents.model.events import parse_event
from streams.codecs import make_codec
from streams.kafka.clients import admin_config, consumer_config, producer_config
from streams.pipeline.merge import CAUGHT_UP, LAGGING, UNKNOWN, PartitionMerge
from streams.pipeline.metrics import PipelineMetrics
from streams.pipeline.options import WorkerOptions, wall_ms
from streams.pipeline.processor import Admitted, InputRecord, Output, Processor, unpack_state
from streams.settings import Settings

log = logging.getLogger("relsec.worker")

RESTORE_TIMEOUT_S = 300.0
# A changelog record per partition: outboxes of states stored below this offset were sent.
OUTBOX_SENT_KEY = b"\x00relsec:outbox-sent"
HEALTH_STALL_MS = 60_000
_TP = tuple[str, int]


class OutputError(RelsecError):
    """Output records were not delivered (or a transaction failed): nothing is committed."""


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


def send_outputs(producer: Any, outputs: Sequence[Output]) -> None:
    """Produce each output (delivery reports go to the producer's ``on_delivery``),
    waiting for room when librdkafka's queue is full; shared by both runtimes."""
    produce = producer.produce
    for o in outputs:
        while True:
            try:
                if o.partition is None:
                    produce(o.topic, o.value, o.key)
                else:
                    produce(o.topic, o.value, o.key, o.partition)
                break
            except BufferError:
                producer.poll(0.05)
    producer.poll(0)


class KafkaWorker:
    """relsec's worker loop on confluent-kafka (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        options: WorkerOptions,
        clock: Callable[[], int] = wall_ms,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.clock = clock
        self.metrics = metrics or PipelineMetrics()
        topics = settings.topics
        self.inputs = set(topics.inputs)
        self.store = ChangelogStore(settings, topics.state_changelog)
        self.processor = Processor(
            topics,
            make_codec(settings),
            EngineConfig(allowed_lateness_ms=settings.allowed_lateness_ms),
            options.partitions,
            self.store.get,
            clock,
            self.metrics,
        )
        self.merges: dict[int, PartitionMerge[Admitted]] = {}
        self.positions: dict[_TP, int] = {}  # next offset delivered to us, per input partition
        self.committed: dict[_TP, int] = {}
        self.highwater: dict[_TP, int] = {}
        self.assigned: set[int] = set()
        self.since_checkpoint = 0
        self.last_checkpoint_ms = clock()
        self.last_turn_ms = clock()
        self.running = True
        self.failed = False  # after an error nothing more is stored or committed
        self.delivery_errors: list[str] = []
        # Engine outputs wait here, per service, until their state is stored (checkpoint).
        self.outbox: dict[str, list[Output]] = {}
        self._fresh_highwater: dict[_TP, int] = {}
        self.state_written: dict[int, int] = {}  # changelog partition -> last offset stored

        producer_conf: dict[str, Any] = {"linger.ms": 5, "on_delivery": self._on_delivery}
        if options.exactly_once:
            instance = options.instance_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
            producer_conf["transactional.id"] = f"{topics.consumer_group}-{instance}"
            producer_conf["transaction.timeout.ms"] = options.transaction_timeout_ms
        self.producer = Producer(producer_config(settings, **producer_conf))
        if options.exactly_once:
            # Aborts what a previous life of this transactional id left open.
            self.producer.init_transactions(60)
            self.producer.begin_transaction()
        consumer_conf: dict[str, Any] = {
            "enable.auto.commit": False,
            "partition.assignment.strategy": "range",
            "fetch.wait.max.ms": options.fetch_max_wait_ms,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
        }
        if options.instance_id:
            consumer_conf["client.id"] = f"{topics.consumer_group}-{options.instance_id}"
        self.consumer = Consumer(
            consumer_config(settings, group_id=topics.consumer_group, **consumer_conf)
        )

    # -- delivery --------------------------------------------------------------

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.delivery_errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")
        elif msg.topic() == self.store.topic:
            partition, offset = msg.partition(), msg.offset()
            self.store.written(partition, offset)
            if msg.key() != OUTBOX_SENT_KEY and offset > self.state_written.get(partition, -1):
                self.state_written[partition] = offset

    def _produce(self, outputs: Sequence[Output]) -> None:
        send_outputs(self.producer, outputs)

    def _flush(self) -> None:
        while self.producer.flush(5.0):
            log.warning("waiting for %d output record(s) to be delivered", len(self.producer))
        if self.delivery_errors:
            detail = "; ".join(self.delivery_errors[:5])
            raise OutputError(f"output records were not delivered, not committing: {detail}")

    # -- assignment --------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions if tp.topic in self.inputs})
        # Only partitions owned without a break keep their cache (see ChangelogStore).
        self.store.forget((set(self.store.keys_of) | set(self.store.read_to)) - set(numbers))
        read, unsent = self.store.restore(numbers)
        self.assigned = set(numbers)
        self._resend_outboxes(unsent)
        committed = consumer.committed(partitions, timeout=30)
        resumed: list[Any] = []
        for tp in committed:
            if tp.topic not in self.inputs:
                continue
            key = (tp.topic, tp.partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            start = tp.offset if tp.offset != OFFSET_INVALID and tp.offset >= 0 else low
            self.positions[key] = start
            self.committed[key] = start
            self.highwater[key] = high
            if start > low:
                resumed.append(TopicPartition(tp.topic, tp.partition, start - 1))
        self._seed_event_times(resumed)
        log.info(
            "assigned partitions %s; %d state record(s) read from %s",
            numbers,
            read,
            self.store.topic,
        )

    def _seed_event_times(self, before_start: list[Any], timeout_s: float = 10.0) -> None:
        """Tell each partition's merge the event time of the record just before where
        reading resumes, per topic: what "far ahead" is measured from when a burst comes
        right after an assignment (a new owner knows nothing of the stream otherwise)."""
        missing = [
            tp for tp in before_start if tp.topic not in self._merge(tp.partition).last_time_ms
        ]
        if not missing:
            return
        reader = Consumer(consumer_config(self.settings, None, **{"enable.partition.eof": True}))
        try:
            reader.assign(missing)
            remaining = {(tp.topic, tp.partition) for tp in missing}
            deadline = time.monotonic() + timeout_s
            while remaining and time.monotonic() < deadline:
                for msg in reader.consume(num_messages=len(missing), timeout=0.5):
                    key = (str(msg.topic()), int(msg.partition() or 0))
                    if key not in remaining:
                        continue
                    remaining.discard(key)
                    value = msg.value()
                    if msg.error() is not None or value is None:
                        continue
                    event_type = self.settings.topics.type_for_input(key[0])
                    try:
                        obj = self.processor.codec.decode_event(value, event_type or "")
                        occurred_ms = parse_event(obj, expected_type=event_type).occurred_at_ms
                    except RelsecError:
                        continue  # a record the worker dead-lettered tells nothing
                    self._merge(key[1]).last_time_ms[key[0]] = occurred_ms
        finally:
            reader.close()

    def _merge(self, partition: int) -> PartitionMerge[Admitted]:
        merge = self.merges.get(partition)
        if merge is None:
            merge = self.merges[partition] = PartitionMerge(self.settings.topics.inputs)
        return merge

    def _resend_outboxes(self, states: list[bytes]) -> None:
        """Send the outboxes of restored states whose sending was never confirmed.

        Their owner stored them and may have died before sending: re-sending is at
        worst a duplicate (same alert ids), never a loss.
        """
        outputs: list[Output] = []
        for data in states:
            try:
                outputs.extend(unpack_state(data)[2])
            except StateError as exc:
                log.warning("stored state unreadable, its outbox is skipped: %s", exc)
        if outputs:
            self._produce(outputs)
            self._flush()
            log.info("re-sent %d output(s) of restored states", len(outputs))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            if not self.failed:
                self.checkpoint()
        finally:
            self._drop_partitions()
        log.info("revoked partitions %s", sorted({tp.partition for tp in partitions}))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        lost = {tp.partition for tp in partitions}
        log.warning("partitions %s lost without revocation: forgetting their state", sorted(lost))
        if self.options.exactly_once:
            self.producer.abort_transaction()
            self.producer.begin_transaction()
        self._drop_partitions()
        self.store.forget(lost)

    def _drop_partitions(self) -> None:
        for merge in self.merges.values():
            merge.clear()  # emptied, not dropped: each keeps its topics' newest event times
        self.processor.forget()
        self.outbox.clear()
        self.positions.clear()
        self.committed.clear()
        self.highwater.clear()
        self.assigned = set()
        self.since_checkpoint = 0

    # -- the loop ----------------------------------------------------------------

    def _lag_state(self, partition: int) -> Callable[[str], str]:
        consumer = self.consumer

        def state(topic: str) -> str:
            key = (topic, partition)
            position = self.positions.get(key)
            if position is None:
                return UNKNOWN
            high = self.highwater.get(key, -1)
            if position < high:
                return LAGGING
            # librdkafka's cached high watermark, from its latest fetch response.
            tp = TopicPartition(topic, partition)
            _, cached = consumer.get_watermark_offsets(tp, cached=True)
            if cached is not None and cached > high:
                self.highwater[key] = high = cached
            return CAUGHT_UP if position >= high else LAGGING

        return state

    def _confirm_caught_up(self, partition: int) -> Callable[[str], bool]:
        """Ask the broker for the high watermark (once per loop turn and partition).

        Used only when a record is far ahead of a caught-up topic (a burst): the cached
        watermark comes from the last fetch, and the topic's records of the same burst
        may sit on the broker not fetched yet.
        """

        def confirm(topic: str) -> bool:
            key = (topic, partition)
            high = self._fresh_highwater.get(key)
            if high is None:
                try:
                    _, high = self.consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=5
                    )
                except KafkaException as exc:
                    log.warning("high watermark of %s[%d]: %s", topic, partition, exc)
                    return False
                self._fresh_highwater[key] = high
                if high > self.highwater.get(key, -1):
                    self.highwater[key] = high
            return self.positions.get(key, -1) >= high

        return confirm

    def _admit(self, messages: list[Any]) -> None:
        now = self.clock()
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise RelsecError(f"consumer failed: {err.str()}")
                log.warning("consumer: %s", err.str())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            self.positions[(topic, partition)] = offset + 1
            record = InputRecord(topic, partition, offset, msg.key(), msg.value())
            admitted = self.processor.admit(record)
            self.since_checkpoint += 1
            if isinstance(admitted, Admitted):
                self._merge(partition).add(topic, admitted.key, now, admitted)
            else:
                self._produce(admitted)

    def _release(self) -> int:
        now = self.clock()
        self._fresh_highwater.clear()
        released = 0
        for partition, merge in self.merges.items():
            for _, admitted in merge.release(
                self._lag_state(partition),
                now,
                self.options.merge_idle_ms,
                self.options.merge_lagging_max_ms,
                caught_up_grace_ms=self.options.merge_caught_up_grace_ms,
                far_ahead_ms=self.settings.allowed_lateness_ms // 2,
                far_ahead_grace_ms=self.options.merge_far_ahead_grace_ms,
                confirm_caught_up=self._confirm_caught_up(partition),
            ):
                outputs = self.processor.apply(admitted)
                if outputs:
                    service = admitted.event.service
                    held = self.outbox.get(service)
                    if held is None:
                        self.outbox[service] = outputs
                    else:
                        held.extend(outputs)
                released += 1
        self.since_checkpoint += released
        self.producer.poll(0)
        return released

    def _offsets_to_commit(self) -> list[Any]:
        """Each input partition's next offset to read: its first record still in the merge."""
        out = []
        for (topic, partition), position in self.positions.items():
            merge = self.merges.get(partition)
            held = merge.first_held(topic) if merge is not None else None
            offset = held.record.offset if held is not None else position
            if self.committed.get((topic, partition)) != offset:
                out.append(TopicPartition(topic, partition, offset))
        return out

    def checkpoint(self) -> None:
        """Make what was applied durable and visible: states, then outputs, then offsets.

        At-least-once: every state is stored with its service's outbox before any of
        those outputs is sent, so an alert never goes out unless the state that
        explains it (and can retract it) survives the worker; then the outputs are
        sent, the partitions' outbox-sent marks written, and the input offsets
        committed. Exactly-once: all of it in one transaction.
        """
        offsets = self._offsets_to_commit()
        if self.options.exactly_once:
            self._checkpoint_transaction(offsets)
        else:
            self._checkpoint_at_least_once(offsets)
        for tp in offsets:
            self.committed[(tp.topic, tp.partition)] = tp.offset
        self.since_checkpoint = 0
        self.last_checkpoint_ms = self.clock()

    def _store_dirty(self, with_outbox: bool) -> None:
        for service, partition, data in self.processor.take_dirty(
            self.outbox if with_outbox else None
        ):
            key = service.encode("utf-8")
            self.store.put(key, partition, data)
            self._produce([Output(self.store.topic, key, data, partition)])

    def _take_outbox(self) -> list[Output]:
        outputs = [o for held in self.outbox.values() for o in held]
        self.outbox.clear()
        return outputs

    def _checkpoint_at_least_once(self, offsets: list[Any]) -> None:
        self.state_written.clear()
        self._store_dirty(with_outbox=True)
        self._flush()  # states stored (and dead letters of admission delivered)
        outputs = self._take_outbox()
        if outputs:
            self._produce(outputs)
            self._flush()
            for partition, offset in self.state_written.items():
                self._produce(
                    [Output(self.store.topic, OUTBOX_SENT_KEY, str(offset + 1).encode(), partition)]
                )
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=False)

    def _checkpoint_transaction(self, offsets: list[Any]) -> None:
        self._store_dirty(with_outbox=False)
        self._produce(self._take_outbox())
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(
                    offsets, self.consumer.consumer_group_metadata(), 30
                )
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            error = exc.args[0]
            # The in-memory state is ahead of what was committed: only a restart from the
            # committed offsets and state is consistent again.
            if error.txn_requires_abort():
                self.producer.abort_transaction(30)
            raise OutputError(f"transaction not committed: {error.str()}") from None
        if self.delivery_errors:
            raise OutputError("; ".join(self.delivery_errors[:5]))
        self.producer.begin_transaction()

    def _checkpoint_due(self, now_ms: int, backlog: bool) -> bool:
        """Every ``checkpoint_every_ms`` when live; while a full batch keeps coming (a
        backlog, where latency means little and each checkpoint serializes every touched
        service), ten times less often, or every ``checkpoint_records``."""
        if not self.since_checkpoint:
            return False
        if self.since_checkpoint >= self.options.checkpoint_records:
            return True
        every_ms = self.options.checkpoint_every_ms * (10 if backlog else 1)
        return now_ms - self.last_checkpoint_ms >= every_ms

    def refresh_metrics(self) -> None:
        for (topic, partition), position in self.positions.items():
            high = self.highwater.get((topic, partition))
            if high is not None and high >= 0:
                self.metrics.lag.labels(topic, str(partition)).set(max(0, high - position))
        self.metrics.services.set(len(self.processor.engines))
        self.metrics.merge_buffered.set(sum(len(m) for m in self.merges.values()))

    def health(self) -> dict[str, Any]:
        idle_ms = self.clock() - self.last_turn_ms
        return {
            "status": "ok" if idle_ms < HEALTH_STALL_MS else "stalled",
            "runtime": "kafka",
            "partitions": sorted(self.assigned),
            "services_cached": len(self.processor.engines),
            "last_loop_ms_ago": idle_ms,
        }

    def stop(self, *_: Any) -> None:
        self.running = False

    def run(self) -> None:
        """Consume, merge, apply and checkpoint until :meth:`stop` (SIGTERM/SIGINT)."""
        options = self.options
        self.consumer.subscribe(
            list(self.settings.topics.inputs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        # Short: held records and due checkpoints are looked at between consumes.
        timeout_s = min(options.drain_interval_ms, 10) / 1000
        last_refresh = 0
        try:
            while self.running:
                messages = self.consumer.consume(
                    num_messages=options.batch_records, timeout=timeout_s
                )
                if messages:
                    self._admit(messages)
                if self.merges:
                    self._release()
                now = self.clock()
                self.last_turn_ms = now
                if self._checkpoint_due(now, backlog=len(messages) >= options.batch_records):
                    self.checkpoint()
                if now - last_refresh >= 1_000:
                    self.refresh_metrics()
                    last_refresh = now
            self.checkpoint()
        except BaseException:
            self.failed = True
            raise
        finally:
            # close() leaves the group, which revokes (and so checkpoints) once more,
            # unless the loop failed: then what is stored and committed stays as it was.
            try:
                self.consumer.close()
            except Exception as exc:  # the loop's own error, if any, is what matters
                log.warning("closing the consumer: %s", exc)
            self.producer.flush(10)


def run_kafka_worker(settings: Settings, options: WorkerOptions) -> None:
    """Run the confluent-kafka worker with its web endpoint until SIGINT/SIGTERM."""
    from streams.pipeline.web import WorkerWeb

    ensure_state_changelog(settings, options.partitions, options.replication_factor)
    worker = KafkaWorker(settings, options)
    web = WorkerWeb(options.web_host, options.web_port, worker.metrics, worker.health)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    try:
        worker.run()
    finally:
        web.close()
