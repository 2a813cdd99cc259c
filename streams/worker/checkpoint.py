"""Checkpoints: how applied work becomes durable, then visible, then committed.

Two machines over a :class:`~streams.worker.delivery.RecordProducer` and a clock,
with no consumer and no broker of their own (the runtime hands them states and
offsets, and polls the producer), so they are tested in-process with fakes.

:class:`AtLeastOnceCheckpoints` (the default). Engine outputs wait in their
service's outbox (:meth:`~AtLeastOnceCheckpoints.hold`); dead letters and
re-keyed records leave at once but are counted against the open checkpoint
(:meth:`~AtLeastOnceCheckpoints.send_durable`). :meth:`~AtLeastOnceCheckpoints.seal`
closes the checkpoint and starts it on its way without waiting; delivery reports
move it through its stages, oldest checkpoint completing first:

1. **store**: per changelog partition, the outputs in outbox chunks, then each
   touched service's state (parts, then the head that references its outbox);
2. once all of that (and the checkpoint's dead letters) is acknowledged, delete
   the parts of the states it replaced and **send** the outputs;
3. once those are acknowledged, write the **sent mark** of each partition, delete
   the outbox chunks, and hand the input offsets over to be **committed**.

An alert never leaves before the state that can retract it is stored; a state
whose outbox may not have gone out is re-sent by whoever restores it
(:meth:`~AtLeastOnceCheckpoints.resend`). A service stored again before its
earlier outputs were acknowledged references their chunks from its new state.
Every record is cut to the topic's limit (:mod:`streams.worker.state_records`).
A refused record stops the worker (:class:`~streams.worker.errors.DeliveryRefused`):
nothing after it is committed, and a restart re-reads and re-sends.

:class:`TransactionalCheckpoints` (``--exactly-once``): states, outputs and input
offsets of a checkpoint in one Kafka transaction, which the loop waits for.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.settings import Topics
from streams.worker.delivery import RecordLimits, refusal, send
from streams.worker.errors import (
    CheckpointNotStored,
    OutputsRefused,
    Refusal,
    TransactionFailed,
)
from streams.worker.interfaces import ChangelogRecords, RecordProducer, TransactionalProducer
from streams.worker.metrics import PipelineMetrics
from streams.worker.processor import StateToStore
from streams.worker.records import Output
from streams.worker.state_records import (
    OUTBOX_SENT_KEY,
    OutboxRef,
    RestorePlan,
    StoredState,
    encode_outbox,
    encode_state,
    head_parts,
)

log = logging.getLogger("relsec.worker")

TP = tuple[str, int]
CHUNK_KEY_ROOM = 96
"""Bytes an outbox chunk's key may take (prefix, checkpoint id, partition, index)."""
WARN_EVERY_S = 5.0
WAIT_POLL_S = 0.05

Clock = Callable[[], float]
WaitCheck = Callable[[str], None]
"""Called while waiting for Kafka with what is waited for; raises to stop waiting."""


@dataclass(slots=True, eq=False)
class Checkpoint:
    """One at-least-once checkpoint: what it waits for and what it releases."""

    uid: str = ""
    durable_pending: int = 0
    outputs: list[Output] = field(default_factory=list)
    outputs_pending: int = 0
    outputs_sent: bool = False
    offsets: dict[TP, int] = field(default_factory=dict)
    state_last: dict[int, int] = field(default_factory=dict)  # changelog partition -> offset
    store_refusals: list[Refusal] = field(default_factory=list)
    output_refusals: list[Refusal] = field(default_factory=list)
    sealed_at: float = 0.0
    outbox_refs: dict[int, OutboxRef] = field(default_factory=dict)  # partition -> its chunks
    contributors: dict[str, int] = field(default_factory=dict)  # service -> its partition
    carried: bool = False  # its states also reference earlier checkpoints' outboxes
    after_stored: list[Output] = field(default_factory=list)  # deletions of replaced parts

    @property
    def done(self) -> bool:
        return self.outputs_sent and not self.outputs_pending


class AtLeastOnceCheckpoints:
    """The at-least-once checkpoint machine (see the module docstring)."""

    def __init__(
        self,
        producer: RecordProducer,
        changelog: ChangelogRecords,
        topics: Topics,
        limits: RecordLimits,
        clock: Clock = time.monotonic,
        metrics: PipelineMetrics | None = None,
        max_in_flight: int = 8,
        epoch: str | None = None,
        wait_check: WaitCheck | None = None,
    ) -> None:
        self.producer = producer
        self.changelog = changelog
        self.topics = topics
        self.limits = limits
        self.clock = clock
        self.metrics = metrics or PipelineMetrics()
        self.max_in_flight = max_in_flight
        # Asked during every wait for Kafka (backpressure included): the runtime's
        # stop deadline ends a wait that Kafka never answers.
        self.wait_check = wait_check
        # Checkpoint ids name outbox chunks and state parts: unique across worker lives.
        self.epoch = epoch or uuid.uuid4().hex[:12]
        self.seq = 0
        self.current = Checkpoint()
        self.outbox: dict[str, list[Output]] = {}
        self.outbox_bytes = 0
        self.pending: deque[Checkpoint] = deque()
        # Per service, the outbox chunks of sealed checkpoints not yet acknowledged.
        self.carried: dict[str, list[OutboxRef]] = {}
        self.commit_ready: dict[TP, int] = {}
        self.untracked_refusals: list[Refusal] = []

    # -- collecting ----------------------------------------------------------------

    def hold(self, service: str, outputs: Sequence[Output]) -> None:
        """Engine outputs of ``service``: they leave once its state is stored."""
        if not outputs:
            return
        held = self.outbox.get(service)
        if held is None:
            self.outbox[service] = list(outputs)
        else:
            held.extend(outputs)
        self.outbox_bytes += sum(o.size for o in outputs)

    def send_durable(self, outputs: Sequence[Output]) -> None:
        """Dead letters and re-keyed records: sent now, acknowledged before the open
        checkpoint's offsets are committed."""
        checkpoint = self.current
        checkpoint.durable_pending += len(outputs)
        send(self.producer, outputs, functools.partial(self._durable_acked, checkpoint))

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    # -- sealing -----------------------------------------------------------------------

    def seal(self, states: Sequence[StateToStore], offsets: Mapping[TP, int]) -> None:
        """Close the open checkpoint and start it on its way, without waiting.

        ``states``: every service touched since the last seal (each service holding
        outputs must be among them). ``offsets``: the input offsets to commit once
        the checkpoint completes.
        """
        checkpoint, self.current = self.current, Checkpoint()
        self.seq += 1
        checkpoint.uid = f"{self.epoch}.{self.seq}"
        checkpoint.offsets = dict(offsets)
        outbox, self.outbox, self.outbox_bytes = self.outbox, {}, 0
        topic = self.changelog.topic
        partition_of = {s.service: s.partition for s in states}
        by_partition: dict[int, list[Output]] = {}
        for service, outputs in outbox.items():
            partition = partition_of.get(service)
            if partition is None:
                raise ValueError(f"outputs of service {service!r} were held without its state")
            by_partition.setdefault(partition, []).extend(outputs)
            checkpoint.contributors[service] = partition
        records: list[Output] = []
        chunk_budget = self.limits.value_budget(topic, CHUNK_KEY_ROOM)
        for partition, outputs in by_partition.items():
            ref, chunks = encode_outbox(topic, outputs, checkpoint.uid, partition, chunk_budget)
            checkpoint.outbox_refs[partition] = ref
            checkpoint.outputs.extend(outputs)
            records.extend(chunks)
        for state in states:
            records.extend(self._state_records(checkpoint, state))
        for service, partition in checkpoint.contributors.items():
            self.carried.setdefault(service, []).append(checkpoint.outbox_refs[partition])
        checkpoint.durable_pending += len(records)
        checkpoint.sealed_at = self.clock()
        self.pending.append(checkpoint)
        send(self.producer, records, functools.partial(self._durable_acked, checkpoint))
        self.advance()
        if len(self.pending) > self.max_in_flight:
            self.drain(keep=self.max_in_flight)

    def _state_records(self, checkpoint: Checkpoint, state: StateToStore) -> list[Output]:
        topic = self.changelog.topic
        key = state.service.encode("utf-8")
        refs = list(self.carried.get(state.service, ()))
        if refs:
            checkpoint.carried = True
        if state.service in checkpoint.contributors:
            refs.append(checkpoint.outbox_refs[state.partition])
        previous = self.changelog.get(key)
        records = encode_state(
            topic,
            key,
            StoredState(state.offsets, state.engine, tuple(refs)),
            checkpoint.uid,
            state.partition,
            self.limits.value_budget(topic, len(key)),
        )
        for record in records:
            assert record.key is not None
            self.changelog.put(record.key, state.partition, record.value)
        replaced = head_parts(previous) if previous is not None else None
        if replaced is not None:
            for part_key in replaced.part_keys(key):
                self.changelog.put(part_key, state.partition, None)
                checkpoint.after_stored.append(Output(topic, part_key, None, state.partition))
        return records

    # -- delivery reports ------------------------------------------------------------

    def _durable_acked(self, checkpoint: Checkpoint, err: Any, msg: Any) -> None:
        checkpoint.durable_pending -= 1
        is_changelog = msg.topic() == self.changelog.topic
        if err is not None:
            found = refusal(err, msg, self.topics, self.limits)
            (checkpoint.store_refusals if is_changelog else checkpoint.output_refusals).append(
                found
            )
        elif is_changelog:
            partition, offset = int(msg.partition()), int(msg.offset())
            self.changelog.written(partition, offset)
            if offset > checkpoint.state_last.get(partition, -1):
                checkpoint.state_last[partition] = offset

    def _output_acked(self, checkpoint: Checkpoint, err: Any, msg: Any) -> None:
        checkpoint.outputs_pending -= 1
        if err is not None:
            checkpoint.output_refusals.append(refusal(err, msg, self.topics, self.limits))

    def _untracked_acked(self, err: Any, msg: Any) -> None:
        """Marks and deletions: a refusal stops the worker, success moves the read position."""
        if err is not None:
            self.untracked_refusals.append(refusal(err, msg, self.topics, self.limits))
        elif msg.topic() == self.changelog.topic:
            self.changelog.written(int(msg.partition()), int(msg.offset()))

    # -- moving on ----------------------------------------------------------------------

    def advance(self) -> None:
        """Move the sealed checkpoints on as far as their acknowledgements allow.

        Outputs go out in checkpoint order, each checkpoint's once its states are
        stored; they need not wait for the previous checkpoint's outputs to be
        acknowledged (the idempotent producer keeps each partition's order, so an
        alert's firing and retraction stay in order). Checkpoints complete — marks
        written, offsets ready to commit — strictly oldest first.
        """
        pending = self.pending
        for checkpoint in pending:
            if checkpoint.store_refusals:
                raise CheckpointNotStored(checkpoint.store_refusals)
            if checkpoint.output_refusals:
                raise OutputsRefused(checkpoint.output_refusals)
            if checkpoint.durable_pending:
                break
            if not checkpoint.outputs_sent:
                checkpoint.outputs_sent = True
                if checkpoint.after_stored:
                    send(self.producer, checkpoint.after_stored, self._untracked_acked)
                checkpoint.outputs_pending = len(checkpoint.outputs)
                if checkpoint.outputs:
                    on_ack = functools.partial(self._output_acked, checkpoint)
                    send(self.producer, checkpoint.outputs, on_ack)
        if self.untracked_refusals:
            raise CheckpointNotStored(self.untracked_refusals)
        while pending and pending[0].done:
            checkpoint = pending.popleft()
            if checkpoint.output_refusals:
                raise OutputsRefused(checkpoint.output_refusals)
            self._complete(checkpoint)

    def _complete(self, checkpoint: Checkpoint) -> None:
        topic = self.changelog.topic
        records: list[Output] = []
        if checkpoint.outputs or checkpoint.carried:
            records.extend(
                Output(topic, OUTBOX_SENT_KEY, str(offset + 1).encode(), partition)
                for partition, offset in checkpoint.state_last.items()
            )
        # After the marks, in the same partitions: a restore never misses a chunk it needs.
        for ref in checkpoint.outbox_refs.values():
            records.extend(Output(topic, key, None, ref.partition) for key in ref.chunk_keys())
        if records:
            send(self.producer, records, self._untracked_acked)
        self.commit_ready.update(checkpoint.offsets)
        for service, partition in checkpoint.contributors.items():
            held = self.carried.get(service)
            if held is not None:
                ref = checkpoint.outbox_refs[partition]
                if ref in held:
                    held.remove(ref)
                if not held:
                    del self.carried[service]
        self.metrics.checkpoint_seconds.observe(self.clock() - checkpoint.sealed_at)

    def take_commits(self) -> dict[TP, int]:
        """The input offsets of completed checkpoints not handed out yet."""
        ready, self.commit_ready = self.commit_ready, {}
        return ready

    def drain(self, keep: int = 0, check: WaitCheck | None = None) -> None:
        """Wait until at most ``keep`` sealed checkpoints are on their way; ``check`` (else
        the machine's ``wait_check``) is asked on every poll and may raise to give up."""
        check = check or self.wait_check
        self.advance()
        warn_at = self.clock() + WARN_EVERY_S
        while len(self.pending) > keep:
            self.producer.poll(WAIT_POLL_S)
            self.advance()
            if check is not None:
                check(f"{len(self.pending)} checkpoint(s)")
            if self.clock() > warn_at:
                # librdkafka fails a record after message.timeout.ms: this cannot hang.
                log.warning("waiting for %d checkpoint(s) to be acknowledged", len(self.pending))
                warn_at = self.clock() + WARN_EVERY_S

    def forget(self) -> None:
        """Drop everything not completed (partitions lost, or given up after a drain)."""
        self.current = Checkpoint()
        self.outbox.clear()
        self.outbox_bytes = 0
        self.pending.clear()
        self.carried.clear()
        self.commit_ready.clear()

    # -- after a restore ---------------------------------------------------------------

    def resend(
        self,
        plans: Mapping[int, RestorePlan],
        read_to: Mapping[int, int],
        check: WaitCheck | None = None,
    ) -> int:
        """Send the outboxes restored states reference but whose sending was never
        confirmed, wait for them, then write each partition's sent mark (at the end it
        was read to) and delete what no state needs. Returns the outputs re-sent."""
        check = check or self.wait_check
        outputs = [o for plan in plans.values() for o in plan.resend]
        if outputs:
            remaining = [len(outputs)]
            refusals: list[Refusal] = []

            def acked(err: Any, msg: Any) -> None:
                remaining[0] -= 1
                if err is not None:
                    refusals.append(refusal(err, msg, self.topics, self.limits))

            send(self.producer, outputs, acked)
            while remaining[0] > 0:
                self.producer.poll(WAIT_POLL_S)
                if check is not None:
                    check(f"{remaining[0]} re-sent output(s)")
            if refusals:
                raise OutputsRefused(refusals)
        topic = self.changelog.topic
        records: list[Output] = []
        for partition, plan in plans.items():
            if plan.resend:
                mark = str(read_to.get(partition, 0)).encode()
                records.append(Output(topic, OUTBOX_SENT_KEY, mark, partition))
            for key in plan.delete:
                self.changelog.put(key, partition, None)
                records.append(Output(topic, key, None, partition))
        if records:
            send(self.producer, records, self._untracked_acked)
        return len(outputs)


class TransactionalCheckpoints:
    """Exactly-once checkpoints: one Kafka transaction each, which the caller waits for.

    ``offsets_payload`` turns input offsets into what ``send_offsets_to_transaction``
    takes, and ``group_metadata`` gives the consumer's group metadata (KIP-447: a
    zombie's commit is refused once its generation is gone).
    """

    def __init__(
        self,
        producer: TransactionalProducer,
        changelog: ChangelogRecords,
        topics: Topics,
        limits: RecordLimits,
        offsets_payload: Callable[[Mapping[TP, int]], Any],
        group_metadata: Callable[[], Any],
        is_abortable: Callable[[BaseException], bool],
        epoch: str | None = None,
    ) -> None:
        self.producer = producer
        self.changelog = changelog
        self.topics = topics
        self.limits = limits
        self.offsets_payload = offsets_payload
        self.group_metadata = group_metadata
        self.is_abortable = is_abortable
        self.epoch = epoch or uuid.uuid4().hex[:12]
        self.seq = 0
        self.outbox: list[Output] = []
        self.outbox_bytes = 0
        self.refusals: list[Refusal] = []

    def begin(self) -> None:
        self.producer.begin_transaction()

    def hold(self, service: str, outputs: Sequence[Output]) -> None:
        self.outbox.extend(outputs)
        self.outbox_bytes += sum(o.size for o in outputs)

    def send_durable(self, outputs: Sequence[Output]) -> None:
        send(self.producer, outputs, self._acked)

    def _acked(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.refusals.append(refusal(err, msg, self.topics, self.limits))
        elif msg.topic() == self.changelog.topic:
            self.changelog.written(int(msg.partition()), int(msg.offset()))

    def commit(self, states: Sequence[StateToStore], offsets: Mapping[TP, int]) -> None:
        """Store the states, send the held outputs, commit the offsets: one transaction."""
        self.seq += 1
        uid = f"{self.epoch}.{self.seq}"
        topic = self.changelog.topic
        records: list[Output] = []
        replaced: list[Output] = []
        for state in states:
            key = state.service.encode("utf-8")
            previous = self.changelog.get(key)
            written = encode_state(
                topic,
                key,
                StoredState(state.offsets, state.engine),
                uid,
                state.partition,
                self.limits.value_budget(topic, len(key)),
            )
            for record in written:
                assert record.key is not None
                self.changelog.put(record.key, state.partition, record.value)
            records.extend(written)
            parts = head_parts(previous) if previous is not None else None
            if parts is not None:
                for part_key in parts.part_keys(key):
                    self.changelog.put(part_key, state.partition, None)
                    replaced.append(Output(topic, part_key, None, state.partition))
        outputs, self.outbox, self.outbox_bytes = self.outbox, [], 0
        send(self.producer, [*records, *replaced, *outputs], self._acked)
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(
                    self.offsets_payload(offsets), self.group_metadata(), 30
                )
            self.producer.commit_transaction(60)
        except Exception as exc:
            # The in-memory state is ahead of what was committed: only a restart from the
            # committed offsets and state is consistent again.
            if self.is_abortable(exc):
                self.producer.abort_transaction(30)
            raise TransactionFailed(f"transaction not committed: {_reason(exc)}") from None
        if self.refusals:
            raise TransactionFailed(
                "transaction committed without records the broker refused: "
                + "; ".join(str(r) for r in self.refusals[:5])
            )
        self.producer.begin_transaction()

    def resend(
        self,
        plans: Mapping[int, RestorePlan],
        read_to: Mapping[int, int],
        check: WaitCheck | None = None,
    ) -> int:
        """Outboxes of restored states (written by an at-least-once worker before a switch
        to exactly-once), their marks and deletions: in the open transaction, committed
        with the next checkpoint."""
        topic = self.changelog.topic
        records: list[Output] = []
        for partition, plan in plans.items():
            records.extend(plan.resend)
            if plan.resend:
                mark = str(read_to.get(partition, 0)).encode()
                records.append(Output(topic, OUTBOX_SENT_KEY, mark, partition))
            for key in plan.delete:
                self.changelog.put(key, partition, None)
                records.append(Output(topic, key, None, partition))
        send(self.producer, records, self._acked)
        return sum(len(plan.resend) for plan in plans.values())

    def abort(self) -> None:
        """Partitions were lost: nothing of theirs may be committed."""
        self.producer.abort_transaction(30)
        self.outbox.clear()
        self.outbox_bytes = 0
        self.producer.begin_transaction()


def _reason(exc: BaseException) -> str:
    error = exc.args[0] if exc.args else exc
    return error.str() if hasattr(error, "str") else str(error)
