"""The changelog's record format: states, parts and outboxes round-trip within the limits;
older formats still read; a restore tells what to re-send and what to delete."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.errors import StateError
from streams.kafka.clients import producer_config
from streams.settings import Settings
from streams.worker.changelog import ChangelogStore, ensure_state_changelog
from streams.worker.records import Output
from streams.worker.state_records import (
    OUTBOX_SENT_KEY,
    RECORD_OVERHEAD,
    OutboxRef,
    StoredState,
    decode_outbox,
    decode_state,
    encode_outbox,
    encode_state,
    head_outbox_refs,
    head_parts,
    key_kind,
    pack_outputs,
    plan_restore,
    unpack_outputs,
)

TOPIC = "t.state"
OUTBOX = [
    Output("relsec.alerts", b"a1", b"\x00\x01avro"),
    Output("relsec.alerts.ocsf", b"a1", b"{}"),
    Output("relsec.dlq", None, b"\xff", 2),
]


def decoded(records: list[Output], key: bytes = b"svc") -> StoredState:
    values = {r.key: r.value for r in records}
    head = values[key]
    assert head is not None
    return decode_state(key, head, values.get)  # type: ignore[arg-type]


def test_outputs_pack_and_unpack() -> None:
    outputs, end = unpack_outputs(pack_outputs(OUTBOX))
    assert outputs == OUTBOX
    assert end == len(pack_outputs(OUTBOX))


def test_a_small_state_without_outbox_keeps_the_first_format() -> None:
    (head,) = encode_state(TOPIC, b"svc", StoredState({"t.deploys": 3}, b"e"), "c.1", 2, 10_000)
    assert head.value is not None and head.value.startswith(b"RS1\n")
    assert (head.topic, head.partition) == (TOPIC, 2)
    assert decoded([head]) == StoredState({"t.deploys": 3}, b"e")


def test_a_state_with_outbox_references_round_trips() -> None:
    refs = (OutboxRef("c.1", 0, 2), OutboxRef("c.2", 0, 1))
    state = StoredState({"t.deploys": 41}, b"engine-bytes\n\x00", refs)
    (head,) = encode_state(TOPIC, b"svc", state, "c.2", 0, 10_000)
    assert decoded([head]) == state
    assert head.value is not None and head_outbox_refs(head.value) == refs


def test_a_state_bigger_than_a_record_is_split_into_parts_that_fit() -> None:
    engine = bytes(range(256)) * 400  # 102 400 bytes
    budget = 8_000
    records = encode_state(TOPIC, b"svc", StoredState({"t.x": 1}, engine), "c.7", 1, budget)
    assert len(records) > 12
    assert records[-1].key == b"svc", "the head comes after its parts"
    for r in records:
        assert r.value is not None and len(r.value) <= budget
        assert r.key is not None and len(r.key) + len(r.value) <= budget + len(r.key)
    assert decoded(records).engine == engine
    assert records[-1].value is not None
    parts = head_parts(records[-1].value)
    assert parts is not None and parts.count == len(records) - 1
    assert [r.key for r in records[:-1]] == parts.part_keys(b"svc")
    assert all(key_kind(r.key) == "part" for r in records[:-1] if r.key)


def test_a_missing_part_is_a_state_error_naming_the_service() -> None:
    records = encode_state(TOPIC, b"svc", StoredState({}, b"x" * 5_000), "c.1", 0, 1_000)
    values = {r.key: r.value for r in records if r.key != records[1].key}
    head = values[b"svc"]
    assert head is not None
    with pytest.raises(StateError, match=r"part 2 of .* 'svc' is missing"):
        decode_state(b"svc", head, values.get)  # type: ignore[arg-type]


def test_an_outbox_bigger_than_a_record_is_chunked_and_reads_back() -> None:
    outputs = [Output("t.alerts", f"a{i}".encode(), bytes(300)) for i in range(100)]
    ref, chunks = encode_outbox(TOPIC, outputs, "c.3", 4, 2_000)
    assert ref == OutboxRef("c.3", 4, len(chunks)) and len(chunks) > 10
    assert all(c.value is not None and len(c.value) <= 2_000 for c in chunks)
    assert all(c.partition == 4 and key_kind(c.key or b"") == "outbox" for c in chunks)
    values = {c.key: c.value for c in chunks}
    assert decode_outbox(ref, values.get) == outputs  # type: ignore[arg-type]
    del values[chunks[3].key]
    assert decode_outbox(ref, values.get) is None  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    engine_size=st.integers(0, 60_000),
    budget=st.integers(600, 20_000),
    service=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=60),
    refs=st.lists(st.tuples(st.integers(0, 99), st.integers(1, 9)), max_size=8),
)
def test_every_state_record_fits_its_budget_and_reads_back(
    engine_size: int, budget: int, service: str, refs: list[tuple[int, int]]
) -> None:
    key = service.encode()
    state = StoredState(
        {"t.deploys": engine_size, "t.incidents": 7},
        bytes(i % 251 for i in range(engine_size)),
        tuple(OutboxRef(f"e.{n}", 3, c) for n, c in refs),
    )
    records = encode_state(TOPIC, key, state, "epoch.123", 3, budget)
    for r in records:
        assert r.value is not None and len(r.value) <= budget
        assert r.key is not None and len(r.key) <= len(key) + RECORD_OVERHEAD // 2
    assert decoded(records, key) == state


def test_older_heads_with_an_inline_outbox_still_read() -> None:
    # RS3, the binary inline outbox written until the split records.
    rs3 = b"RS3\n" + b'{"relsec.deploys":41}' + b"\n" + pack_outputs(OUTBOX) + b"engine"
    assert decode_state(b"svc", rs3, {}.get) == StoredState(
        {"relsec.deploys": 41}, b"engine", outbox=tuple(OUTBOX)
    )
    # RS2, written until 2026-11-26 (base64 outputs in a JSON header).
    rs2 = (
        b'RS2\n{"offsets":{"relsec.deploys":41},"outbox":[["relsec.alerts","YTE=","AAFhdnJv",null],'
        b'["relsec.dlq",null,"/w==",2]]}\nengine-bytes\n\x00'
    )
    assert decode_state(b"svc", rs2, {}.get) == StoredState(
        {"relsec.deploys": 41},
        b"engine-bytes\n\x00",
        outbox=(OUTBOX[0], OUTBOX[2]),
    )


@pytest.mark.parametrize(
    "data",
    [
        b"XX1\n{}\ne",
        b"RS1\n[1]\ne",
        b"RS1\nnot json\ne",
        b'RS2\n{"outbox": []}\ne',
        b'RS2\n{"offsets": {}, "outbox": [["t", null, "!!"]]}\ne',
        b"RS3\n{}",
        b"RS3\n{}\n\x00\x00\x00\x01\x00\x05",
        b"RS3\n{}\n\x00\x00\x00\x01\x00\x01\xff\xff\xff\xff\x00\x00\x10\x00\xff\xff\xff\xfft",
        b"RS4\n{}",
        b'RS4\n{"o":{},"x":[["c",1]]}\ne',
        b'RS4\n{"o":{},"p":["c"]}\n',
        b'RS4\n{"o":[1]}\ne',
    ],
)
def test_malformed_state_is_a_state_error(data: bytes) -> None:
    with pytest.raises(StateError):
        decode_state(b"svc", data, {}.get)


def test_restore_plan_resends_only_heads_stored_at_or_after_the_sent_mark() -> None:
    sent_ref, sent_chunks = encode_outbox(TOPIC, OUTBOX[:1], "c.1", 0, 1_000)
    open_ref, open_chunks = encode_outbox(TOPIC, OUTBOX[1:], "c.2", 0, 1_000)
    _, orphan_chunks = encode_outbox(TOPIC, [Output("t.alerts", b"zz", b"x")], "c.3", 0, 9)

    def head(ref: OutboxRef) -> bytes:
        (r,) = encode_state(TOPIC, b"x", StoredState({}, b"e", (ref,)), ref.checkpoint, 0, 9_000)
        assert r.value is not None
        return r.value

    records = {b"svc-a": (3, head(sent_ref)), b"svc-b": (9, head(open_ref))}
    chunks = {c.key: c.value for c in [*sent_chunks, *open_chunks, *orphan_chunks]}
    plan = plan_restore(records, sent_to=5, chunks=chunks)  # type: ignore[arg-type]
    assert plan.resend == OUTBOX[1:]
    # Every chunk goes once the re-sent outputs are acknowledged; the orphan set (a
    # crash between its chunks and any head) is never sent: nothing stored explains it.
    assert sorted(plan.delete) == sorted(chunks)
    assert not plan.unreadable


def test_restore_plan_deletes_parts_no_head_names_and_keeps_the_current_ones() -> None:
    old = encode_state(TOPIC, b"svc", StoredState({}, b"a" * 3_000), "c.1", 0, 1_000)
    new = encode_state(TOPIC, b"svc", StoredState({}, b"b" * 3_000), "c.2", 0, 1_000)
    records = {r.key: (i, r.value) for i, r in enumerate([*old[:-1], *new])}
    plan = plan_restore(records, 0, {})  # type: ignore[arg-type]
    assert sorted(plan.delete) == sorted(r.key for r in old[:-1])
    assert plan.resend == []


def test_restore_plan_resends_inline_outboxes_of_older_workers() -> None:
    rs3 = b"RS3\n{}\n" + pack_outputs(OUTBOX) + b"engine"
    plan = plan_restore({b"svc": (10, rs3)}, 4, {})
    assert plan.resend == OUTBOX
    assert plan_restore({b"svc": (10, rs3)}, 11, {}).resend == []


def test_restore_plan_skips_heads_a_kept_partition_read_before() -> None:
    ref, chunks = encode_outbox(TOPIC, OUTBOX, "c.1", 0, 1_000)
    (h,) = encode_state(TOPIC, b"svc", StoredState({}, b"e", (ref,)), "c.1", 0, 9_000)
    records = {b"svc": (10, h.value)}
    values = {c.key: c.value for c in chunks}
    assert plan_restore(records, 0, values, fresh=set()).resend == []  # type: ignore[arg-type]
    assert plan_restore(records, 0, values, fresh={b"svc"}).resend == OUTBOX  # type: ignore[arg-type]


@pytest.mark.kafka
def test_restore_reads_heads_parts_and_chunks_and_plans_from_the_mark(
    kafka_settings: Settings,
) -> None:
    ensure_state_changelog(kafka_settings, partitions=2, replication_factor=1)
    topic = kafka_settings.topics.state_changelog
    producer = Producer(producer_config(kafka_settings))
    sent_ref, sent_chunks = encode_outbox(topic, OUTBOX[:1], "c.1", 0, 1_000)
    open_ref, open_chunks = encode_outbox(topic, OUTBOX[1:], "c.2", 0, 1_000)
    big = encode_state(topic, b"svc-a", StoredState({}, b"A" * 5_000, (sent_ref,)), "c.1", 0, 1_500)
    unsent = encode_state(
        topic, b"svc-b", StoredState({"t": 4}, b"B", (open_ref,)), "c.2", 0, 9_000
    )
    records = [*sent_chunks, *big, Output(topic, OUTBOX_SENT_KEY, b"-", 0), *open_chunks, *unsent]
    # Partition 1: a tombstone removes svc-d.
    plain = encode_state(topic, b"svc-c", StoredState({}, b"C"), "c.3", 1, 9_000)
    gone = encode_state(topic, b"svc-d", StoredState({}, b"D"), "c.3", 1, 9_000)
    records += [*plain, *gone, Output(topic, b"svc-d", None, 1)]
    for r in records:
        producer.produce(r.topic, r.value, r.key, r.partition)
    mark_at = len(sent_chunks) + len(big)
    producer.produce(topic, str(mark_at).encode(), OUTBOX_SENT_KEY, 0)  # after svc-a
    producer.flush(30)

    store = ChangelogStore(kafka_settings, topic)
    read, plans = store.restore([0, 1], timeout_s=60)
    assert read == len(records) + 1
    a = store.state_of("svc-a")
    assert a is not None and a.engine == b"A" * 5_000
    assert store.state_of("svc-d") is None and store.state_of("svc-c") is not None
    assert OUTBOX_SENT_KEY not in store.values
    assert not any(key_kind(k) == "outbox" for k in store.values), "chunks are not kept"
    assert plans[0].resend == OUTBOX[1:]
    assert plans[1].resend == []

    # Read again from where it stopped: only what was written since.
    producer.produce(topic, b"99", OUTBOX_SENT_KEY, 0)
    producer.flush(30)
    read, plans = store.restore([0], timeout_s=60)
    assert (read, plans[0].resend) == (1, [])
    store.forget([0])
    assert store.state_of("svc-b") is None
    # Forgotten: read from the beginning, and now everything on 0 is marked sent.
    read, plans = store.restore([0], timeout_s=60)
    assert plans[0].resend == [] and store.state_of("svc-b") is not None


def test_restore_plan_resends_outboxes_in_the_order_they_were_stored() -> None:
    """Two checkpoints' outboxes unsent at a crash (a broker that stopped answering):
    the later one (here a retraction) must be re-sent after the earlier (the firing),
    whatever order the heads come in. A service first stored in the later checkpoint
    can come first: the changelog view keeps each key where it was first read."""
    firing = [Output("t.alerts", b"alert-a", b"firing")]
    retraction = [Output("t.alerts", b"alert-a", b"retracted")]
    older_ref, older_chunks = encode_outbox(TOPIC, firing, "e.1", 0, 1_000)
    newer_ref, newer_chunks = encode_outbox(TOPIC, retraction, "e.2", 0, 1_000)

    def head(service: bytes, *refs: OutboxRef) -> bytes:
        (r,) = encode_state(
            TOPIC, service, StoredState({}, b"e", refs), refs[-1].checkpoint, 0, 9_000
        )
        assert r.value is not None
        return r.value

    records = {
        b"svc-new": (12, head(b"svc-new", newer_ref)),  # read first, stored last
        b"svc-a": (11, head(b"svc-a", older_ref, newer_ref)),  # carries the older outbox
        b"svc-b": (5, head(b"svc-b", older_ref)),
    }
    chunks = {c.key: c.value for c in [*older_chunks, *newer_chunks]}
    plan = plan_restore(records, sent_to=0, chunks=chunks)  # type: ignore[arg-type]
    assert plan.resend == firing + retraction
