"""The worker on a confluent-kafka consumer: the engine, merge and checkpoints, no Faust.

One loop turn: consume a batch; admit each record (decode, validate,
partition check: a bad record's dead letter is produced at once); valid events
wait in the event-time merge of their partition number; what the merge releases
goes through the engine, and its outputs wait in the outbox of their service.

A checkpoint (every ``checkpoint_every_ms``, 10 ms by default, 250 ms while a
backlog is read, or every ``checkpoint_records``, and before partitions are given
up) makes the work durable, then visible:

* at-least-once (default): the checkpoint is *sealed* — the touched services'
  states, each with its outbox, are produced to the changelog topic — and the
  loop goes on. Delivery reports move it along (:meth:`KafkaWorker._advance`):
  once its states are acknowledged its outputs are sent; once those are
  acknowledged it completes, oldest first: each changelog partition gets an
  outbox-sent mark, and its input offsets (each partition up to its first record
  still held in the merge) are committed, asynchronously, at most every
  ``commit_interval_ms``. An alert never goes out before the state that fired it
  is stored, so whoever owns the service next can retract it; a state whose
  outbox may not have gone out is re-sent by whoever restores it (a duplicate at
  worst, never a loss). A service stored again before its earlier outputs were
  acknowledged carries them in its new state. Before partitions are given up,
  and at shutdown, everything in flight is waited for and committed synchronously.
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

import functools
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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

from agents.engine import EngineConfig
from agents.errors import RelsecError, StateError
from agents.model.events import parse_event
from streams.codecs import make_codec
from streams.kafka.clients import admin_config, consumer_config, producer_config
from streams.pipeline.changelog import (
    OUTBOX_SENT_KEY,
    ChangelogStore,
    ensure_state_changelog,
)
from streams.pipeline.merge import CAUGHT_UP, LAGGING, UNKNOWN, PartitionMerge
from streams.pipeline.metrics import PipelineMetrics
from streams.pipeline.options import WorkerOptions, wall_ms
from streams.pipeline.processor import Admitted, InputRecord, Output, Processor, unpack_state
from streams.settings import Settings

log = logging.getLogger("relsec.worker")

HEALTH_STALL_MS = 60_000
MAX_PENDING_CHECKPOINTS = 8
"""Checkpoints allowed in flight before the loop waits for the oldest (backpressure)."""
DRAIN_TIMEOUT_S = 120.0
_TP = tuple[str, int]


class OutputError(RelsecError):
    """Output records were not delivered (or a transaction failed): nothing is committed."""


def send_outputs(
    producer: Any, outputs: Sequence[Output], on_delivery: Callable[[Any, Any], None] | None = None
) -> None:
    """Produce each output, waiting for room when librdkafka's queue is full; shared by
    both runtimes. Delivery reports go to ``on_delivery`` when given, else to the
    producer's own."""
    produce = producer.produce
    extra = {} if on_delivery is None else {"on_delivery": on_delivery}
    for o in outputs:
        while True:
            try:
                if o.partition is None:
                    produce(o.topic, o.value, o.key, **extra)
                else:
                    produce(o.topic, o.value, o.key, o.partition, **extra)
                break
            except BufferError:
                producer.poll(0.05)
    producer.poll(0)


@dataclass(slots=True, eq=False)
class PendingCheckpoint:
    """One at-least-once checkpoint on its way: what it waits for, and what it releases.

    Its stages, each started by the acknowledgement of the previous one, never by
    waiting: (1) its states and the records that must be durable before its offsets
    are committed (dead letters, re-keyed records) are acknowledged; (2) its outputs
    are sent and acknowledged; (3) the outbox-sent marks are written and its input
    offsets committed.
    """

    durable_pending: int = 0
    outputs: list[Output] = field(default_factory=list)
    outputs_pending: int = 0
    outputs_sent: bool = False
    offsets: list[Any] = field(default_factory=list)
    state_last: dict[int, int] = field(default_factory=dict)  # changelog partition -> offset
    errors: list[str] = field(default_factory=list)
    sealed_at: float = 0.0
    contributed: dict[str, int] = field(default_factory=dict)  # service -> outputs it added
    carried: bool = False  # its states also hold earlier checkpoints' unacknowledged outputs

    def durable_acked(self, err: Any, msg: Any) -> None:
        self.durable_pending -= 1
        if err is not None:
            self.errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    def output_acked(self, err: Any, msg: Any) -> None:
        self.outputs_pending -= 1
        if err is not None:
            self.errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    @property
    def done(self) -> bool:
        return self.outputs_sent and not self.outputs_pending


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
        self.abandon = False  # a second stop signal: the last checkpoint is not waited for
        self.shutdown_deadline: float | None = None
        self.delivery_errors: list[str] = []
        # Engine outputs wait here, per service, until their state is stored (checkpoint).
        self.outbox: dict[str, list[Output]] = {}
        # The broker's answer to the last high-watermark question, and when it was asked.
        self._fresh_highwater: dict[_TP, int] = {}
        self._highwater_asked_ms = -1
        self.admin = AdminClient(admin_config(settings))
        # At-least-once: the checkpoint collecting this interval's work, and those sealed
        # but not yet committed, oldest first.
        self.current = PendingCheckpoint()
        self.pending: deque[PendingCheckpoint] = deque()
        # Per service, the outputs of sealed checkpoints not yet acknowledged: stored again
        # with the service's next state, which replaces the one that carried them.
        self.unsent: dict[str, list[Output]] = {}
        self.commit_ready: dict[_TP, int] = {}  # offsets of completed checkpoints, not committed
        self.last_commit_ms = clock()

        # Records are produced in batches (a checkpoint's states, then its outputs): no
        # need to linger for more, and every millisecond here is alert latency.
        producer_conf: dict[str, Any] = {"linger.ms": 1, "on_delivery": self._on_delivery}
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
            "enable.partition.eof": True,  # see _reached_end
            "on_commit": self._on_commit,
        }
        if options.instance_id:
            consumer_conf["client.id"] = f"{topics.consumer_group}-{options.instance_id}"
        self.consumer = Consumer(
            consumer_config(settings, group_id=topics.consumer_group, **consumer_conf)
        )

    # -- delivery --------------------------------------------------------------

    def _on_delivery(self, err: Any, msg: Any) -> None:
        """Delivery reports of records no checkpoint tracks (outbox-sent marks, re-sent
        outboxes, everything in exactly-once mode, where the transaction decides)."""
        if err is not None:
            self.delivery_errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")
        elif msg.topic() == self.store.topic:
            self.store.written(msg.partition(), msg.offset())

    def _state_acked(self, checkpoint: PendingCheckpoint, err: Any, msg: Any) -> None:
        checkpoint.durable_acked(err, msg)
        if err is None:
            partition, offset = msg.partition(), msg.offset()
            self.store.written(partition, offset)
            if offset > checkpoint.state_last.get(partition, -1):
                checkpoint.state_last[partition] = offset

    def _on_commit(self, err: Any, partitions: list[Any]) -> None:
        if err is not None:
            # A later commit (at the latest the one at revocation) covers these offsets.
            log.warning("committing input offsets: %s", err.str())

    def _produce(self, outputs: Sequence[Output]) -> None:
        send_outputs(self.producer, outputs)

    def _flush(self) -> None:
        warn_at = time.monotonic() + 5
        while self.producer.flush(0.1):
            self._check_stop_overdue(f"{len(self.producer)} output record(s)")
            if time.monotonic() > warn_at:
                log.warning("waiting for %d output record(s) to be delivered", len(self.producer))
                warn_at = time.monotonic() + 5
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
        self.pending.clear()  # nothing of theirs may be committed now
        self.commit_ready.clear()
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
        self.current = PendingCheckpoint()
        self.unsent.clear()
        self._fresh_highwater = {}
        self._highwater_asked_ms = -1

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

    def _confirm_caught_up(self, partition: int) -> Callable[[str, int], bool]:
        """Whether the broker, asked at or after ``since_ms``, shows the topic caught up.

        Used before a record goes ahead of a caught-up but empty topic: the cached
        watermark comes from the last fetch, and records produced before this one
        may sit on the broker not fetched yet. One query covers every assigned input
        partition, and answers for every record that arrived before it was sent.
        """

        def confirm(topic: str, since_ms: int) -> bool:
            # Strictly after: a question asked in the millisecond the record arrived
            # may have been sent before it was consumed.
            if self._highwater_asked_ms <= since_ms:
                self._ask_highwaters()
            key = (topic, partition)
            high = self._fresh_highwater.get(key)
            return high is not None and self.positions.get(key, -1) >= high

        return confirm

    def _reached_end(self, key: _TP, end: int) -> None:
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

    def _ask_highwaters(self) -> None:
        """Fresh high watermarks of every assigned input partition, in one request."""
        asked_ms = self.clock()
        request = {
            TopicPartition(topic, partition): OffsetSpec.latest()  # type: ignore[no-untyped-call]
            for topic, partition in self.positions
        }
        fresh: dict[_TP, int] = {}
        try:
            futures = self.admin.list_offsets(request, request_timeout=5)
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

    def _admit(self, messages: list[Any]) -> None:
        now = self.clock()
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._reached_end((msg.topic(), msg.partition()), msg.offset())
                    continue
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
            elif self.options.exactly_once:
                self._produce(admitted)
            else:
                # A dead letter or a re-keyed copy: acknowledged before the offsets of the
                # checkpoint it belongs to are committed.
                self.current.durable_pending += len(admitted)
                send_outputs(self.producer, admitted, self.current.durable_acked)

    def _release(self) -> int:
        now = self.clock()
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
        """Make everything applied so far durable, visible and committed, and wait for it
        (before partitions are given up, and at shutdown).

        At-least-once: every state is stored with its service's outbox before any of
        those outputs is sent, so an alert never goes out unless the state that
        explains it (and can retract it) survives the worker; then the outputs are
        sent, the partitions' outbox-sent marks written, and the input offsets
        committed (see :meth:`_seal`). Exactly-once: all of it in one transaction.
        """
        if self.options.exactly_once:
            offsets = self._offsets_to_commit()
            self._checkpoint_transaction(offsets)
            for tp in offsets:
                self.committed[(tp.topic, tp.partition)] = tp.offset
            self.since_checkpoint = 0
            self.last_checkpoint_ms = self.clock()
            return
        self._seal()
        self._drain()
        # The commits so far were asynchronous: the last word is a synchronous one.
        final = [TopicPartition(t, p, o) for (t, p), o in self.committed.items()]
        if final:
            self.consumer.commit(offsets=final, asynchronous=False)
        self.commit_ready.clear()
        self.last_commit_ms = self.clock()

    def _seal(self) -> None:
        """Close the current at-least-once checkpoint and start it on its way, without
        waiting: its states (each with its service's outbox) are produced now; the
        loop's :meth:`_advance` sends its outputs once they are acknowledged, then
        writes the outbox-sent marks and commits its input offsets."""
        checkpoint = self.current
        self.current = PendingCheckpoint()
        checkpoint.offsets = self._offsets_to_commit()
        for tp in checkpoint.offsets:
            self.committed[(tp.topic, tp.partition)] = tp.offset
        new, self.outbox = self.outbox, {}
        stored_outbox: dict[str, list[Output]] = new
        if self.unsent:
            # A service stored again before its previous outputs were acknowledged: its
            # new state replaces the one holding them, so it must hold them too.
            carried = self.unsent.keys() & self.processor.dirty.keys()
            if carried:
                checkpoint.carried = True
                stored_outbox = dict(new)
                for service in carried:
                    stored_outbox[service] = self.unsent[service] + new.get(service, [])
        states = self._take_states(stored_outbox)
        checkpoint.durable_pending += len(states)
        checkpoint.outputs = [o for outputs in new.values() for o in outputs]
        for service, outputs in new.items():
            checkpoint.contributed[service] = len(outputs)
            self.unsent.setdefault(service, []).extend(outputs)
        checkpoint.sealed_at = time.monotonic()
        self.pending.append(checkpoint)
        send_outputs(self.producer, states, functools.partial(self._state_acked, checkpoint))
        self.since_checkpoint = 0
        self.last_checkpoint_ms = self.clock()
        self._advance()
        if len(self.pending) > MAX_PENDING_CHECKPOINTS:
            self._drain(keep=MAX_PENDING_CHECKPOINTS)

    def _advance(self) -> None:
        """Move the sealed checkpoints on as far as their acknowledgements allow
        (delivery reports arrive through the producer's poll).

        Outputs go out in checkpoint order, each checkpoint's once its states are
        stored; they need not wait for the previous checkpoint's outputs to be
        acknowledged (the idempotent producer keeps each partition's order, so an
        alert's firing and retraction stay in order). Checkpoints complete — marks
        written, offsets ready to commit — strictly oldest first.
        """
        pending = self.pending
        for checkpoint in pending:
            if checkpoint.errors:
                self._fail(checkpoint.errors)
            if checkpoint.durable_pending:
                break
            if not checkpoint.outputs_sent:
                checkpoint.outputs_sent = True
                checkpoint.outputs_pending = len(checkpoint.outputs)
                if checkpoint.outputs:
                    send_outputs(self.producer, checkpoint.outputs, checkpoint.output_acked)
        if self.delivery_errors:
            self._fail(self.delivery_errors)
        while pending and pending[0].done:
            checkpoint = pending.popleft()
            if checkpoint.errors:
                self._fail(checkpoint.errors)
            if checkpoint.outputs or checkpoint.carried:
                self._produce(
                    [
                        Output(self.store.topic, OUTBOX_SENT_KEY, str(offset + 1).encode(), p)
                        for p, offset in checkpoint.state_last.items()
                    ]
                )
            for tp in checkpoint.offsets:
                self.commit_ready[(tp.topic, tp.partition)] = tp.offset
            for service, count in checkpoint.contributed.items():
                held = self.unsent.get(service)
                if held is not None:
                    del held[:count]
                    if not held:
                        del self.unsent[service]
            self.metrics.checkpoint_seconds.observe(time.monotonic() - checkpoint.sealed_at)

    @staticmethod
    def _fail(errors: list[str]) -> None:
        detail = "; ".join(errors[:5])
        raise OutputError(f"output records were not delivered, not committing: {detail}")

    def _commit_ready(self, now_ms: int) -> None:
        """Commit the offsets of completed checkpoints, without waiting, at most every
        ``commit_interval_ms`` (each commit is a write on the broker; a crash re-reads at
        most that much, and the stored states tell those records apart as duplicates)."""
        if self.commit_ready and now_ms - self.last_commit_ms >= self.options.commit_interval_ms:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in self.commit_ready.items()],
                asynchronous=True,
            )
            self.commit_ready.clear()
            self.last_commit_ms = now_ms

    def _drain(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` sealed checkpoints are still on their way."""
        warn_at = time.monotonic() + 5
        self._advance()
        while len(self.pending) > keep:
            self.producer.poll(0.05)
            self._advance()
            self._check_stop_overdue(f"{len(self.pending)} checkpoint(s)")
            if time.monotonic() > warn_at:
                # librdkafka fails a record after message.timeout.ms: this cannot hang.
                log.warning("waiting for %d checkpoint(s) to be acknowledged", len(self.pending))
                warn_at = time.monotonic() + 5

    def _take_outbox(self) -> list[Output]:
        outputs = [o for held in self.outbox.values() for o in held]
        self.outbox.clear()
        return outputs

    def _take_states(self, outbox: dict[str, list[Output]] | None = None) -> list[Output]:
        """The touched services' states (each with its ``outbox`` entry) as changelog
        records, kept in the store as well."""
        states = []
        for service, partition, data in self.processor.take_dirty(outbox):
            key = service.encode("utf-8")
            self.store.put(key, partition, data)
            states.append(Output(self.store.topic, key, data, partition))
        return states

    def _checkpoint_transaction(self, offsets: list[Any]) -> None:
        self._produce(self._take_states())
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
        service), every ``backlog_checkpoint_interval_ms``; or every ``checkpoint_records``."""
        if not self.since_checkpoint:
            return False
        if self.since_checkpoint >= self.options.checkpoint_records:
            return True
        options = self.options
        every_ms = (
            max(options.checkpoint_every_ms, options.backlog_checkpoint_interval_ms)
            if backlog
            else options.checkpoint_every_ms
        )
        return now_ms - self.last_checkpoint_ms >= every_ms

    def refresh_metrics(self) -> None:
        for key, position in list(self.positions.items()):
            high = self.highwater.get(key)
            if high is not None and high >= 0:
                self.metrics.lag.labels(key[0], str(key[1])).set(max(0, high - position))
        self.metrics.services.set(len(self.processor.engines))
        self.metrics.merge_buffered.set(sum(len(m) for m in self.merges.values()))
        self.metrics.gc_frozen.set(gc.get_freeze_count())

    def health(self) -> dict[str, Any]:
        idle_ms = self.clock() - self.last_turn_ms
        return {
            "status": "ok" if idle_ms < HEALTH_STALL_MS else "stalled",
            "runtime": "kafka",
            "partitions": sorted(self.assigned),
            "services_cached": len(self.processor.engines),
            "checkpoints_in_flight": len(self.pending),
            "last_loop_ms_ago": idle_ms,
        }

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
            watchdog = threading.Timer(timeout_s + 5, self._give_up)
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
            raise OutputError(
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
        # Short: held records and due checkpoints are looked at between consumes; shorter
        # still while checkpoints wait for acknowledgements, which only a poll delivers.
        timeout_s = min(options.drain_interval_ms, 10) / 1000
        acks_timeout_s = min(timeout_s, 0.001)
        last_refresh = 0
        try:
            while self.running:
                messages = self.consumer.consume(
                    num_messages=options.batch_records,
                    timeout=acks_timeout_s if self.pending else timeout_s,
                )
                if messages:
                    self._admit(messages)
                if self.merges:
                    self._release()
                if self.pending:
                    self._advance()
                now = self.clock()
                self.last_turn_ms = now
                if self._checkpoint_due(now, backlog=len(messages) >= options.batch_records):
                    if options.exactly_once:
                        self.checkpoint()
                    else:
                        self._seal()
                if not options.exactly_once:
                    self._commit_ready(now)
                if now - last_refresh >= 1_000:
                    self.refresh_metrics()
                    # What survived this long is the services' state: out of the cyclic
                    # collector's sight, or each full collection walks all of it (a
                    # 230 ms pause at 2,000 services). The worker's path makes no cyclic
                    # garbage (tests/pipeline/test_gc_policy.py); refcounting frees the rest.
                    gc.freeze()
                    last_refresh = now
            self.checkpoint()
        except BaseException:
            self.failed = True
            raise
        finally:
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
    except OutputError as exc:
        if not worker.stop_overdue():
            raise
        web.close()
        print(f"relsec: error: {exc}", file=sys.stderr, flush=True)
        # At interpreter exit librdkafka's handles would still wait for Kafka.
        os._exit(2)
    finally:
        web.close()
