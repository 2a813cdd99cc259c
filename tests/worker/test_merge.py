"""The event-time merge as a plain data structure (no broker)."""

from __future__ import annotations

from streams.worker.merge import CAUGHT_UP, LAGGING, UNKNOWN, MergePolicy, PartitionMerge

TOPICS = ("d", "i", "f")


def key(ms: int, rank: int = 2, event_id: str = "e") -> tuple[int, int, str]:
    return (ms, rank, event_id)


def states(**by_topic: str):
    return lambda topic: by_topic.get(topic, UNKNOWN)


def released(
    merge: PartitionMerge,
    lag,
    now_ms: int = 0,
    idle_ms: int = 2_000,
    lagging_max_ms: int = 60_000,
    limit: int | None = None,
) -> list[str]:
    policy = MergePolicy(idle_ms, lagging_max_ms)
    return [item for _, item in merge.release(lag, now_ms, policy, limit)]


def release(merge: PartitionMerge, lag, now_ms: int, confirm_caught_up=None, **policy) -> list[str]:
    """One release with the worker's idle and lagging limits and the given waits."""
    full = MergePolicy(**{"idle_ms": 2_000, "lagging_max_ms": 60_000, **policy})
    return [x for _, x in merge.release(lag, now_ms, full, confirm_caught_up=confirm_caught_up)]


def test_releases_in_order_key_order_across_topics_when_all_have_data() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("d", key(30), 0, "d30")
    m.add("d", key(40), 0, "d40")
    m.add("i", key(10, 1), 0, "i10")
    m.add("f", key(20, 0), 0, "f20")
    m.add("f", key(50, 0), 0, "f50")
    # With nothing known about i once i10 is out, everything waits for i.
    assert released(m, states()) == ["i10"]
    # Once i is known caught up: f20, d30, d40 in order; f50 then waits for d.
    assert released(m, states(i=CAUGHT_UP)) == ["f20", "d30", "d40"]
    assert len(m) == 1


def test_caught_up_topics_do_not_hold_the_others_back() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("d", key(30), 0, "d30")
    m.add("d", key(40), 0, "d40")
    assert released(m, states(i=CAUGHT_UP, f=CAUGHT_UP)) == ["d30", "d40"]
    assert len(m) == 0


def test_unknown_lag_waits_idle_ms_from_the_first_wait() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("d", key(30), 0, "d30")
    lag = states(f=CAUGHT_UP)  # i unknown
    assert released(m, lag, now_ms=1_000) == []
    assert released(m, lag, now_ms=2_999) == []  # the clock started at 1 000
    assert released(m, lag, now_ms=3_000) == ["d30"]


def test_known_lag_waits_for_the_records_up_to_the_safety_limit() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("d", key(30), 0, "d30")
    lag = states(i=LAGGING, f=CAUGHT_UP)
    assert released(m, lag, now_ms=0) == []
    assert released(m, lag, now_ms=10_000) == []  # well past idle_ms: still waiting
    assert released(m, lag, now_ms=60_000) == ["d30"]


def test_a_delivery_stops_the_clock() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("d", key(30), 0, "d30")
    lag = states(f=CAUGHT_UP)
    assert released(m, lag, now_ms=0) == []
    m.add("i", key(35, 1), 1_500, "i35")
    assert released(m, lag, now_ms=1_600) == ["d30"]
    # i's buffer is empty again: a fresh wait starts now, not at 0.
    m.add("d", key(50), 1_700, "d50")
    assert released(m, lag, now_ms=1_700) == ["i35"]
    assert released(m, lag, now_ms=3_000) == []
    assert released(m, lag, now_ms=3_700) == ["d50"]


def test_offset_order_within_a_topic_and_the_limit() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    for n in range(5):
        m.add("d", key(100 - n, 2, f"e{n}"), 0, f"d{n}")  # event time going backwards
    out = released(m, states(i=CAUGHT_UP, f=CAUGHT_UP), limit=3)
    assert out == ["d0", "d1", "d2"]  # per-topic order is the partition's offset order
    assert released(m, states(i=CAUGHT_UP, f=CAUGHT_UP)) == ["d3", "d4"]


def test_clear_forgets_buffers_and_clocks() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("d", key(1), 0, "x")
    assert released(m, states(), now_ms=0) == []
    m.clear()
    assert len(m) == 0 and m.waiting_since == {}


def test_caught_up_empty_topic_holds_a_record_for_the_grace_only() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("f", key(500), 1_000, "f500")
    caught_up = states(d=CAUGHT_UP, i=CAUGHT_UP)
    assert release(m, caught_up, 1_050, caught_up_grace_ms=100) == []
    # A deploy of an earlier moment arrives within the grace: it goes first.
    m.add("d", key(100), 1_060, "d100")
    assert release(m, caught_up, 1_100, caught_up_grace_ms=100) == []
    out = release(m, caught_up, 1_160, caught_up_grace_ms=100)
    assert out == ["d100", "f500"]


def test_grace_does_not_delay_a_record_when_every_topic_has_data() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("d", key(1), 1_000, "d1")
    m.add("i", key(2), 1_000, "i2")
    m.add("f", key(3), 1_000, "f3")
    out = release(m, states(), 1_000, caught_up_grace_ms=100)
    assert out == ["d1"]


def test_a_record_far_ahead_of_a_caught_up_topic_waits_the_longer_grace() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("d", key(1_000), 0, "d1000")
    caught_up = states(d=CAUGHT_UP, i=CAUGHT_UP, f=CAUGHT_UP)
    opts = {"caught_up_grace_ms": 10, "far_ahead_ms": 50_000, "far_ahead_grace_ms": 250}
    assert release(m, caught_up, 0, **opts) == []
    assert release(m, caught_up, 20, **opts) == ["d1000"]
    # Deploys last showed t=1000; an incident a day later (a burst) waits the long grace.
    m.add("i", key(90_000), 100, "i90000")
    assert release(m, caught_up, 120, **opts) == []
    assert release(m, caught_up, 300, **opts) == []
    assert release(m, caught_up, 350, **opts) == ["i90000"]
    # Near in event time: the short grace only.
    m.add("i", key(95_000), 400, "i95000")
    m.add("d", key(94_000), 400, "d94000")
    assert release(m, caught_up, 412, **opts) == [
        "d94000",
        "i95000",
    ]


def test_a_far_ahead_record_waits_while_the_broker_shows_the_topic_behind() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    m.add("d", key(1_000), 0, "d1000")
    caught_up = states(d=CAUGHT_UP, i=CAUGHT_UP, f=CAUGHT_UP)
    assert release(m, caught_up, 20) == ["d1000"]
    m.add("i", key(90_000), 100, "i90000")
    behind = {"d": True}
    opts = {
        "far_ahead_ms": 50_000,
        "far_ahead_grace_ms": 250,
        "confirm_caught_up": lambda topic, since: not behind.get(topic, False),
    }
    # The broker has deploys not fetched yet: wait, well past the grace.
    assert release(m, caught_up, 5_000, **opts) == []
    m.add("d", key(2_000), 5_010, "d2000")
    behind["d"] = False
    assert release(m, caught_up, 5_400, **opts) == [
        "d2000",
        "i90000",
    ]


def test_after_the_grace_the_broker_is_asked_about_a_caught_up_topic() -> None:
    m: PartitionMerge[str] = PartitionMerge(TOPICS)
    caught_up = states(d=CAUGHT_UP, i=CAUGHT_UP, f=CAUGHT_UP)
    asked: list[tuple[str, int]] = []
    behind = {"i": True}

    def confirm(topic: str, since: int) -> bool:
        asked.append((topic, since))
        return not behind.get(topic, False)

    opts = {"caught_up_grace_ms": 10, "confirm_caught_up": confirm}
    m.add("d", key(1_000), 100, "d1000")
    # Within the grace nobody is asked.
    assert release(m, caught_up, 105, **opts) == []
    assert asked == []
    # After it: the broker has incidents the last fetch did not show; they are waited for
    # (as a lagging topic: far past the grace), and asked about since the record arrived.
    assert release(m, caught_up, 115, **opts) == []
    assert ("i", 100) in asked
    assert release(m, caught_up, 5_000, **opts) == []
    m.add("i", key(900), 5_001, "i900")
    behind["i"] = False
    # The incident waits its own grace (for feeds), then both go, in event-time order.
    assert release(m, caught_up, 5_002, **opts) == []
    out = release(m, caught_up, 5_020, **opts)
    assert out == ["i900", "d1000"]
