"""The seal schedule of the kafka runtime's at-least-once checkpoints (streams.worker.cadence)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.cadence import CheckpointCadence, SealKind


def cadence(store_delay_ms: int = 1_000, **overrides: int) -> CheckpointCadence:
    values = dict(
        every_ms=10,
        store_delay_ms=store_delay_ms,
        backlog_every_ms=1_000,
        max_records=20_000,
        max_outbox_bytes=8 << 20,
    )
    values.update(overrides)
    return CheckpointCadence(**values)


def test_live_traffic_gets_a_partial_seal_every_interval() -> None:
    c = cadence()
    assert c.due(9, 5, True, 100, backlog=False) is None
    assert c.due(10, 5, True, 100, backlog=False) == "partial"
    c.sealed(10)
    assert c.due(15, 7, False, 0, backlog=False) is None
    assert c.due(20, 7, False, 0, backlog=False) == "partial"


def test_a_partial_seal_stores_the_services_touched_the_delay_ago() -> None:
    c = cadence(store_delay_ms=1_000)
    assert c.store_before_ms(5_000) == 4_000
    c.sealed(4_990)
    assert c.due(5_000, 0, False, 0, backlog=False, oldest_touch_ms=4_000) is None
    assert c.due(5_000, 0, False, 0, backlog=False, oldest_touch_ms=3_999) == "partial"


def test_a_service_left_unstored_gets_its_seal_without_further_traffic() -> None:
    c = cadence()
    c.sealed(10)  # the service touched at 5 was not stored: no alert of its waited
    for now in range(20, 1_005, 10):
        assert c.due(now, 0, False, 0, backlog=False, oldest_touch_ms=5) is None
    assert c.due(1_010, 0, False, 0, backlog=False, oldest_touch_ms=5) == "partial"


def test_while_a_backlog_is_read_everything_waits_for_the_backlog_interval() -> None:
    c = cadence(backlog_every_ms=500)
    assert c.due(10, 5_000, True, 100, backlog=True) is None
    assert c.due(499, 5_000, True, 100, backlog=True) is None
    assert c.due(500, 5_000, True, 100, backlog=True) == "full"


def test_many_records_or_a_full_outbox_seal_everything_at_once() -> None:
    c = cadence(max_records=100, max_outbox_bytes=1_000)
    assert c.due(1, 100, False, 0, backlog=True) == "full"
    assert c.due(1, 1, True, 1_000, backlog=False) == "full"
    assert c.due(1, 99, True, 999, backlog=True) is None


def test_a_store_delay_of_zero_makes_every_seal_full() -> None:
    c = cadence(store_delay_ms=0)
    assert c.due(10, 1, True, 10, backlog=False) == "full"
    c.sealed(10)
    assert c.due(20, 1, False, 0, backlog=False) == "full"


def test_nothing_taken_held_or_unstored_is_never_sealed() -> None:
    c = cadence()
    assert c.due(10_000, 0, False, 0, backlog=False) is None
    assert c.due(10_000, 0, False, 0, backlog=True) is None
    assert c.due(10_000, 0, False, 0, backlog=False, oldest_touch_ms=9_001) is None


@settings(max_examples=200, deadline=None)
@given(
    every=st.integers(1, 50),
    delay=st.integers(0, 400),
    backlog_every=st.integers(1, 400),
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.booleans(), st.booleans()), min_size=1, max_size=300
    ),
)
def test_no_alert_and_no_unstored_service_waits_past_its_bound(
    every: int,
    delay: int,
    backlog_every: int,
    steps: list[tuple[int, bool, bool]],
) -> None:
    """Asked every millisecond (as a busy loop does), under any traffic: an alert waits at
    most ``every_ms`` for its seal (the backlog interval while a backlog is read), and a
    touched service at most the store delay plus ``every_ms`` for the seal that stores it
    (a partial seal stores the services touched ``store_delay_ms`` ago)."""
    c = cadence(
        every_ms=every, store_delay_ms=delay, backlog_every_ms=backlog_every, max_records=10**9
    )
    records = 0
    holding_since: int | None = None
    touched: list[int] = []  # when each unstored service was first touched
    backlog_seen = False
    for now, (taken, outputs, backlog) in enumerate(steps, start=1):
        records += taken
        touched.extend([now] * taken)
        if outputs and taken and holding_since is None:
            holding_since = now
        backlog_seen = backlog_seen or backlog
        oldest = min(touched) if touched else None
        due: SealKind | None = c.due(now, records, holding_since is not None, 0, backlog, oldest)
        if holding_since is not None and due is None:
            assert now - c.last_ms < (max(every, backlog_every) if backlog else every)
        if oldest is not None and due is None and not backlog_seen:
            assert now - oldest <= delay + every
        if due is not None:
            edge = c.store_before_ms(now)
            touched = [] if due == "full" else [t for t in touched if t >= edge]
            c.sealed(now)
            holding_since, records = None, 0


def test_a_quiet_input_gets_a_full_seal_so_the_commit_reaches_the_end() -> None:
    c = cadence()
    c.sealed(10)
    assert c.due(20, 0, False, 0, backlog=False, oldest_touch_ms=5) is None, "busy: wait"
    assert c.due(20, 0, False, 0, backlog=False, oldest_touch_ms=5, idle=True) == "full"
    assert c.due(20, 3, True, 10, backlog=False, oldest_touch_ms=5, idle=True) == "full"
    assert c.due(20, 0, False, 0, backlog=False, oldest_touch_ms=None, idle=True) is None
