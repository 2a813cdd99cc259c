"""SPEC §3 ``release-flip-flop``: d is the second reversal (A→B→A) among the succeeded deploys
on (service, E) with occurred_at in (d - 24 h, d]."""

from __future__ import annotations

from agents.model.timefmt import MS_PER_HOUR

from .factory import ENV, deploy, fired, ms, rec_release, rollback

RULE = "release-flip-flop"
DAY_MS = 24 * MS_PER_HOUR


def test_second_reversal_fires() -> None:
    d4 = deploy("B", ms(hours=3), team="security")
    events = [deploy("A", ms()), deploy("B", ms(hours=1)), rollback("A", ms(hours=2), team="sre"),
              d4]
    [alert] = fired(events, RULE)
    assert (alert.environment, alert.release, alert.trigger) == (ENV, "B", d4.event_id)
    assert alert.severity == "high"
    assert sorted(alert.notify) == ["security", "sre"]
    assert alert.evidence[-1].event_id == d4.event_id
    assert len(alert.evidence) == 4
    assert rec_release(alert) == "A"


def test_first_and_third_reversals_do_not_fire() -> None:
    events = [deploy("A", ms()), deploy("B", ms(hours=1)), deploy("A", ms(hours=2))]
    assert fired(events, RULE) == []
    events += [deploy("B", ms(hours=3)), deploy("A", ms(hours=4))]
    assert [a.occurred_at_ms for a in fired(events, RULE)] == [ms(hours=3)]


def test_window_lower_edge_is_exclusive() -> None:
    """The first reversal exactly 24 h before d is outside (d - 24 h, d]."""
    first = ms(hours=2)
    outside = [deploy("A", ms()), deploy("B", ms(hours=1)), deploy("A", first),
               deploy("B", first + DAY_MS)]
    assert fired(outside, RULE) == []
    inside = [deploy("A", ms()), deploy("B", ms(hours=1)), deploy("A", first),
              deploy("B", first + DAY_MS - 1)]
    assert len(fired(inside, RULE)) == 1


def test_non_reversals_do_not_count() -> None:
    events = [deploy("A", ms()), deploy("B", ms(hours=1)), deploy("C", ms(hours=2)),
              deploy("B", ms(hours=3)), deploy("D", ms(hours=4))]
    assert fired(events, RULE) == []
    same = [deploy("A", ms()), deploy("A", ms(hours=1)), deploy("A", ms(hours=2)),
            deploy("A", ms(hours=3))]
    assert fired(same, RULE) == []


def test_failed_deploys_are_not_counted() -> None:
    events = [deploy("A", ms()), deploy("B", ms(hours=1)),
              deploy("A", ms(hours=2), status="failed"), deploy("B", ms(hours=3))]
    assert fired(events, RULE) == []
    failed_middle = [deploy("A", ms()), deploy("B", ms(hours=1)), deploy("A", ms(hours=2)),
                     deploy("C", ms(hours=2, minutes=30), status="failed"),
                     deploy("B", ms(hours=3))]
    assert len(fired(failed_middle, RULE)) == 1
    failed_last = [deploy("A", ms()), deploy("B", ms(hours=1)), deploy("A", ms(hours=2)),
                   deploy("B", ms(hours=3), status="failed")]
    assert fired(failed_last, RULE) == []


def test_environments_are_counted_apart() -> None:
    events = [deploy("A", ms(), env="e1"), deploy("B", ms(hours=1), env="e1"),
              deploy("A", ms(hours=2), env="e1"),
              deploy("A", ms(), env="e2"), deploy("B", ms(hours=1), env="e2"),
              deploy("B", ms(hours=3), env="e1", status="failed"),
              deploy("C", ms(hours=3), env="e2")]
    assert fired(events, RULE) == []


def test_same_instant_deploys_order_by_event_id() -> None:
    t = ms(hours=1)
    # order a, b, c, d by id: A B A B -> fires at "d"
    events = [deploy("B", t, event_id="d"), deploy("A", t, event_id="c"),
              deploy("B", t, event_id="b"), deploy("A", t, event_id="a")]
    [alert] = fired(events, RULE)
    assert alert.trigger == "d"


def test_time_zone_offsets() -> None:
    events = [deploy("A", "2026-03-02T00:00:00Z"), deploy("B", "2026-03-02T03:00:00+02:00"),
              deploy("A", "2026-03-02T02:00:00Z"), deploy("B", "2026-03-01T22:00:00-05:00")]
    [alert] = fired(events, RULE)
    assert alert.occurred_at_ms == ms(hours=3)
