"""The checkpoint machines in-process, over a fake producer: no broker, every step visible.

What is checked: the order of the stages (states stored, then outputs sent, then
marks, deletions and commits), oldest-first completion, outboxes carried by a
service stored again, what a refused record does (and names), backpressure, a
stop with Kafka gone, records cut to the limits, and the re-send after a restore.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.settings import Topics
from streams.worker.checkpoint import AtLeastOnceCheckpoints, TransactionalCheckpoints
from streams.worker.delivery import RecordLimits, send
from streams.worker.errors import (
    CheckpointNotStored,
    OutputsRefused,
    StopOverdue,
    TransactionFailed,
)
from streams.worker.processor import StateToStore
from streams.worker.records import Output
from streams.worker.state_records import (
    OUTBOX_SENT_KEY,
    RECORD_OVERHEAD,
    StoredState,
    decode_state,
    head_outbox_refs,
    key_kind,
    plan_restore,
)
from tests.worker.fakes import FakeClock, FakeProducer, Produced, store

TOPICS = Topics("t.")
CHANGELOG = TOPICS.state_changelog
LIMITS = RecordLimits(1_000_000)
IN = ("t.deploys", 0)


def on(topic: str) -> Callable[[Produced], bool]:
    return lambda r: r.topic == topic


changelog_records = on(CHANGELOG)
alert_records = on(TOPICS.alerts)


def alert(n: int, size: int = 10) -> Output:
    return Output(TOPICS.alerts, f"a{n}".encode(), bytes(size))


def dead_letter(n: int) -> Output:
    return Output(TOPICS.dlq, f"k{n}".encode(), b"dead")


def touched(service: str = "svc", partition: int = 0, engine: bytes = b"{}") -> StateToStore:
    return StateToStore(service, partition, {"t.deploys": 1}, engine)


class Machine:
    """An at-least-once machine with its fake producer, store and clock."""

    def __init__(self, limits: RecordLimits = LIMITS, **options: Any) -> None:
        self.producer = FakeProducer()
        self.store = store("t.")
        self.clock = FakeClock()
        self.checkpoints = AtLeastOnceCheckpoints(
            self.producer, self.store, TOPICS, limits, clock=self.clock, epoch="ep", **options
        )

    def settle(self, match: Callable[[Produced], bool] | None = None) -> None:
        """Acknowledge what is queued (matching), deliver the reports, move on."""
        self.producer.ack(match)
        self.producer.poll(0)
        self.checkpoints.advance()

    def sent(self, topic: str) -> list[Produced]:
        return [r for r in self.producer.history if r.topic == topic]

    def changelog_keys(self, topic: str = CHANGELOG) -> list[bytes | None]:
        return [r.key for r in self.sent(topic)]


# -- the order of the stages ---------------------------------------------------------


def test_outputs_wait_until_every_state_record_is_acknowledged() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1), alert(2)])
    m.checkpoints.hold("other", [alert(3)])
    m.checkpoints.seal([touched("svc"), touched("other", 1)], {IN: 5})
    assert m.sent(TOPICS.alerts) == []
    m.settle(lambda r: r.topic == CHANGELOG and r.partition == 0)
    assert m.sent(TOPICS.alerts) == [], "partition 1's state is not stored yet"
    m.settle(changelog_records)
    assert [r.key for r in m.sent(TOPICS.alerts)] == [b"a1", b"a2", b"a3"]


def test_a_service_outbox_chunk_is_stored_before_the_head_that_references_it() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched("svc")], {IN: 5})
    kinds = [key_kind(k or b"") for k in m.changelog_keys()]
    assert kinds == ["outbox", "state"]
    head = m.store.get(b"svc")
    assert head is not None
    (ref,) = head_outbox_refs(head)
    assert ref.chunk_keys() == [m.changelog_keys()[0]]


def test_offsets_are_ready_only_once_the_outputs_are_acknowledged() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)
    assert m.checkpoints.take_commits() == {}
    m.settle(alert_records)
    assert m.checkpoints.take_commits() == {IN: 5}
    assert m.checkpoints.take_commits() == {}, "handed out once"
    assert m.checkpoints.in_flight == 0


def test_completion_marks_past_the_states_then_deletes_the_outbox_chunks() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)  # chunk at offset 0, head at 1
    m.settle(alert_records)
    after = m.sent(CHANGELOG)[2:]
    assert [r.key for r in after[:1]] == [OUTBOX_SENT_KEY]
    assert after[0].value == b"2", "outboxes of heads below offset 2 were sent"
    assert [key_kind(r.key or b"") for r in after[1:]] == ["outbox"]
    assert after[1].value is None, "a deletion (tombstone)"


def test_a_checkpoint_with_nothing_to_send_writes_no_mark() -> None:
    m = Machine()
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle()
    assert m.changelog_keys() == [b"svc"]
    assert m.checkpoints.take_commits() == {IN: 5}


def test_checkpoints_complete_oldest_first() -> None:
    m = Machine()
    m.checkpoints.hold("a", [alert(1)])
    m.checkpoints.seal([touched("a")], {IN: 5})
    m.checkpoints.hold("b", [alert(2)])
    m.checkpoints.seal([touched("b")], {IN: 9})
    m.settle(changelog_records)
    m.settle(lambda r: r.key == b"a2")
    assert m.checkpoints.take_commits() == {}, "the second is done, the first is not"
    m.settle(alert_records)
    assert m.checkpoints.take_commits() == {IN: 9}
    marks = [r.value for r in m.sent(CHANGELOG) if r.key == OUTBOX_SENT_KEY]
    assert marks == [b"2", b"4"]


def test_a_later_checkpoint_sends_without_waiting_for_the_earlier_ones_outputs() -> None:
    m = Machine()
    m.checkpoints.hold("a", [alert(1)])
    m.checkpoints.seal([touched("a")], {IN: 5})
    m.settle(changelog_records)
    m.checkpoints.hold("b", [alert(2)])
    m.checkpoints.seal([touched("b")], {IN: 9})
    m.settle(changelog_records)
    assert [r.key for r in m.sent(TOPICS.alerts)] == [b"a1", b"a2"]


def test_outputs_of_one_service_leave_in_the_order_they_were_held() -> None:
    m = Machine()
    for n in range(5):
        m.checkpoints.hold("svc", [alert(n)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)
    assert [r.key for r in m.sent(TOPICS.alerts)] == [f"a{n}".encode() for n in range(5)]


# -- carried outboxes ------------------------------------------------------------------


def test_a_service_stored_again_before_its_outputs_are_acknowledged_references_them() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)  # outputs of the first: sent, not acknowledged
    m.checkpoints.hold("svc", [alert(2)])
    m.checkpoints.seal([touched()], {IN: 9})
    head = m.store.get(b"svc")
    assert head is not None
    refs = head_outbox_refs(head)
    assert [r.checkpoint for r in refs] == ["ep.1", "ep.2"]
    m.settle(changelog_records)
    m.settle(alert_records)
    # Both completed: the next state of the service references nothing.
    m.checkpoints.seal([touched()], {IN: 10})
    head = m.store.get(b"svc")
    assert head is not None and head_outbox_refs(head) == ()


def test_a_carrying_checkpoint_writes_a_mark_even_without_outputs_of_its_own() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)
    m.checkpoints.seal([touched()], {IN: 6})  # no outputs, but it carries the first's
    m.settle(changelog_records)
    m.settle(alert_records)
    marks = [r.value for r in m.sent(CHANGELOG) if r.key == OUTBOX_SENT_KEY]
    assert marks == [b"2", b"3"]
    assert m.checkpoints.carried == {}


def test_outputs_held_without_the_state_of_their_service_are_refused() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    with pytest.raises(ValueError, match="'svc'"):
        m.checkpoints.seal([touched("other")], {IN: 5})


# -- refusals ---------------------------------------------------------------------------


def test_a_refused_state_stops_the_checkpoint_naming_the_service_size_and_limit() -> None:
    m = Machine(RecordLimits(50_000))
    m.checkpoints.hold("checkout", [alert(1)])
    m.checkpoints.seal([touched("checkout", 2, b"e" * 1_000)], {IN: 5})
    m.producer.refuse(lambda r: r.key == b"checkout", "Broker: Message size too large")
    m.producer.poll(0)
    with pytest.raises(CheckpointNotStored) as caught:
        m.checkpoints.advance()
    message = str(caught.value)
    assert "state of service 'checkout'" in message
    assert f"{CHANGELOG}[2]" in message and "Message size too large" in message
    assert "50,000" in message and "bytes" in message
    m.producer.ack()
    m.producer.poll(0)
    with pytest.raises(CheckpointNotStored):
        m.checkpoints.advance()  # it stays refused
    assert m.sent(TOPICS.alerts) == [], "nothing leaves once a state was refused"
    assert m.checkpoints.take_commits() == {}


def test_a_refused_output_stops_the_worker_before_its_offsets_are_committed() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)
    m.producer.refuse(alert_records, "Broker: Message size too large")
    m.producer.poll(0)
    with pytest.raises(OutputsRefused, match=r"alert to t\.alerts\[0\]: Broker: Message size"):
        m.checkpoints.advance()
    assert m.checkpoints.take_commits() == {}


def test_dead_letters_hold_back_the_checkpoint_they_belong_to() -> None:
    m = Machine()
    m.checkpoints.send_durable([dead_letter(1)])
    m.checkpoints.seal([], {IN: 5})
    m.settle(changelog_records)
    assert m.checkpoints.take_commits() == {}
    m.settle(on(TOPICS.dlq))
    assert m.checkpoints.take_commits() == {IN: 5}


def test_a_refused_dead_letter_is_a_refused_output() -> None:
    m = Machine()
    m.checkpoints.send_durable([dead_letter(1)])
    m.checkpoints.seal([], {IN: 5})
    m.producer.refuse(on(TOPICS.dlq), "Broker: Topic authorization failed")
    m.producer.poll(0)
    with pytest.raises(OutputsRefused, match=r"dead letter to t\.dlq"):
        m.checkpoints.advance()


def test_a_refused_sent_mark_stops_the_worker() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)
    m.settle(alert_records)
    m.producer.refuse(lambda r: r.key == OUTBOX_SENT_KEY, "Broker: Not enough replicas")
    m.producer.poll(0)
    with pytest.raises(CheckpointNotStored, match="outbox-sent mark"):
        m.checkpoints.advance()


# -- backpressure and stopping --------------------------------------------------------------


def test_a_full_client_queue_is_waited_out_by_polling() -> None:
    producer = FakeProducer(full_once=3)
    assert send(producer, [alert(1)]) == 1
    assert producer.polls >= 3
    assert [r.key for r in producer.history] == [b"a1"]


def test_too_many_checkpoints_in_flight_make_the_seal_wait_for_the_oldest() -> None:
    m = Machine(max_in_flight=2)
    m.producer.auto_ack = False
    for n in range(2):
        m.checkpoints.seal([touched()], {IN: n})
    assert m.checkpoints.in_flight == 2
    m.producer.auto_ack = True  # Kafka answers while the seal waits
    m.checkpoints.seal([touched()], {IN: 2})
    assert m.checkpoints.in_flight <= 2
    assert m.producer.polls > 0


def test_a_stop_with_kafka_gone_gives_up_waiting_when_told() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    waits: list[str] = []

    def overdue(waiting_for: str) -> None:
        waits.append(waiting_for)
        if len(waits) >= 3:
            raise StopOverdue(f"stopping with {waiting_for} unacknowledged")

    with pytest.raises(StopOverdue, match="1 checkpoint"):
        m.checkpoints.drain(check=overdue)
    assert m.checkpoints.take_commits() == {}, "nothing is committed"


def test_backpressure_with_kafka_gone_ends_in_the_stop_check_too() -> None:
    calls: list[str] = []

    def overdue(waiting_for: str) -> None:
        calls.append(waiting_for)
        if len(calls) >= 2:
            raise StopOverdue(waiting_for)

    m = Machine(max_in_flight=1, wait_check=overdue)
    m.checkpoints.seal([touched()], {IN: 1})
    with pytest.raises(StopOverdue, match="2 checkpoint"):
        m.checkpoints.seal([touched()], {IN: 2})  # the oldest is never acknowledged
    assert calls and m.checkpoints.take_commits() == {}


def test_drain_returns_once_everything_is_acknowledged() -> None:
    m = Machine()
    m.producer.auto_ack = True
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.checkpoints.drain()
    assert m.checkpoints.in_flight == 0
    assert m.checkpoints.take_commits() == {IN: 5}


def test_forget_drops_what_was_not_completed() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.checkpoints.hold("svc", [alert(2)])
    m.checkpoints.forget()
    m.settle()
    m.settle()
    assert m.checkpoints.take_commits() == {}
    assert m.checkpoints.outbox == {} and m.checkpoints.carried == {}


def test_the_checkpoint_time_is_observed_from_seal_to_completion() -> None:
    m = Machine()
    m.checkpoints.seal([touched()], {IN: 5})
    m.clock.advance(0.25)
    m.settle()
    samples = {
        s.name: s.value for s in m.checkpoints.metrics.checkpoint_seconds.collect()[0].samples
    }
    assert samples["relsec_checkpoint_seconds_sum"] == pytest.approx(0.25)
    assert samples["relsec_checkpoint_seconds_count"] == 1


def test_outbox_bytes_count_what_is_held_until_the_seal() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1, size=100), alert(2, size=50)])
    m.checkpoints.hold("svc", [])
    assert m.checkpoints.outbox_bytes == 150 + 4
    m.checkpoints.seal([touched()], {IN: 1})
    assert m.checkpoints.outbox_bytes == 0


# -- record sizes ------------------------------------------------------------------------------


def test_a_state_too_big_for_one_record_is_stored_in_parts_each_within_the_limit() -> None:
    limit = 8_192
    m = Machine(RecordLimits(limit))
    engine = bytes(i % 256 for i in range(100_000))
    m.checkpoints.seal([touched("svc", 0, engine)], {IN: 1})
    for r in m.sent(CHANGELOG):
        assert len(r.value or b"") + len(r.key or b"") + RECORD_OVERHEAD <= limit
    assert m.changelog_keys()[-1] == b"svc"
    stored = m.store.state_of("svc")
    assert stored is not None and stored.engine == engine


def test_the_parts_of_a_replaced_state_are_deleted_once_the_new_one_is_stored() -> None:
    m = Machine(RecordLimits(8_192))
    m.checkpoints.seal([touched("svc", 0, b"a" * 30_000)], {IN: 1})
    m.settle()
    first_parts = [k for k in m.changelog_keys() if key_kind(k or b"") == "part"]
    m.checkpoints.seal([touched("svc", 0, b"small")], {IN: 2})
    deletions = [r for r in m.sent(CHANGELOG) if r.value is None]
    assert deletions == [], "not before the new head is acknowledged"
    m.settle()
    deleted = [r.key for r in m.sent(CHANGELOG) if r.value is None]
    assert sorted(deleted) == sorted(first_parts)
    assert not any(key_kind(k) == "part" for k in m.store.values)
    stored = m.store.state_of("svc")
    assert stored is not None and stored.engine == b"small"


def test_an_outbox_too_big_for_one_record_is_stored_in_chunks_and_sent_whole() -> None:
    limit = 8_192
    m = Machine(RecordLimits(limit))
    outputs = [alert(n, size=700) for n in range(60)]
    m.checkpoints.hold("svc", outputs)
    m.checkpoints.seal([touched()], {IN: 1})
    chunks = [r for r in m.sent(CHANGELOG) if key_kind(r.key or b"") == "outbox"]
    assert len(chunks) >= 5
    assert all(len(c.value or b"") + len(c.key or b"") + RECORD_OVERHEAD <= limit for c in chunks)
    m.settle(changelog_records)
    assert [r.key for r in m.sent(TOPICS.alerts)] == [o.key for o in outputs]


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(4_096, 40_000),
    states=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "ü" * 30]), st.integers(0, 120_000)),
        min_size=1,
        max_size=4,
        unique_by=lambda s: s[0],
    ),
    outputs=st.lists(st.integers(1, 9_000), max_size=30),
)
def test_no_record_a_checkpoint_writes_exceeds_the_limit(
    limit: int, states: list[tuple[str, int]], outputs: list[int]
) -> None:
    m = Machine(RecordLimits(limit))
    service = states[0][0]
    m.checkpoints.hold(service, [alert(n, size) for n, size in enumerate(outputs)])
    m.checkpoints.seal([touched(s, 1, b"x" * size) for s, size in states], {IN: 1})
    m.settle(changelog_records)
    m.settle(alert_records)
    for r in m.sent(CHANGELOG):
        assert len(r.value or b"") + len(r.key or b"") + RECORD_OVERHEAD <= limit
    for s, size in states:
        stored = m.store.state_of(s)
        assert stored is not None and len(stored.engine) == size


# -- after a restore -----------------------------------------------------------------------------


def restore_from(m: Machine) -> tuple[dict[bytes, tuple[int, bytes]], dict[bytes, bytes], int]:
    """What a new owner of partition 0 would read: the acknowledged changelog records."""
    records: dict[bytes, tuple[int, bytes]] = {}
    chunks: dict[bytes, bytes] = {}
    sent_to = 0
    for r in m.producer.delivered(CHANGELOG):
        if r.offset < 0 or r.partition != 0 or r.key is None:
            continue
        if r.key == OUTBOX_SENT_KEY:
            sent_to = int(r.value or b"0")
        elif key_kind(r.key) == "outbox":
            if r.value is None:
                chunks.pop(r.key, None)
            else:
                chunks[r.key] = r.value
        elif r.value is None:
            records.pop(r.key, None)
        else:
            records[r.key] = (r.offset, r.value)
    return records, chunks, sent_to


def test_a_crash_after_the_states_were_stored_resends_their_outbox() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1), alert(2)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)  # stored; the outputs were sent, never acknowledged: crash
    records, chunks, sent_to = restore_from(m)
    plan = plan_restore(records, sent_to, chunks)
    assert [o.key for o in plan.resend] == [b"a1", b"a2"]


def test_a_crash_before_the_head_was_stored_sends_nothing_of_its_outbox() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(lambda r: key_kind(r.key or b"") == "outbox")  # the chunk landed, the head did not
    records, chunks, sent_to = restore_from(m)
    plan = plan_restore(records, sent_to, chunks)
    # Nothing stored explains that alert: sending it would make an orphan nobody retracts.
    assert plan.resend == []
    assert plan.delete == list(chunks)


def test_after_completion_a_restore_resends_nothing_and_finds_nothing_to_delete() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)
    m.settle(alert_records)
    m.settle(changelog_records)  # mark and chunk deletion
    records, chunks, sent_to = restore_from(m)
    plan = plan_restore(records, sent_to, chunks)
    assert (plan.resend, plan.delete) == ([], [])


def test_resend_after_a_restore_waits_then_marks_then_deletes() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1), alert(2)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)
    records, chunks, sent_to = restore_from(m)
    plan = plan_restore(records, sent_to, chunks)

    new = Machine()
    new.producer.auto_ack = True
    resent = new.checkpoints.resend({0: plan}, {0: 17})
    assert resent == 2
    history = new.producer.history
    assert [(r.topic, r.key) for r in history[:2]] == [
        (TOPICS.alerts, b"a1"),
        (TOPICS.alerts, b"a2"),
    ]
    assert (history[2].key, history[2].value) == (OUTBOX_SENT_KEY, b"17")
    assert all(r.value is None and key_kind(r.key or b"") == "outbox" for r in history[3:])
    assert len(history) == 3 + len(chunks)


def test_a_refused_resend_stops_before_any_mark_is_written() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)
    records, chunks, sent_to = restore_from(m)
    plan = plan_restore(records, sent_to, chunks)
    new = Machine()

    def refuse_then_poll(timeout: float = 0) -> int:
        new.producer.refuse(alert_records, "Broker: Message size too large")
        return FakeProducer.poll(new.producer, timeout)

    new.producer.poll = refuse_then_poll  # type: ignore[method-assign]
    with pytest.raises(OutputsRefused, match="alert"):
        new.checkpoints.resend({0: plan}, {0: 17})
    assert not any(r.key == OUTBOX_SENT_KEY for r in new.producer.history)


def test_resend_gives_up_when_the_stop_check_says_so() -> None:
    m = Machine()
    m.checkpoints.hold("svc", [alert(1)])
    m.checkpoints.seal([touched()], {IN: 5})
    m.settle(changelog_records)
    records, chunks, sent_to = restore_from(m)
    new = Machine()

    def overdue(waiting_for: str) -> None:
        raise StopOverdue(waiting_for)

    with pytest.raises(StopOverdue, match="re-sent"):
        new.checkpoints.resend({0: plan_restore(records, sent_to, chunks)}, {0: 3}, overdue)


def test_a_restored_state_reads_back_through_the_store() -> None:
    m = Machine(RecordLimits(8_192))
    engine = b"z" * 50_000
    m.checkpoints.seal([touched("svc", 0, engine)], {IN: 1})
    m.settle()
    records, _, _ = restore_from(m)
    values = {k: v for k, (_, v) in records.items()}
    state = decode_state(b"svc", values[b"svc"], values.get)
    assert state == StoredState({"t.deploys": 1}, engine)


# -- exactly-once ---------------------------------------------------------------------------------


class FakeTransactions(FakeProducer):
    """A transactional fake: it records the transaction calls in order."""

    def __init__(self, fail_commit: BaseException | None = None) -> None:
        super().__init__(auto_ack=True)
        self.calls: list[str] = []
        self.fail_commit = fail_commit

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def commit_transaction(self, timeout: float = 0) -> None:
        self.poll(0)
        if self.fail_commit is not None:
            raise self.fail_commit
        self.calls.append("commit")

    def abort_transaction(self, timeout: float = 0) -> None:
        self.calls.append("abort")

    def send_offsets_to_transaction(
        self, positions: Any, metadata: Any, timeout: float = 0
    ) -> None:
        self.calls.append(f"offsets {positions} {metadata}")


def transactional(producer: FakeTransactions, limits: RecordLimits = LIMITS) -> Any:
    return TransactionalCheckpoints(
        producer,
        store("t."),
        TOPICS,
        limits,
        offsets_payload=lambda offsets: sorted(offsets.items()),
        group_metadata=lambda: "meta",
        is_abortable=lambda exc: "abortable" in str(exc),
        epoch="ep",
    )


def test_an_exactly_once_checkpoint_is_states_outputs_and_offsets_in_one_transaction() -> None:
    producer = FakeTransactions()
    checkpoints = transactional(producer)
    checkpoints.begin()
    checkpoints.hold("svc", [alert(1)])
    checkpoints.send_durable([dead_letter(1)])
    checkpoints.commit([touched()], {IN: 5})
    topics = [r.topic for r in producer.history]
    assert topics == [TOPICS.dlq, CHANGELOG, TOPICS.alerts]
    assert producer.calls == ["begin", "offsets [(('t.deploys', 0), 5)] meta", "commit", "begin"]
    head = checkpoints.changelog.get(b"svc")
    assert head is not None and head_outbox_refs(head) == ()


def test_a_failed_transaction_is_aborted_when_it_must_be_and_stops_the_worker() -> None:
    producer = FakeTransactions(fail_commit=RuntimeError("abortable: broker gone"))
    checkpoints = transactional(producer)
    with pytest.raises(TransactionFailed, match="abortable: broker gone"):
        checkpoints.commit([touched()], {IN: 5})
    assert producer.calls[-1] == "abort"
    fenced = FakeTransactions(fail_commit=RuntimeError("fenced"))
    with pytest.raises(TransactionFailed, match="fenced"):
        transactional(fenced).commit([touched()], {IN: 5})
    assert "abort" not in fenced.calls


def test_an_exactly_once_state_too_big_for_a_record_goes_in_parts() -> None:
    producer = FakeTransactions()
    checkpoints = transactional(producer, RecordLimits(8_192))
    checkpoints.commit([touched("svc", 0, b"q" * 40_000)], {})
    kinds = [key_kind(r.key or b"") for r in producer.history]
    assert kinds.count("part") >= 5 and kinds[-1] == "state"
    stored = checkpoints.changelog.state_of("svc")
    assert stored is not None and stored.engine == b"q" * 40_000
