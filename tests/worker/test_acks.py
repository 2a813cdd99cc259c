"""Offset-ordered acknowledgements: never one past an unfinished record, no offset left out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.worker.acks import OffsetOrderedAcks

# Per record: its partition (0-2), the offsets skipped before it (markers), and when
# it finishes relative to the others (a rank: the merge reorders across topics).
records = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 1_000)), max_size=60
)


@given(records, st.integers(0, 50))
def test_acks_are_a_contiguous_prefix_per_partition_and_cover_every_offset(
    spec: list[tuple[int, int, int]], start: int
) -> None:
    acks: OffsetOrderedAcks[int, int] = OffsetOrderedAcks()
    next_offset = {p: start for p in range(3)}
    entries = []
    for partition, gap, rank in spec:
        offset = next_offset[partition] + gap
        next_offset[partition] = offset + 1
        entries.append((rank, partition, acks.deliver(partition, offset, offset, start=start)))
    acked: dict[int, list[int]] = {p: [] for p in range(3)}
    finished: dict[int, set[int]] = {p: set() for p in range(3)}
    for _, partition, entry in sorted(entries, key=lambda e: e[0]):
        acks.finish(entry)
        finished[partition].add(entry.offset)
        for p, ready in acks.take_ready():
            acked[p].extend(ready.skipped)
            acked[p].append(ready.offset)
            assert ready.offset in finished[p]
        for p in range(3):
            # What is acknowledged is every offset from the start, with no hole, and
            # stops before the first unfinished record.
            assert acked[p] == list(range(start, start + len(acked[p])))
            unfinished = [e.offset for _, q, e in entries if q == p and not e.done]
            if unfinished:
                assert not acked[p] or acked[p][-1] < min(unfinished)
    assert acks.finished == 0
    assert acks.unfinished() == 0
    for p in range(3):
        assert acked[p] == list(range(start, next_offset[p]))


def test_a_finished_record_waits_behind_an_unfinished_one() -> None:
    acks: OffsetOrderedAcks[str, str] = OffsetOrderedAcks()
    held = acks.deliver("deploys-0", 10, "held", start=10)
    bad = acks.deliver("deploys-0", 11, "dead letter")
    acks.finish(bad)
    assert acks.take_ready() == []
    assert acks.finished == 1
    acks.finish(held)
    assert [e.item for _, e in acks.take_ready()] == ["held", "dead letter"]


def test_offsets_never_delivered_are_reported_with_the_record_after_them() -> None:
    acks: OffsetOrderedAcks[str, str] = OffsetOrderedAcks()
    first = acks.deliver("t-0", 5, "a", start=3)  # 3 and 4: markers before it
    second = acks.deliver("t-0", 7, "b")  # 6: a marker
    assert (list(first.skipped), list(second.skipped)) == ([3, 4], [6])
    # Without a start (nothing committed yet) nothing before the first record is claimed.
    assert list(acks.deliver("t-1", 9, "c").skipped) == []


def test_clear_forgets_everything() -> None:
    acks: OffsetOrderedAcks[str, str] = OffsetOrderedAcks()
    acks.finish(acks.deliver("t-0", 1, "a"))
    acks.clear()
    assert acks.take_ready() == [] and acks.finished == 0
    assert list(acks.deliver("t-0", 4, "b").skipped) == []
