"""The kafka runtime (the default): the worker core on confluent-kafka clients, no Faust.

This module is the client wiring: a consumer (range assignor, so a worker owns
partition *n* of all three co-partitioned inputs), a producer, an admin client,
and what only they know — each input partition's position and high watermark,
pausing a partition whose records pile up in the merge, assignment callbacks,
committing offsets, and stopping. What to do with the records is the core's
(:mod:`streams.worker.core`); how work becomes durable and visible is the
checkpoint machine's (:mod:`streams.worker.checkpoint`).

One loop turn: consume a batch; admit each record (a bad record's dead letter is
produced at once); release one slice of events from the merge through the engine
(their outputs wait in their services' outbox); move sealed checkpoints on;
seal a checkpoint when due (:mod:`streams.worker.cadence`: every
``checkpoint_every_ms``, 10 ms by default, with the services whose alerts wait and
those touched ``state_store_delay_ms`` ago; every second while a backlog of at least
``BACKLOG_RECORDS`` is read, every ``checkpoint_records`` records or once the outbox
holds ``checkpoint_bytes``, with every touched service); commit completed
checkpoints' offsets, never past a record whose service's state is not stored. No turn
runs long: a burst of findings is worked off one slice per turn, so delivery reports,
commits and ``/healthz`` go on.

The state of the services of partition *p* lives in partition *p* of the state
changelog, read back when *p* is assigned (:mod:`streams.worker.changelog`).
Every assignment change revokes all partitions first (eager protocol); the
revocation checkpoints what was applied, so the next owner starts exactly there.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from agents.errors import RecordAt, RelsecError, StateError
from agents.model.events import parse_event
from streams.kafka.clients import admin_config, consumer_config, producer_config
from streams.kafka.errors import TopicError
from streams.kafka.topics import max_message_bytes
from streams.settings import Settings
from streams.worker import errors
from streams.worker.cadence import CheckpointCadence, SealKind
from streams.worker.changelog import ChangelogStore, ensure_state_changelog
from streams.worker.checkpoint import TP, AtLeastOnceCheckpoints, TransactionalCheckpoints
from streams.worker.core import WorkerCore
from streams.worker.delivery import RecordLimits
from streams.worker.errors import ConsumerFailed, RecordLimitError, WorkerError
from streams.worker.merge import CAUGHT_UP, LAGGING, UNKNOWN
from streams.worker.metrics import PipelineMetrics
from streams.worker.options import WorkerOptions, wall_ms
from streams.worker.records import InputRecord
from streams.worker.state_records import RECORD_OVERHEAD
from streams.worker.web import WorkerWeb

log = logging.getLogger("relsec.worker")

MIN_CHANGELOG_RECORD_BYTES = 4_096
"""The smallest changelog record limit the worker accepts: a state head with its
outbox references and the key of a long service name."""
HIGHWATER_TIMEOUT_S = 5.0
WATCHDOG_GRACE_S = 5.0
GC_FREEZE_EVERY_MS = 1_000
BACKLOG_RECORDS = 2_500
"""Input records waiting on the broker (our partitions, by the cached high watermarks)
from which a full consumed batch means a backlog and checkpoints go to the backlog
cadence: a fraction of a second of work. Below it a full batch is a moment of load in
live traffic, which keeps the live cadence (its alerts would otherwise wait up to
``backlog_checkpoint_interval_ms``)."""
GC_YOUNG_THRESHOLD = 50_000
"""Allocations between generation-0 collections while the loop runs (CPython's default:
700). The loop's path makes no cyclic garbage (tests/worker/test_gc_policy.py), so each
collection is pure cost: at 700 a backlog ran about 600 of them per 40,000 events, and
12-30% slower (docs/performance.md §19)."""


def learn_limits(settings: Settings, options: WorkerOptions) -> RecordLimits:
    """The record size limits of every topic the worker writes (read at start)."""
    topics = settings.topics
    names = [topics.alerts, topics.alerts_ocsf, topics.dlq, topics.state_changelog]
    names += [t for t in topics.inputs if t not in names]
    try:
        per_topic = max_message_bytes(settings, names)
    except TopicError as exc:
        # Without DescribeConfigs the producer's own limit is all the worker knows.
        log.warning("record size limits unknown (%s): assuming the producer's", exc)
        per_topic = {}
    limits = RecordLimits.learned(per_topic, options.producer_max_message_bytes)
    changelog = limits.limit(topics.state_changelog)
    if changelog < MIN_CHANGELOG_RECORD_BYTES:
        raise RecordLimitError(topics.state_changelog, changelog, MIN_CHANGELOG_RECORD_BYTES)
    log.info(
        "record size limits: %s",
        ", ".join(f"{name} {limits.limit(name):,}" for name in names),
    )
    return limits


class KafkaRuntime:
    """The worker loop on confluent-kafka (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        options: WorkerOptions,
        clock: Callable[[], int] = wall_ms,
        metrics: PipelineMetrics | None = None,
        limits: RecordLimits | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.clock = clock
        self.metrics = metrics or PipelineMetrics()
        topics = settings.topics
        self.inputs = set(topics.inputs)
        self.limits = limits or learn_limits(settings, options)
        self.store = ChangelogStore(settings, topics.state_changelog)
        self.core = WorkerCore(
            settings, options, self.store.state_of, "kafka", clock, self.metrics, self.limits
        )
        self.positions: dict[TP, int] = {}  # next offset delivered to us, per input partition
        self.committed: dict[TP, int] = {}
        self.highwater: dict[TP, int] = {}
        self.paused: set[TP] = set()
        self.since_checkpoint = 0  # input records taken since the last seal
        self.cadence = CheckpointCadence(
            every_ms=options.checkpoint_every_ms,
            store_delay_ms=0 if options.exactly_once else options.state_store_delay_ms,
            backlog_every_ms=options.backlog_checkpoint_interval_ms,
            max_records=options.checkpoint_records,
            max_outbox_bytes=options.checkpoint_bytes,
            last_ms=clock(),
        )
        self.commit_ready: dict[TP, int] = {}
        self.last_commit_ms = clock()
        self.running = True
        self.failed = False  # after an error nothing more is stored or committed
        self.abandon = False  # a second stop signal: the last checkpoint is not waited for
        self.shutdown_deadline: float | None = None
        # The broker's answer to the last high-watermark question, and when it was asked.
        self._fresh_highwater: dict[TP, int] = {}
        self._highwater_asked_ms = -1
        self.admin = AdminClient(admin_config(settings))

        # Records are produced in batches (a checkpoint's states, then its outputs): no
        # need to linger for more, and every millisecond here is alert latency. A batch
        # must fit the smallest topic it may go to.
        smallest = min([self.limits.default, *self.limits.per_topic.values()])
        producer_conf: dict[str, Any] = {
            "linger.ms": 1,
            "message.max.bytes": options.producer_max_message_bytes,
            "batch.size": max(1, min(1_000_000, smallest - RECORD_OVERHEAD)),
        }
        if options.exactly_once:
            instance = options.instance_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
            producer_conf["transactional.id"] = f"{topics.consumer_group}-{instance}"
            producer_conf["transaction.timeout.ms"] = options.transaction_timeout_ms
        self.producer = Producer(producer_config(settings, **producer_conf))
        self.checkpoints: AtLeastOnceCheckpoints | TransactionalCheckpoints
        if options.exactly_once:
            # Aborts what a previous life of this transactional id left open.
            self.producer.init_transactions(60)
            self.checkpoints = TransactionalCheckpoints(
                self.producer,
                self.store,
                topics,
                self.limits,
                offsets_payload=lambda offsets: [
                    TopicPartition(t, p, o) for (t, p), o in offsets.items()
                ],
                group_metadata=lambda: self.consumer.consumer_group_metadata(),
                is_abortable=_txn_requires_abort,
            )
            self.checkpoints.begin()
        else:
            self.checkpoints = AtLeastOnceCheckpoints(
                self.producer,
                self.store,
                topics,
                self.limits,
                metrics=self.metrics,
                max_in_flight=options.max_checkpoints_in_flight,
                wait_check=self._check_stop_overdue,
            )
        consumer_conf: dict[str, Any] = {
            "enable.auto.commit": False,
            "partition.assignment.strategy": "range",
            "fetch.wait.max.ms": options.fetch_max_wait_ms,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            "enable.partition.eof": True,  # see _reached_end
            "on_commit": self._on_commit,
        }
        if options.instance_id:
            consumer_conf["client.id"] = f"{topics.consumer_group}-{options.instance_id}"
        self.consumer = Consumer(
            consumer_config(settings, group_id=topics.consumer_group, **consumer_conf)
        )

    # -- assignment ------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions if tp.topic in self.inputs})
        # Only partitions owned without a break keep their cache (see ChangelogStore).
        self.store.forget((set(self.store.keys_of) | set(self.store.read_to)) - set(numbers))
        read, plans = self.store.restore(numbers, progress=lambda _: self.core.progress.beat())
        self.core.assigned_partitions(numbers)
        resent = self.checkpoints.resend(plans, self.store.read_to, self._check_stop_overdue)
        if resent:
            log.info("re-sent %d output(s) of restored states", resent)
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
        self.core.progress.beat()
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
            tp for tp in before_start if tp.topic not in self.core.merge(tp.partition).last_time_ms
        ]
        if not missing:
            return
        reader = Consumer(consumer_config(self.settings, None, **{"enable.partition.eof": True}))
        try:
            reader.assign(missing)
            remaining = {(tp.topic, tp.partition) for tp in missing}
            deadline = time.monotonic() + timeout_s
            codec = self.core.processor.codec
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
                        obj = codec.decode_event(value, event_type or "")
                        occurred_ms = parse_event(obj, expected_type=event_type).occurred_at_ms
                    except RelsecError:
                        continue  # a record the worker dead-lettered tells nothing
                    self.core.merge(key[1]).last_time_ms[key[0]] = occurred_ms
        finally:
            reader.close()

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
        if isinstance(self.checkpoints, TransactionalCheckpoints):
            self.checkpoints.abort()
        self._drop_partitions()
        self.store.forget(lost)

    def _drop_partitions(self) -> None:
        self.core.drop_partitions()
        if isinstance(self.checkpoints, AtLeastOnceCheckpoints):
            self.checkpoints.forget()  # nothing of theirs may be committed now
        self.commit_ready.clear()
        self.positions.clear()
        self.committed.clear()
        self.highwater.clear()
        self.paused.clear()
        self.since_checkpoint = 0
        self._fresh_highwater = {}
        self._highwater_asked_ms = -1

    def _on_commit(self, err: Any, partitions: list[Any]) -> None:
        if err is not None:
            # A later commit (at the latest the one at revocation) covers these offsets.
            log.warning("committing input offsets: %s", err.str())

    # -- what the merge asks -------------------------------------------------------------

    def lag_state(self, topic: str, partition: int) -> str:
        key = (topic, partition)
        position = self.positions.get(key)
        if position is None:
            return UNKNOWN
        high = self.highwater.get(key, -1)
        if position < high:
            return LAGGING
        # librdkafka's cached high watermark, from its latest fetch response.
        _, cached = self.consumer.get_watermark_offsets(
            TopicPartition(topic, partition), cached=True
        )
        if cached is not None and cached > high:
            self.highwater[key] = high = cached
        return CAUGHT_UP if position >= high else LAGGING

    def confirm_caught_up(self, topic: str, partition: int, since_ms: int) -> bool:
        """Whether the broker, asked at or after ``since_ms``, shows the topic caught up.

        Used before a record goes ahead of a caught-up but empty topic: the cached
        watermark comes from the last fetch, and records produced before this one
        may sit on the broker not fetched yet. One query covers every assigned input
        partition, and answers for every record that arrived before it was sent.
        """
        # Strictly after: a question asked in the millisecond the record arrived may
        # have been sent before it was consumed.
        if self._highwater_asked_ms <= since_ms:
            self._ask_highwaters()
        key = (topic, partition)
        high = self._fresh_highwater.get(key)
        return high is not None and self.positions.get(key, -1) >= high

    def _ask_highwaters(self) -> None:
        """Fresh high watermarks of every assigned input partition, in one request."""
        asked_ms = self.clock()
        request = {
            TopicPartition(topic, partition): OffsetSpec.latest()  # type: ignore[no-untyped-call]
            for topic, partition in self.positions
        }
        fresh: dict[TP, int] = {}
        try:
            futures = self.admin.list_offsets(request, request_timeout=HIGHWATER_TIMEOUT_S)
            for tp, future in futures.items():
                fresh[(tp.topic, tp.partition)] = future.result().offset
        except KafkaException as exc:
            # Unanswered: every topic counts as behind until a later question is answered.
            log.warning("high watermarks: %s", exc)
            fresh = {}
        self._fresh_highwater = fresh
        self._highwater_asked_ms = asked_ms
        for key, high in fresh.items():
            if high > self.highwater.get(key, -1):
                self.highwater[key] = high

    def _reached_end(self, key: TP, end: int) -> None:
        """The consumer handed us everything before ``end`` (a partition-EOF event).

        Our position otherwise counts delivered records, and a transactional producer
        (Kafka Connect with exactly-once sources, another stream processor) leaves a
        commit marker after its records: an offset never delivered. Without this, such
        a partition would look behind its high watermark for ever: the merge would wait
        ``merge_lagging_max_ms`` before each record it releases ahead of it, and the
        marker would never be committed past (lag monitors would see it as lag).
        """
        if key not in self.positions:
            return  # not ours (any more)
        if end > self.positions[key]:
            self.positions[key] = end
            self.since_checkpoint += 1  # so the new position is committed
        if end > self.highwater.get(key, -1):
            self.highwater[key] = end

    # -- the loop --------------------------------------------------------------------------

    def _admit(self, messages: list[Any]) -> None:
        now = self.clock()
        admit = self.core.admit
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._reached_end((msg.topic(), msg.partition()), msg.offset())
                    continue
                if err.fatal():
                    at = RecordAt(str(msg.topic()), msg.partition()) if msg.topic() else None
                    raise ConsumerFailed(at, err.str())
                log.warning("consumer: %s", err.str())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            self.positions[(topic, partition)] = offset + 1
            disposal = admit(InputRecord(topic, partition, offset, msg.key(), msg.value()), now)
            self.since_checkpoint += 1
            if disposal:
                # A dead letter or a re-keyed copy: acknowledged before the offsets of the
                # checkpoint it belongs to are committed.
                self.checkpoints.send_durable(disposal)

    def _release(self) -> bool:
        """One slice through the engine; True when it was cut at its size (more waits)."""
        released = self.core.release(self.clock(), self, confirm=self.confirm_caught_up)
        hold = self.checkpoints.hold
        for service, outputs in released.outputs.items():
            hold(service, outputs)
        self.since_checkpoint += len(released.items)
        self.producer.poll(0)
        return released.full

    def _pause_full_partitions(self) -> None:
        """Stop fetching an input partition whose records pile up in the merge (the
        engine takes one slice a turn); fetch it again once half of them are gone."""
        cap = self.options.merge_buffer_records
        pause, resume = [], []
        for partition, merge in self.core.merges.items():
            for topic, buffer in merge.buffers.items():
                key = (topic, partition)
                if key in self.paused:
                    if len(buffer) < cap // 2:
                        resume.append(key)
                elif len(buffer) >= cap:
                    pause.append(key)
        if pause:
            self.consumer.pause([TopicPartition(t, p) for t, p in pause])
            self.paused.update(pause)
        if resume:
            self.consumer.resume([TopicPartition(t, p) for t, p in resume])
            self.paused.difference_update(resume)

    def _offsets_to_commit(self) -> dict[TP, int]:
        """Each input partition's next offset to read: its first record still in the merge,
        or applied to a service whose state is not stored yet (after a partial seal)."""
        out: dict[TP, int] = {}
        unstored_from = self.core.processor.unstored_from
        for (topic, partition), position in self.positions.items():
            merge = self.core.merges.get(partition)
            held = merge.first_held(topic) if merge is not None else None
            offset = held.record.offset if held is not None else position
            unstored = unstored_from(topic, partition)
            if unstored is not None and unstored < offset:
                offset = unstored
            if self.committed.get((topic, partition)) != offset:
                out[(topic, partition)] = offset
        return out

    def _seal(self, kind: SealKind = "full") -> None:
        """Close the current at-least-once checkpoint and start it on its way: with every
        touched service, or (partial) with those whose outputs wait and those touched
        longest ago (:mod:`streams.worker.cadence`), and the input offsets that allows."""
        checkpoints = self.checkpoints
        assert isinstance(checkpoints, AtLeastOnceCheckpoints)
        now = self.clock()
        if kind == "full":
            states = self.core.take_states()
        else:
            due = self.core.processor.touched_before(self.cadence.store_before_ms(now))
            states = self.core.take_states(only=[*checkpoints.outbox, *due])
        offsets = self._offsets_to_commit()  # after the states are taken
        self.committed.update(offsets)
        checkpoints.seal(states, offsets)
        self.metrics.seals.labels(kind).inc()
        self.since_checkpoint = 0
        self.cadence.sealed(now)
        self.core.evict_idle_due(now)

    def checkpoint(self) -> None:
        """Make everything applied so far durable, visible and committed, and wait for it
        (before partitions are given up, and at shutdown)."""
        if isinstance(self.checkpoints, TransactionalCheckpoints):
            states = self.core.take_states()
            offsets = self._offsets_to_commit()  # after the states are taken: all of them
            self.checkpoints.commit(states, offsets)
            self.committed.update(offsets)
            self.since_checkpoint = 0
            self.cadence.sealed(self.clock())
            return
        self._seal()
        self.checkpoints.drain(check=self._check_stop_overdue)
        # The commits so far were asynchronous: the last word is a synchronous one.
        final = [TopicPartition(t, p, o) for (t, p), o in self.committed.items()]
        if final:
            self.consumer.commit(offsets=final, asynchronous=False)
        self.checkpoints.take_commits()
        self.commit_ready.clear()
        self.last_commit_ms = self.clock()

    def _commit_ready(self, now_ms: int) -> None:
        """Commit the offsets of completed checkpoints, without waiting, at most every
        ``commit_interval_ms`` (each commit is a write on the broker; a crash re-reads at
        most that much, and the stored states tell those records apart as duplicates)."""
        assert isinstance(self.checkpoints, AtLeastOnceCheckpoints)
        self.commit_ready.update(self.checkpoints.take_commits())
        if self.commit_ready and now_ms - self.last_commit_ms >= self.options.commit_interval_ms:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in self.commit_ready.items()],
                asynchronous=True,
            )
            self.commit_ready.clear()
            self.last_commit_ms = now_ms

    def _behind(self) -> int:
        """Records on the broker not yet delivered to us, over our input partitions (by
        librdkafka's cached high watermarks: no request)."""
        behind = 0
        for (topic, partition), position in self.positions.items():
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
            if high is not None and high > position:
                behind += high - position
        return behind

    def lags(self) -> list[tuple[str, int, int]]:
        return [
            (topic, partition, self.highwater[(topic, partition)] - position)
            for (topic, partition), position in list(self.positions.items())
            if self.highwater.get((topic, partition), -1) >= 0
        ]

    def health(self) -> dict[str, Any]:
        return self.core.health(checkpoints_in_flight=self.checkpoints_in_flight)

    @property
    def checkpoints_in_flight(self) -> int:
        if isinstance(self.checkpoints, AtLeastOnceCheckpoints):
            return self.checkpoints.in_flight
        return 0

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, *_: Any) -> None:
        """First signal: finish the last checkpoint and stop (within
        ``shutdown_timeout_ms``). A second signal: stop waiting for it."""
        if not self.running:
            self.abandon = True
        else:
            timeout_s = self.options.shutdown_timeout_ms / 1000
            self.shutdown_deadline = time.monotonic() + timeout_s
            # The backstop for waits inside librdkafka (a synchronous commit, leaving the
            # group), which no check of ours can interrupt. A grace for the checks first.
            watchdog = threading.Timer(timeout_s + WATCHDOG_GRACE_S, self._give_up)
            watchdog.daemon = True
            watchdog.start()
        self.running = False

    def _give_up(self) -> None:
        """Exit now: Kafka did not let the last checkpoint finish in time. Like a crash,
        this loses nothing (what was not committed is read again)."""
        print(
            "relsec: error: stopping without the last checkpoint: Kafka did not answer in "
            f"{self.options.shutdown_timeout_ms} ms; uncommitted input will be read again",
            file=sys.stderr,
            flush=True,
        )
        os._exit(2)

    def stop_overdue(self) -> bool:
        """A stop was asked twice, or has waited ``shutdown_timeout_ms``."""
        return self.abandon or (
            self.shutdown_deadline is not None and time.monotonic() > self.shutdown_deadline
        )

    def _check_stop_overdue(self, waiting_for: str) -> None:
        """Raise once a stop has waited long enough for Kafka (or was asked twice).

        At-least-once holds: nothing after the unacknowledged work was committed, so
        its records are read again by the next owner or at the next start.
        """
        if self.stop_overdue():
            raise errors.StopOverdue(
                f"stopping with {waiting_for} unacknowledged (is Kafka reachable?); "
                "their input is not committed and will be read again"
            )

    def run(self) -> None:
        """Consume, merge, apply and checkpoint until :meth:`stop` (SIGTERM/SIGINT)."""
        options = self.options
        self.consumer.subscribe(
            list(self.settings.topics.inputs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        # Short: held records and due checkpoints are looked at between consumes; none
        # while checkpoints wait for acknowledgements (only a poll delivers them) or a
        # slice of engine work is still waiting.
        idle_timeout_s = min(options.drain_interval_ms, 10) / 1000
        busy_timeout_s = min(idle_timeout_s, 0.001)
        exactly_once = isinstance(self.checkpoints, TransactionalCheckpoints)
        last_refresh = 0
        last_record_ms = self.clock()
        more = False
        progress = self.core.progress
        turn_seconds = self.metrics.turn_seconds
        saved_thresholds = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *saved_thresholds[1:])
        try:
            while self.running:
                started = time.perf_counter()
                busy = more or self.checkpoints_in_flight
                messages = self.consumer.consume(
                    num_messages=options.batch_records,
                    timeout=0 if more else busy_timeout_s if busy else idle_timeout_s,
                )
                if messages:
                    self._admit(messages)
                    last_record_ms = self.clock()
                more = self._release() if self.core.merges else False
                if self.paused or more:
                    self._pause_full_partitions()
                if (
                    isinstance(self.checkpoints, AtLeastOnceCheckpoints)
                    and self.checkpoints.in_flight
                ):
                    self.checkpoints.advance()
                now = self.clock()
                progress.beat()
                backlog = more or (
                    len(messages) >= options.batch_records and self._behind() >= BACKLOG_RECORDS
                )
                due = self.cadence.due(
                    now,
                    self.since_checkpoint,
                    bool(self.checkpoints.outbox),
                    self.checkpoints.outbox_bytes,
                    backlog,
                    self.core.processor.oldest_touch_ms(),
                    idle=now - last_record_ms >= options.checkpoint_every_ms
                    and not self.core.buffered(),
                )
                if due is not None:
                    if exactly_once:
                        self.checkpoint()
                    else:
                        self._seal(due)
                if not exactly_once:
                    self._commit_ready(now)
                if now - last_refresh >= GC_FREEZE_EVERY_MS:
                    self.core.refresh_metrics(self.lags(), self.store.held_bytes())
                    # What survived this long is the services' state: out of the cyclic
                    # collector's sight, or each full collection walks all of it (a
                    # 230 ms pause at 2,000 services). The worker's path makes no cyclic
                    # garbage (tests/worker/test_gc_policy.py); refcounting frees the rest.
                    gc.freeze()
                    last_refresh = now
                turn_seconds.observe(time.perf_counter() - started)
            self.checkpoint()
        except BaseException:
            self.failed = True
            raise
        finally:
            gc.set_threshold(*saved_thresholds)
            # Unless Kafka did not answer in time: closing would wait for it (librdkafka
            # leaves the group and waits out its requests, minutes); the caller exits.
            if not self.stop_overdue():
                # close() leaves the group, which revokes (and so checkpoints) once more,
                # unless the loop failed: then what is stored and committed stays as it was.
                try:
                    self.consumer.close()
                except Exception as exc:  # the loop's own error, if any, is what matters
                    log.warning("closing the consumer: %s", exc)
                self.producer.flush(10)


def _txn_requires_abort(exc: BaseException) -> bool:
    error = exc.args[0] if exc.args else None
    return bool(
        isinstance(exc, KafkaException) and error is not None and error.txn_requires_abort()
    )


def serve(settings: Settings, options: WorkerOptions) -> None:
    """Run the kafka runtime with its web endpoint until SIGINT/SIGTERM."""
    ensure_state_changelog(settings, options.partitions, options.replication_factor or 1)
    runtime = KafkaRuntime(settings, options)
    web = WorkerWeb(
        options.web_host,
        options.web_port,
        runtime.metrics,
        runtime.health,
        read_timeout_s=options.web_read_timeout_ms / 1000,
        max_connections=options.web_max_connections,
    )
    signal.signal(signal.SIGTERM, runtime.stop)
    signal.signal(signal.SIGINT, runtime.stop)
    try:
        runtime.run()
    except (WorkerError, StateError) as exc:
        web.close()
        print(f"relsec: error: {exc}", file=sys.stderr, flush=True)
        # At interpreter exit librdkafka's handles would still wait for Kafka (minutes,
        # when Kafka is gone); nothing more may be stored or committed anyway.
        os._exit(2)
    finally:
        web.close()
