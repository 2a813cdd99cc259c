"""Order barriers of ``publish_events``: where they fall, and what they guarantee."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.publish import MIN_ORDER_STEP_MS, OrderBarriers, order_step_ms

HOUR_MS = 3_600_000


def epochs(times: list[int], step_ms: int) -> list[list[int]]:
    """The event times split where the barriers fall."""
    barriers = OrderBarriers(step_ms)
    out: list[list[int]] = []
    for t in times:
        if barriers.due_before(t) or not out:
            out.append([])
        out[-1].append(t)
    return out


# A backfill: mostly forward in event time, some records days behind or ahead.
moves = st.lists(st.integers(min_value=-3 * HOUR_MS, max_value=5 * HOUR_MS), max_size=300)


def as_times(deltas: list[int]) -> list[int]:
    times, t = [], 1_777_000_000_000
    for d in deltas:
        t += d
        times.append(t)
    return times


@given(moves, st.integers(min_value=0, max_value=4 * HOUR_MS))
def test_between_barriers_no_record_runs_more_than_a_step_ahead_of_an_earlier_one(
    deltas: list[int], step_ms: int
) -> None:
    # What the worker relies on: a record reaches the broker no later than one sent
    # after it in the same epoch, and those are at most a step past it in event time.
    for epoch in epochs(as_times(deltas), step_ms):
        newest = epoch[0]
        for t in epoch[1:]:
            assert t <= newest + step_ms
            newest = max(newest, t)


@given(moves, st.integers(min_value=1, max_value=4 * HOUR_MS))
def test_barriers_come_once_per_step_of_event_time_not_once_per_record(
    deltas: list[int], step_ms: int
) -> None:
    times = as_times(deltas)
    if not times:
        return
    barriers = len(epochs(times, step_ms)) - 1
    assert barriers <= (max(times) - times[0]) // step_ms


def test_a_stream_in_order_within_a_step_needs_no_barrier() -> None:
    times = [0, 10, 5, 3_000, 2_500, 3_500]
    assert len(epochs(times, 3_500)) == 1
    assert [len(e) for e in epochs(times, 1_000)] == [3, 3]


def test_the_step_is_a_share_of_the_allowed_lateness_with_a_floor() -> None:
    assert order_step_ms(24 * HOUR_MS) == HOUR_MS
    assert order_step_ms(0) == MIN_ORDER_STEP_MS


def test_a_negative_step_is_refused() -> None:
    with pytest.raises(ValueError, match="order step"):
        OrderBarriers(-1)
