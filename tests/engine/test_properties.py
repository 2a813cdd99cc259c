"""Hypothesis properties of the engine (SPEC §2 "the central guarantee", §5 accounting).

Event sets are generated over few services, environments, releases, flags and
incidents, with timestamps on a coarse grid (quarter hours over ~3 days, or
105 minutes over ~3 weeks), so that ties, the 24 h and 7 day edges and every
rule kind are reachable. The reference is the sorted run
(lateness 0); every other way of feeding the same events must end with the
same active alerts (identity and content; ``detected_at`` is ignored).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.engine import Disposition, Engine, EngineConfig, Outcome, ServiceEngine
from agents.engine.windows import lateness_frontier
from agents.model.alerts import FIRING, Alert
from agents.model.events import Event, order_key, parse_event
from agents.model.timefmt import MS_PER_HOUR, MS_PER_MINUTE, format_rfc3339_ms

from .factory import T0
from .oracle import expected_alerts

SERVICES = ("svc-a", "svc-b")
ENVS = ("prod", "stage")
RELEASES = ("r1", "r2", "r3", "r4")
NAMES = {r: (r, f"img:{r}", f"sha256:{i:04x}") for i, r in enumerate(RELEASES)}
"""SPEC §8: each release also goes by an image tag and a digest; tools pick one name."""
MUTABLE = ("latest", "img:latest")
FLAGS = ("F1", "F2")
INCIDENTS = ("I1", "I2")
GRIDS_MS = (15 * MS_PER_MINUTE, 105 * MS_PER_MINUTE)
"""Quarter hours (96 slots = 24 h exactly) or 105 minutes (96 slots = 7 days exactly)."""
SPAN_SLOTS = 3 * 24 * 4  # three days of quarter hours, three weeks of 105 minutes
LATENESS_MS = 12 * MS_PER_HOUR
NOW_MS = T0 + 120 * 24 * MS_PER_HOUR  # after every generated event

EXAMPLES = int(os.environ.get("RELSEC_PROPERTY_EXAMPLES", "100"))
"""Examples per property; raise it for a deeper run (the suite's default keeps it < 60 s)."""
PROPS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

_opt_release = st.one_of(st.none(), st.sampled_from(RELEASES))


def _name(draw: st.DrawFn, release: str) -> str:
    """The name a tool gives ``release``: mostly the version, else its tag or digest,
    now and then a mutable tag."""
    return draw(st.sampled_from([release] * 4 + list(NAMES[release][1:]) + [MUTABLE[0]]))


def _aliases(draw: st.DrawFn, release: str) -> list[str]:
    """Most events carry no aliases; some carry other names of their release, a mutable
    tag, or now and then a name of another release (a tool that got it wrong)."""
    kind = draw(st.sampled_from(["none", "none", "none", "own", "own", "mutable", "stray"]))
    if kind == "none":
        return []
    logical = next((r for r, names in NAMES.items() if release in names), None)
    if kind == "stray" or logical is None:
        return [draw(st.sampled_from([n for names in NAMES.values() for n in names]))]
    picks = draw(st.lists(st.sampled_from(NAMES[logical]), min_size=1, max_size=2, unique=True))
    return picks + (list(MUTABLE) if kind == "mutable" else [])


def _deploy_obj(
    draw: st.DrawFn, slot: int, service: str, env: str, release: str
) -> dict[str, Any]:
    name = _name(draw, release)
    return {
        "type": "deploy",
        "occurred_at": slot,  # grid slots; event_sets turns them into time
        "source": "gen",
        "service": service,
        "environment": env,
        "release": name,
        "release_aliases": _aliases(draw, name),
        "previous_release": draw(_opt_release),
        "action": draw(st.sampled_from(["deploy", "deploy", "rollback"])),
        "status": draw(st.sampled_from(["succeeded"] * 5 + ["failed"])),
        "team": draw(st.sampled_from(["sre", "security", "dev", None])),
        "incident_id": draw(st.one_of(st.none(), st.none(), st.sampled_from(INCIDENTS))),
    }


def _incident_obj(
    draw: st.DrawFn, slot: int, service: str, env: str, status: str | None = None
) -> dict[str, Any]:
    return {
        "type": "incident",
        "occurred_at": slot,  # grid slots; event_sets turns them into time
        "source": "gen",
        "service": service,
        "environment": env,
        "incident_id": draw(st.sampled_from(INCIDENTS)),
        "status": status
        or draw(st.sampled_from(["opened", "opened", "acknowledged", "resolved"])),
        "severity": draw(st.sampled_from(["sev1", "sev3"])),
        "title": "t",
        **_suspected(draw),
    }


def _suspected(draw: st.DrawFn) -> dict[str, Any]:
    """An incident's suspected release links its aliases too (SPEC §8)."""
    if draw(st.integers(0, 3)) != 0:
        return {}
    name = _name(draw, draw(st.sampled_from(RELEASES)))
    return {"suspected_release": name, "release_aliases": _aliases(draw, name)}


def _flag_obj(
    draw: st.DrawFn, slot: int, service: str, release: str, status: str | None = None
) -> dict[str, Any]:
    name = _name(draw, release)
    return {
        "type": "security_flag",
        "occurred_at": slot,  # grid slots; event_sets turns them into time
        "source": "gen",
        "service": service,
        "flag_id": draw(st.sampled_from(FLAGS)),
        "release": name,
        "release_aliases": _aliases(draw, name),
        "status": status
        or draw(st.sampled_from(["raised", "raised", "cleared", "risk_accepted"])),
        "severity": draw(st.sampled_from(["critical", "high", "low"])),
        "title": "f",
        "fixed_in": draw(_opt_release),
    }


_GAPS = st.sampled_from([0, 0, 1, 4, 32, 95, 96, 97])
"""Gaps between events of a burst, in grid slots; 96 slots are exactly 24 h."""


@st.composite
def _chunk(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One random event, or a short burst that makes a rule likely: alternating deploys
    (flip-flop), or deploy / flag / incident / rollback on one environment."""
    slot = draw(st.integers(0, SPAN_SLOTS))
    service = draw(st.sampled_from(SERVICES))
    env = draw(st.sampled_from(ENVS))
    release = draw(st.sampled_from(RELEASES))
    kind = draw(st.sampled_from(["deploy", "deploy", "incident", "flag", "flip", "story"]))
    if kind == "deploy":
        return [_deploy_obj(draw, slot, service, env, release)]
    if kind == "incident":
        return [_incident_obj(draw, slot, service, env)]
    if kind == "flag":
        return [_flag_obj(draw, slot, service, release)]
    out: list[dict[str, Any]] = []
    if kind == "flip":
        other = draw(st.sampled_from([r for r in RELEASES if r != release]))
        for i in range(draw(st.integers(3, 5))):
            slot += draw(_GAPS)
            out.append(_deploy_obj(draw, slot, service, env, release if i % 2 == 0 else other))
        return out
    out.append(_deploy_obj(draw, slot, service, env, release))
    slot += draw(_GAPS)
    out.append(_flag_obj(draw, slot, service, release, "raised"))
    slot += draw(_GAPS)
    out.append(_incident_obj(draw, slot, service, env, "opened"))
    slot += draw(_GAPS)
    out.append(_deploy_obj(draw, slot, service, env, draw(st.sampled_from(RELEASES))))
    return out


@st.composite
def event_sets(draw: st.DrawFn, max_chunks: int = 14) -> list[Event]:
    chunks = draw(st.lists(_chunk(), min_size=1, max_size=max_chunks))
    grid_ms = draw(st.sampled_from(GRIDS_MS))
    objs = [o for chunk in chunks for o in chunk]
    return [
        parse_event(
            {**o, "event_id": f"e{i:03d}",
             "occurred_at": format_rfc3339_ms(T0 + o["occurred_at"] * grid_ms)}
        )
        for i, o in enumerate(objs)
    ]


@st.composite
def arrivals(draw: st.DrawFn, lateness_ms: int = LATENESS_MS) -> tuple[list[Event], list[Event]]:
    """An event set and an arrival order in which every event is at most ``lateness_ms``
    behind the newest event seen before it: arrival time = occurred_at + delay, delay in
    [0, lateness]."""
    events = draw(event_sets())
    delays = draw(
        st.lists(
            st.one_of(st.sampled_from([0, lateness_ms // 2, lateness_ms]),
                      st.integers(0, lateness_ms)),
            min_size=len(events), max_size=len(events),
        )
    )
    ties = draw(st.permutations(range(len(events))))
    order = sorted(
        range(len(events)), key=lambda i: (events[i].occurred_at_ms + delays[i], ties[i])
    )
    return events, [events[i] for i in order]


# --- running ---------------------------------------------------------------------------

Hook = Callable[[Engine, int], Engine]


def _strip(alert: Alert) -> Alert:
    return alert.replace(detected_at_ms=0)


def feed(
    events: Iterable[Event], config: EngineConfig, after_each: Hook | None = None
) -> tuple[Engine, list[Outcome]]:
    engine = Engine(config)
    outcomes: list[Outcome] = []
    for n, event in enumerate(events):
        outcomes.append(engine.process(event, NOW_MS))
        if after_each is not None:
            engine = after_each(engine, n)
    return engine, outcomes


def active(outcomes: Iterable[Outcome]) -> dict[str, Alert]:
    latest: dict[str, Alert] = {}
    for outcome in outcomes:
        for alert in outcome.alerts:
            latest[alert.alert_id] = alert
    return {k: _strip(a) for k, a in latest.items() if a.status == FIRING}


def stripped(outcomes: Sequence[Outcome]) -> list[tuple[Disposition, tuple[Alert, ...]]]:
    return [(o.disposition, tuple(_strip(a) for a in o.alerts)) for o in outcomes]


def sorted_run(events: Iterable[Event]) -> dict[str, Alert]:
    _, outcomes = feed(sorted(events, key=order_key), EngineConfig(allowed_lateness_ms=0))
    assert all(o.disposition == Disposition.APPLIED for o in outcomes)
    assert all(a.status == FIRING for o in outcomes for a in o.alerts)
    return active(outcomes)


# --- (a) arrival order -------------------------------------------------------------------


_LATENESSES = st.sampled_from([LATENESS_MS, 4 * 24 * MS_PER_HOUR])
"""12 h, and 4 days: longer than the whole span, so any permutation is in time."""


@PROPS
@given(_LATENESSES.flatmap(lambda lateness: st.tuples(st.just(lateness), arrivals(lateness))))
def test_any_arrival_order_within_lateness_gives_the_sorted_result(
    case: tuple[int, tuple[list[Event], list[Event]]],
) -> None:
    lateness_ms, (events, arrived) = case
    _, outcomes = feed(arrived, EngineConfig(allowed_lateness_ms=lateness_ms))
    assert [o.disposition for o in outcomes] == [Disposition.APPLIED] * len(arrived)
    assert active(outcomes) == sorted_run(events)


@PROPS
@given(arrivals(lateness_ms=0))
def test_zero_lateness_in_order_by_time_gives_the_sorted_result(
    case: tuple[list[Event], list[Event]],
) -> None:
    """With lateness 0 only same-instant events may arrive out of order."""
    events, arrived = case
    _, outcomes = feed(arrived, EngineConfig(allowed_lateness_ms=0))
    assert active(outcomes) == sorted_run(events)


# --- (b) duplicates ------------------------------------------------------------------------


@PROPS
@given(arrivals(), st.data())
def test_duplicates_change_nothing(
    case: tuple[list[Event], list[Event]], data: st.DataObject
) -> None:
    events, arrived = case
    config = EngineConfig(allowed_lateness_ms=LATENESS_MS)
    _, plain = feed(arrived, config)
    # Re-send some events later in the stream, each while it is still within the lateness.
    stream: list[Event] = list(arrived)
    picks = data.draw(st.lists(st.integers(0, len(arrived) - 1), max_size=10), label="dups")
    for pick in picks:
        original = arrived[pick]
        at = stream.index(original)
        newest = original.occurred_at_ms
        latest_ok = at
        for j in range(at + 1, len(stream) + 1):
            latest_ok = j
            if j < len(stream):
                newest = max(newest, stream[j].occurred_at_ms)
                if newest - original.occurred_at_ms > LATENESS_MS:
                    break
        pos = data.draw(st.integers(at + 1, max(at + 1, latest_ok)), label="position")
        stream.insert(pos, original)
    _, with_dups = feed(stream, config)
    dispositions = [o.disposition for o in with_dups]
    assert dispositions.count(Disposition.DUPLICATE) == len(picks)
    assert dispositions.count(Disposition.APPLIED) == len(arrived)
    assert all(not o.alerts for o in with_dups if o.disposition == Disposition.DUPLICATE)
    assert active(with_dups) == active(plain) == sorted_run(events)


# --- (c) snapshots ---------------------------------------------------------------------------


def _restore_at(points: set[int]) -> Hook:
    def hook(engine: Engine, n: int) -> Engine:
        if n not in points:
            return engine
        snapshot = engine.snapshot()
        restored = Engine.restore(snapshot, engine.config, NOW_MS)
        # a restored engine serializes back to the same bytes
        assert restored.snapshot() == snapshot
        return restored

    return hook


@PROPS
@given(arrivals(), st.data())
def test_snapshot_and_restore_at_any_point_changes_nothing(
    case: tuple[list[Event], list[Event]], data: st.DataObject
) -> None:
    events, arrived = case
    config = EngineConfig(allowed_lateness_ms=LATENESS_MS)
    points = set(data.draw(st.lists(st.integers(0, len(arrived) - 1), max_size=6), label="at"))
    _, plain = feed(arrived, config)
    _, restored = feed(arrived, config, _restore_at(points))
    assert stripped(restored) == stripped(plain)
    assert active(restored) == sorted_run(events)


@PROPS
@given(event_sets(), st.data())
def test_snapshot_of_one_service_engine_round_trips(
    events: list[Event], data: st.DataObject
) -> None:
    config = EngineConfig(allowed_lateness_ms=LATENESS_MS)
    cut = data.draw(st.integers(0, len(events)), label="cut")
    ordered = sorted(events, key=order_key)
    svc = ServiceEngine("svc-a", config)
    mine = [e for e in ordered if e.service == "svc-a"]
    for e in mine[:cut]:
        svc.process(e, NOW_MS)
    copy = ServiceEngine.from_bytes(svc.to_bytes(), config, NOW_MS)
    rest_a = [svc.process(e, NOW_MS) for e in mine[cut:]]
    rest_b = [copy.process(e, NOW_MS) for e in mine[cut:]]
    assert stripped(rest_a) == stripped(rest_b)


@PROPS
@given(arrivals())
def test_stored_state_is_the_state_however_often_it_is_stored(
    case: tuple[list[Event], list[Event]],
) -> None:
    """to_bytes keeps the base's rendering while the base has not changed (a checkpoint
    per event of a burst): storing after every event, in any arrival order, ends in the
    bytes of a service stored only at the end (which renders its base once, afresh)."""
    _, arrived = case
    mine = [e for e in arrived if e.service == "svc-a"]
    # Never pruning: the bytes cannot depend on when the service was stored.
    config = EngineConfig(allowed_lateness_ms=LATENESS_MS, prune_every_events=None)
    stored_often = ServiceEngine("svc-a", config)
    stored_at_end = ServiceEngine("svc-a", config)
    for e in mine:
        stored_often.process(e, NOW_MS)
        stored_at_end.process(e, NOW_MS)
        often = stored_often.to_bytes()
    if mine:
        assert often == stored_at_end.to_bytes()
    # Pruning (storing prunes first, and when it prunes depends on when it is stored):
    # each stored rendering equals one made afresh of the same state.
    pruning = ServiceEngine("svc-a", EngineConfig(allowed_lateness_ms=LATENESS_MS))
    for e in mine:
        pruning.process(e, NOW_MS)
        kept = pruning.to_bytes()
        pruning._base_stored = None  # what a restart or a first store would render
        assert pruning.to_bytes() == kept
    pruning.prune(NOW_MS)  # a caller's prune, long after: the base loses its old deploys
    pruned = pruning.to_bytes()
    pruning._base_stored = None
    assert pruning.to_bytes() == pruned


# --- (d) pruning --------------------------------------------------------------------------------


def _prune_always(engine: Engine, n: int) -> Engine:
    for svc in engine.services.values():
        if svc.max_seen_ms is not None:
            svc.prune(lateness_frontier(svc.max_seen_ms, engine.config.allowed_lateness_ms))
    return engine


@PROPS
@given(arrivals())
def test_pruning_changes_nothing(case: tuple[list[Event], list[Event]]) -> None:
    events, arrived = case
    never = EngineConfig(allowed_lateness_ms=LATENESS_MS, prune_every_events=None)
    always = EngineConfig(allowed_lateness_ms=LATENESS_MS, prune_every_events=1)
    _, unpruned = feed(arrived, never)
    _, pruned = feed(arrived, always, _prune_always)
    assert stripped(pruned) == stripped(unpruned)
    ordered = sorted(events, key=order_key)
    _, sorted_unpruned = feed(ordered, replace(never, allowed_lateness_ms=0))
    _, sorted_pruned = feed(ordered, replace(always, allowed_lateness_ms=0), _prune_always)
    assert stripped(sorted_pruned) == stripped(sorted_unpruned)


# --- accounting, late and future ----------------------------------------------------------


@PROPS
@given(arrivals(), st.data())
def test_every_record_is_applied_duplicate_or_dead_lettered(
    case: tuple[list[Event], list[Event]], data: st.DataObject
) -> None:
    _, arrived = case
    stream: list[Event] = list(arrived)
    # re-sends anywhere (possibly beyond the lateness), far-late and future events
    for pick in data.draw(st.lists(st.integers(0, len(arrived) - 1), max_size=5), label="re"):
        after = stream.index(arrived[pick]) + 1
        stream.insert(data.draw(st.integers(after, len(stream)), label="pos"), arrived[pick])
    extra = data.draw(st.lists(st.sampled_from(["late", "future"]), max_size=5), label="extra")
    for n, kind in enumerate(extra):
        base = data.draw(st.sampled_from(arrived), label="base")
        delta = -(LATENESS_MS + 3 * 24 * MS_PER_HOUR) if kind == "late" else 6 * MS_PER_MINUTE
        at = (NOW_MS + delta) if kind == "future" else T0 + delta
        obj = {
            "type": "incident", "event_id": f"x{n}", "occurred_at": format_rfc3339_ms(at),
            "source": "gen", "service": base.service, "environment": "prod",
            "incident_id": "I9", "status": "opened", "severity": "sev2", "title": "x",
        }
        stream.append(parse_event(obj))
    _, outcomes = feed(stream, EngineConfig(allowed_lateness_ms=LATENESS_MS))
    counts = {d: 0 for d in Disposition}
    for o in outcomes:
        counts[o.disposition] += 1
    assert sum(counts.values()) == len(stream)
    assert counts[Disposition.APPLIED] == len(arrived)
    assert counts[Disposition.FUTURE] == extra.count("future")
    assert counts[Disposition.LATE] + counts[Disposition.DUPLICATE] == len(stream) - len(
        arrived) - extra.count("future")
    assert counts[Disposition.LATE] >= extra.count("late")
    for o in outcomes:
        if o.disposition.dead_letter:
            assert o.alerts == ()
            assert o.detail


def test_late_is_judged_per_service_and_the_edge_is_inclusive() -> None:
    config = EngineConfig(allowed_lateness_ms=LATENESS_MS)
    engine = Engine(config)

    def inc(eid: str, service: str, at: int) -> Event:
        return parse_event({
            "type": "incident", "event_id": eid, "occurred_at": format_rfc3339_ms(at),
            "source": "t", "service": service, "environment": "prod", "incident_id": eid,
            "status": "opened", "severity": "sev2", "title": "x",
        })

    t = T0 + 2 * LATENESS_MS
    assert engine.process(inc("a", "s1", t), NOW_MS).disposition == Disposition.APPLIED
    edge = engine.process(inc("b", "s1", t - LATENESS_MS), NOW_MS)
    assert edge.disposition == Disposition.APPLIED
    late = engine.process(inc("c", "s1", t - LATENESS_MS - 1), NOW_MS)
    assert late.disposition == Disposition.LATE
    assert late.disposition.value == "late"
    assert late.disposition.dead_letter
    # another service has its own newest event
    other = engine.process(inc("d", "s2", t - LATENESS_MS - 1), NOW_MS)
    assert other.disposition == Disposition.APPLIED
    # a late record is not remembered: it is not a duplicate next time either
    assert engine.process(inc("c", "s1", t - LATENESS_MS - 1), NOW_MS).disposition == (
        Disposition.LATE
    )


def test_future_is_judged_against_the_injected_clock() -> None:
    engine = Engine(EngineConfig())
    now = T0 + 100 * MS_PER_HOUR

    def dep(eid: str, at: int) -> Event:
        return parse_event({
            "type": "deploy", "event_id": eid, "occurred_at": format_rfc3339_ms(at),
            "source": "t", "service": "s", "environment": "prod", "release": "r1",
            "action": "deploy",
        })

    assert engine.process(dep("ok", now + 5 * MS_PER_MINUTE), now).disposition == (
        Disposition.APPLIED
    )
    ahead = engine.process(dep("ahead", now + 5 * MS_PER_MINUTE + 1), now)
    assert ahead.disposition == Disposition.FUTURE
    assert ahead.disposition.value == "future"
    assert ahead.disposition.dead_letter
    # the same event is accepted once the clock has caught up
    assert engine.process(dep("ahead", now + 5 * MS_PER_MINUTE + 1), now + 1).disposition == (
        Disposition.APPLIED
    )


def test_generated_sets_reach_every_rule() -> None:
    """The generator is able to make each of the eight rules fire (a guard on the strategy)."""
    from agents.engine.rules import ALL_RULES

    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(event_sets())
    def collect(events: list[Event]) -> None:
        seen.update(a.rule for a in sorted_run(events).values())

    collect()
    assert seen == {r.rule_id for r in ALL_RULES}


# --- the engine against a brute-force reading of the SPEC -------------------------------


@PROPS
@given(event_sets())
def test_engine_agrees_with_a_brute_force_reading_of_the_spec(events: list[Event]) -> None:
    got = sorted_run(events)
    want = {x.alert_id: x for x in expected_alerts(events)}
    got_rows = {
        k: (a.rule, a.service, a.environment, a.release, a.trigger, a.severity,
            a.occurred_at_ms, tuple(sorted(a.notify)),
            a.recommendation.release if a.recommendation else None, a.release_aliases)
        for k, a in got.items()
    }
    want_rows = {
        k: (x.rule, x.service, x.environment, x.release, x.trigger, x.severity,
            x.occurred_at_ms, x.notify, x.recommendation_release, x.release_aliases)
        for k, x in want.items()
    }
    assert got_rows == want_rows
