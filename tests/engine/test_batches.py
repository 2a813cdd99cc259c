"""Batches (``process_batch``): the same dispositions and active alerts as one by one, for
any arrival order and any split into batches, with the log re-evaluated once per batch.

A batch reports each alert identity's net change once (docs/decisions.md), so
the *sequence* of alert records may be shorter than one by one; the active set after
each batch is the same.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from agents.engine import Disposition, Engine, EngineConfig, Outcome, ServiceEngine
from agents.model.alerts import FIRING, RETRACTED
from agents.model.events import Event, parse_event
from agents.model.timefmt import MS_PER_MINUTE, format_rfc3339_ms

from .factory import clock_for, deploy, flag, ms, rollback
from .test_properties import (
    LATENESS_MS,
    NOW_MS,
    PROPS,
    T0,
    active,
    arrivals,
    feed,
    sorted_run,
    stripped,
)

CONFIG = EngineConfig(allowed_lateness_ms=LATENESS_MS)


def _split(data: st.DataObject, items: list[Event]) -> list[list[Event]]:
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(items)), max_size=8), label="cuts")))
    bounds = [0, *cuts, len(items)]
    return [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def feed_batches(
    batches: list[list[Event]], config: EngineConfig, restore_after: set[int] = frozenset()
) -> tuple[Engine, list[Outcome]]:
    engine = Engine(config)
    outcomes: list[Outcome] = []
    for n, batch in enumerate(batches):
        got = engine.process_batch(batch, NOW_MS)
        assert len(got) == len(batch)
        outcomes.extend(got)
        if n in restore_after:
            snapshot = engine.snapshot()
            engine = Engine.restore(snapshot, config, NOW_MS)
            assert engine.snapshot() == snapshot
    return engine, outcomes


def _with_repeats_and_strays(data: st.DataObject, arrived: list[Event]) -> list[Event]:
    """Re-sends anywhere (duplicates, or late copies), far-late and future events."""
    stream = list(arrived)
    for pick in data.draw(st.lists(st.integers(0, len(arrived) - 1), max_size=6), label="re"):
        after = stream.index(arrived[pick]) + 1
        stream.insert(data.draw(st.integers(after, len(stream)), label="pos"), arrived[pick])
    for n, kind in enumerate(data.draw(st.lists(st.sampled_from(["late", "future"]),
                                                max_size=3), label="stray")):
        at = T0 - 3 * LATENESS_MS if kind == "late" else NOW_MS + 6 * MS_PER_MINUTE
        base = data.draw(st.sampled_from(arrived), label="base")
        stream.insert(data.draw(st.integers(0, len(stream)), label="at"), parse_event({
            "type": "incident", "event_id": f"x{n}", "occurred_at": format_rfc3339_ms(at),
            "source": "gen", "service": base.service, "environment": "prod",
            "incident_id": "I9", "status": "opened", "severity": "sev2", "title": "x",
        }))
    return stream


@PROPS
@given(arrivals(), st.data())
def test_any_split_gives_the_dispositions_and_active_alerts_of_one_by_one(
    case: tuple[list[Event], list[Event]], data: st.DataObject
) -> None:
    events, arrived = case
    stream = _with_repeats_and_strays(data, arrived)  # a stray first of its service is taken
    _, single = feed(stream, CONFIG)
    _, batched = feed_batches(_split(data, stream), CONFIG)
    assert [o.disposition for o in batched] == [o.disposition for o in single]
    taken = [e for e, o in zip(stream, single, strict=True) if o.disposition == "applied"]
    assert {e.event_id for e in events} <= {e.event_id for e in taken}
    assert active(batched) == active(single) == sorted_run(taken)
    for o in batched:
        if o.disposition != Disposition.APPLIED:
            assert o.alerts == ()


@PROPS
@given(arrivals(), st.data())
def test_snapshots_between_batches_change_nothing(
    case: tuple[list[Event], list[Event]], data: st.DataObject
) -> None:
    events, arrived = case
    batches = _split(data, arrived)
    points = set(data.draw(st.lists(st.integers(0, len(batches) - 1), max_size=4), label="at"))
    _, plain = feed_batches(batches, CONFIG)
    _, restored = feed_batches(batches, CONFIG, points)
    assert stripped(restored) == stripped(plain)
    assert active(restored) == sorted_run(events)


@PROPS
@given(arrivals(), st.data())
def test_a_service_engine_batch_equals_its_events_one_by_one(
    case: tuple[list[Event], list[Event]], data: st.DataObject
) -> None:
    _, arrived = case
    mine = [e for e in arrived if e.service == "svc-a"]
    one = ServiceEngine("svc-a", CONFIG)
    many = ServiceEngine("svc-a", CONFIG)
    single = [one.process(e, NOW_MS) for e in mine]
    batched = [o for b in _split(data, mine) for o in many.process_batch(b, NOW_MS)]
    assert [o.disposition for o in batched] == [o.disposition for o in single]
    assert active(batched) == active(single)
    assert many.to_bytes() == one.to_bytes()


# --- what a batch changes in the sequence of alert records ---------------------------


def _story() -> tuple[list[Event], Event]:
    early = [deploy("1.0", ms(), event_id="d1"), deploy("2.0", ms(hours=1), event_id="d2"),
             rollback("1.0", ms(hours=2), previous="2.0", event_id="rb")]
    late_flag = flag("CVE-1", "1.0", ms(minutes=30), event_id="f")
    return early, late_flag


def test_one_by_one_fires_then_retracts_a_batch_reports_only_the_end() -> None:
    early, late_flag = _story()
    now = clock_for([*early, late_flag])
    single = Engine(CONFIG)
    records = [a for e in [*early, late_flag] for a in single.process(e, now).alerts]
    assert [(a.rule, a.status) for a in records] == [
        ("rollback-performed", FIRING),
        ("rollback-performed", RETRACTED),
        ("flag-raised-on-running-release", FIRING),
        ("rollback-to-flagged-release", FIRING),
    ]
    batch = Engine(CONFIG).process_batch([*early, late_flag], now)
    # no fire-then-retract pair; each firing on the outcome of the event that owns it
    assert [[(a.rule, a.status) for a in o.alerts] for o in batch] == [
        [], [], [("rollback-to-flagged-release", FIRING)],
        [("flag-raised-on-running-release", FIRING)],
    ]


def test_retractions_and_changes_go_on_the_batch_event_earliest_in_order() -> None:
    early, late_flag = _story()
    now = clock_for([*early, late_flag])
    engine = Engine(CONFIG)
    for e in early:
        engine.process(e, now)
    later = deploy("3.0", ms(hours=3), event_id="d3")
    outcomes = engine.process_batch([later, late_flag], now)
    # d3 owns nothing; the flag landed first in order: the retraction of the old rollback
    # alert and the firing owned by the (older) rollback both go on its outcome, with
    # the firing the flag owns itself
    assert outcomes[0].alerts == ()
    assert sorted((a.rule, a.status, a.trigger) for a in outcomes[1].alerts) == [
        ("flag-raised-on-running-release", FIRING, "CVE-1"),
        ("rollback-performed", RETRACTED, "rb"),
        ("rollback-to-flagged-release", FIRING, "rb"),
    ]


def test_a_firing_owned_by_a_batch_event_goes_on_its_own_outcome() -> None:
    early, late_flag = _story()
    now = clock_for([*early, late_flag])
    engine = Engine(CONFIG)
    for e in early:
        engine.process(e, now)
    redeploy = deploy("1.0", ms(hours=4), event_id="d4")
    outcomes = engine.process_batch([redeploy, late_flag], now)
    assert [(a.rule, a.trigger) for a in outcomes[0].alerts] == [
        ("flagged-release-deployed", "d4")
    ]
    assert {a.trigger for a in outcomes[1].alerts} == {"rb", "CVE-1"}


def test_a_duplicate_inside_a_batch_is_a_duplicate() -> None:
    d = deploy("1.0", ms(), event_id="same")
    outcomes = Engine(CONFIG).process_batch([d, d, deploy("2.0", ms(hours=1))], NOW_MS)
    assert [o.disposition for o in outcomes] == [
        Disposition.APPLIED, Disposition.DUPLICATE, Disposition.APPLIED,
    ]
    assert outcomes[1].detail


# --- the log is re-evaluated once per batch ------------------------------------------------


def _burst(n: int) -> list[Event]:
    """A deploy, then ``n`` raises on its release at one instant, ids not in order."""
    import hashlib

    events = [deploy("1.0.0", ms(), service="checkout")]
    for i in range(n):
        eid = hashlib.sha256(f"finding-{i}".encode()).hexdigest()[:16]
        events.append(flag(f"CVE-{i:05d}", "1.0.0", ms(hours=1), service="checkout",
                           event_id=eid))
    return events


def _evaluations(engine: Engine) -> int:
    return sum(service.evaluations for service in engine.services.values())


def test_a_burst_in_one_batch_evaluates_each_event_about_once() -> None:
    events = _burst(2000)
    batched = Engine(CONFIG)
    outcomes = batched.process_batch(events, NOW_MS)
    assert _evaluations(batched) <= len(events) + 1
    assert sum(len(o.alerts) for o in outcomes) == 2000
    # one by one, each arrival that lands inside the log re-evaluates what follows it
    single = Engine(CONFIG)
    for e in events[:300]:
        single.process(e, NOW_MS)
    assert _evaluations(single) > 10 * 300


def test_batches_of_a_burst_end_with_the_sorted_alerts() -> None:
    events = _burst(500)
    _, batched = feed_batches([events[i:i + 64] for i in range(0, len(events), 64)], CONFIG)
    assert active(batched) == sorted_run(events)
    assert len(active(batched)) == 500
    assert all(a.service == "checkout" for a in active(batched).values())
