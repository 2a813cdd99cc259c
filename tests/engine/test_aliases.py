"""SPEC §8 release aliases in the engine: names of one release linked by chains of events.

"Two release names of one service are the same release at an event when a chain of
events links them: the events before it and the event itself." Mutable names never
link; an alert keeps its trigger's release name in its identity and shows the name the
newest deploy of that release used.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agents.engine import Disposition, Engine, EngineConfig, ServiceEngine
from agents.model.alerts import FIRING, RETRACTED, alert_id_for
from agents.model.events import Event, order_key, parse_event
from agents.model.timefmt import format_rfc3339_ms

from .factory import ENV, SERVICE, clock_for, deploy, fired, flag, incident, ms, rollback, run
from .test_properties import LATENESS_MS, NOW_MS, PROPS, active, event_sets, feed, sorted_run

IMAGE = "ghcr.io/acme/checkout"
TAG = f"{IMAGE}:2.7.0"
DIGEST = "sha256:" + "ab" * 32


def test_a_flag_on_the_image_is_a_flag_on_the_release_the_deploy_named() -> None:
    events = [
        deploy("2.7.0", ms(), aliases=[TAG]),
        flag("CVE-1", TAG, ms(hours=1), event_id="scan-1"),
    ]
    (alert,) = fired(events, "flag-raised-on-running-release")
    # identity keeps the trigger's name; the alert shows the deploy's name
    assert alert.alert_id == alert_id_for(
        "flag-raised-on-running-release", SERVICE, ENV, TAG, "CVE-1"
    )
    assert alert.release == "2.7.0"
    assert alert.release_aliases == (TAG,)
    assert alert.to_dict()["release_aliases"] == [TAG]


def test_without_a_link_the_names_are_different_releases() -> None:
    events = [deploy("2.7.0", ms()), flag("CVE-1", TAG, ms(hours=1))]
    assert fired(events, "flag-raised-on-running-release") == []


def test_the_events_own_aliases_count_at_the_event() -> None:
    events = [
        deploy("2.7.0", ms()),
        flag("CVE-1", TAG, ms(hours=1), aliases=["2.7.0", DIGEST]),
    ]
    (alert,) = fired(events, "flag-raised-on-running-release")
    assert alert.release == "2.7.0"
    assert alert.release_aliases == tuple(sorted((TAG, DIGEST)))


def test_a_chain_of_events_links_names_that_never_met() -> None:
    events = [
        incident("INC-0", ms(), "resolved", suspected="2.7.0", aliases=[TAG]),
        flag("CVE-9", DIGEST, ms(hours=1), "cleared", aliases=[TAG]),
        flag("CVE-1", DIGEST, ms(hours=2)),
        deploy("2.7.0", ms(hours=3), event_id="d"),
    ]
    (alert,) = fired(events, "flagged-release-deployed")
    assert alert.trigger == "d"
    assert alert.release == "2.7.0"
    assert alert.evidence_count == 2


def test_a_link_after_the_trigger_changes_nothing_before_it() -> None:
    events = [
        deploy("2.7.0", ms()),
        flag("CVE-1", TAG, ms(hours=1)),  # not linked yet: nothing fires
        flag("CVE-2", TAG, ms(hours=2), aliases=["2.7.0"]),  # linked from here on
    ]
    alerts = fired(events, "flag-raised-on-running-release")
    assert [a.trigger for a in alerts] == ["CVE-2"]


def test_mutable_names_never_link() -> None:
    events = [
        deploy("1.0.0", ms(), aliases=["latest", f"{IMAGE}:latest", f"{IMAGE}:1", "main"]),
        deploy("2.0.0", ms(hours=1), aliases=["latest", f"{IMAGE}:latest", f"{IMAGE}:1"]),
        flag("CVE-1", "latest", ms(hours=2)),
        flag("CVE-2", f"{IMAGE}:1", ms(hours=2)),
        flag("CVE-3", "main", ms(hours=2)),
        deploy("1.0.0", ms(hours=3)),
    ]
    alerts = run(events)
    assert [a for a in alerts if "CVE" in a.summary] == []


def test_a_mutable_release_still_links_its_immutable_aliases() -> None:
    events = [
        deploy("latest", ms(), aliases=[DIGEST, "2.7.0"]),
        flag("CVE-1", "2.7.0", ms(hours=1)),
        deploy(DIGEST, ms(hours=2), env="staging", event_id="d"),
        flag("CVE-2", "latest", ms(hours=3)),
    ]
    alerts = run(events)
    assert [(a.rule, a.environment, a.trigger) for a in alerts] == [
        ("flagged-release-deployed", "staging", "d"),
        # "latest" is a class of its own: equal only to itself, so a flag on it is on
        # what production calls "latest", and on nothing else
        ("flag-raised-on-running-release", ENV, "CVE-2"),
    ]
    assert "CVE-2" not in alerts[0].summary


def test_mutable_patterns_are_configurable() -> None:
    events = [deploy("rc-5", ms(), aliases=["2.7.0"]), flag("CVE-1", "2.7.0", ms(hours=1))]
    assert len(fired(events, "flag-raised-on-running-release")) == 1
    strict = EngineConfig(allowed_lateness_ms=0, mutable_release_patterns=(r"rc-\d+",))
    assert fired(events, "flag-raised-on-running-release", config=strict) == []


def test_digests_are_never_mutable_and_floating_tags_are() -> None:
    policy = EngineConfig().name_policy
    assert policy.is_mutable("latest")
    assert policy.is_mutable(f"{IMAGE}:latest")
    assert policy.is_mutable(f"{IMAGE}:1.25")
    assert policy.is_mutable("registry:5000/app:v2")
    assert not policy.is_mutable(f"{IMAGE}:1.25.3")
    assert not policy.is_mutable(f"{IMAGE}@{DIGEST}")
    assert not policy.is_mutable(DIGEST)
    assert not policy.is_mutable("1.2")  # a bare version is a person's release name
    assert not policy.is_mutable("registry:5000/app")


def test_ended_flag_on_another_name_wins_when_it_is_later() -> None:
    """A flag is identified by (service, release, flag_id): once two names are linked,
    the flag's last event over both names decides whether it is active."""
    raised_then_cleared = [
        flag("CVE-1", "2.7.0", ms(hours=1)),
        flag("CVE-1", TAG, ms(hours=2), "risk_accepted"),
        incident("INC-1", ms(hours=3), "resolved", suspected="2.7.0", aliases=[TAG]),
        deploy(TAG, ms(hours=4)),
    ]
    cleared_then_raised = [
        flag("CVE-1", TAG, ms(hours=1), "cleared"),
        flag("CVE-1", "2.7.0", ms(hours=2)),
        incident("INC-1", ms(hours=3), "resolved", suspected="2.7.0", aliases=[TAG]),
        deploy(TAG, ms(hours=4)),
    ]
    for pruned in (None, 1):
        config = EngineConfig(allowed_lateness_ms=0, prune_every_events=pruned)
        assert fired(raised_then_cleared, "flagged-release-deployed", config=config) == []
        assert len(fired(cleared_then_raised, "flagged-release-deployed", config=config)) == 1


def test_recommendation_compares_classes_and_names_the_deployed_release() -> None:
    events = [
        deploy("2.6.0", ms(), aliases=[f"{IMAGE}:2.6.0"]),
        deploy("2.7.0", ms(hours=1)),
        incident("INC-1", ms(hours=2)),
        rollback(f"{IMAGE}:2.6.0", ms(hours=3), previous="2.7.0"),
        deploy("2.5.0", ms(hours=4), env="staging"),
        flag("CVE-1", "2.7.0", ms(hours=5), fixed_in=f"{IMAGE}:2.6.0"),
        deploy("2.7.0", ms(hours=6), event_id="d"),
    ]
    (alert,) = fired(events, "flagged-release-deployed")
    # 2.7.0 was rolled back from, 2.6.0 is its own fixed_in but deployed as a rollback
    # (its image tag is the same release as 2.6.0): the candidate is shown by the name
    # of its newest deploy
    assert alert.recommendation is not None
    assert alert.recommendation.release == f"{IMAGE}:2.6.0"
    redeploy = fired(events, "redeploy-of-rolled-back-release")
    assert [a.trigger for a in redeploy] == ["d"]


def test_a_release_with_more_names_than_the_cap_stops_linking() -> None:
    events = [deploy("2.7.0", ms(), aliases=["a", "b", "c", "d", "e"]),
              flag("CVE-1", "c", ms(hours=1)), flag("CVE-2", "d", ms(hours=1))]
    alerts = fired(
        events, "flag-raised-on-running-release", config=EngineConfig(max_names_per_release=4)
    )
    assert [a.trigger for a in alerts] == ["CVE-1"]
    assert alerts[0].release_aliases == ("a", "b", "c")


# --- through the lateness log ----------------------------------------------------------


def test_a_late_event_that_links_two_names_retracts_and_fires() -> None:
    """As-arrived: the link arrives last but belongs before the rollback and the flag."""
    early = [
        deploy("2.7.0", ms(), event_id="d1"),
        flag("CVE-1", TAG, ms(hours=1), event_id="f1"),
        deploy("2.8.0", ms(hours=2), event_id="d2"),
        rollback("2.7.0", ms(hours=3), previous="2.8.0", event_id="rb"),
    ]
    link = incident("INC-1", ms(minutes=30), "resolved", suspected="2.7.0", aliases=[TAG])
    engine = Engine(EngineConfig(allowed_lateness_ms=LATENESS_MS))
    now = clock_for([*early, link])
    outcomes = [engine.process(e, now) for e in early]
    before = [a for o in outcomes for a in o.alerts]
    assert [(a.rule, a.status) for a in before] == [("rollback-performed", FIRING)]
    outcome = engine.process(link, now)
    outcomes.append(outcome)
    assert outcome.disposition == Disposition.APPLIED
    assert sorted((a.rule, a.status) for a in outcome.alerts) == [
        ("flag-raised-on-running-release", FIRING),
        ("rollback-performed", RETRACTED),
        ("rollback-to-flagged-release", FIRING),
    ]
    retracted = next(a for a in outcome.alerts if a.status == RETRACTED)
    assert retracted.alert_id == before[0].alert_id
    assert set(active(outcomes)) == {a.alert_id for a in run([*early, link])}


@st.composite
def _late_links(draw: st.DrawFn) -> tuple[list[Event], Event]:
    """An event set and an event linking two release names of one service, at a time
    inside the set's span (it arrives last, within the lateness of the newest event)."""
    events = draw(event_sets())
    service = draw(st.sampled_from(sorted({e.service for e in events})))
    mine = [e for e in events if e.service == service]
    newest = max(e.occurred_at_ms for e in mine)
    at = draw(st.integers(max(newest - LATENESS_MS, min(e.occurred_at_ms for e in mine)), newest))
    pool = sorted({n for e in mine for n in (getattr(e, "release", None),) if n}) or ["r1"]
    a = draw(st.sampled_from(pool))
    b = draw(st.sampled_from(["r1", "r2", "r3", "r4", *pool]))
    link = parse_event({
        "type": "incident", "event_id": "link", "occurred_at": format_rfc3339_ms(at),
        "source": "gen", "service": service, "environment": "prod", "incident_id": "IL",
        "status": "resolved", "severity": "sev3", "title": "t", "suspected_release": a,
        "release_aliases": [b],
    })
    return events, link


@PROPS
@given(_late_links())
def test_any_late_link_ends_with_the_sorted_result(case: tuple[list[Event], Event]) -> None:
    events, link = case
    arrived = [*sorted(events, key=order_key), link]
    _, outcomes = feed(arrived, EngineConfig(allowed_lateness_ms=LATENESS_MS))
    assert all(o.disposition == Disposition.APPLIED for o in outcomes)
    assert active(outcomes) == sorted_run([*events, link])


def test_names_and_tombstones_survive_the_state_bytes() -> None:
    config = EngineConfig(allowed_lateness_ms=LATENESS_MS)
    events = [
        deploy("2.7.0", ms(), aliases=[TAG]),
        flag("CVE-1", "2.6.0", ms(hours=1)),
        flag("CVE-1", "2.6.1", ms(hours=2)),
        flag("CVE-1", "2.6.1", ms(hours=3), "cleared"),  # tombstone: CVE-1 active on 2.6.0
        flag("CVE-2", DIGEST, ms(hours=30), aliases=[TAG]),
    ]
    svc = ServiceEngine(SERVICE, config)
    for e in events:
        svc.process(e, NOW_MS)
    data = svc.to_bytes()
    copy = ServiceEngine.from_bytes(data, config, NOW_MS)
    assert copy.to_bytes() == data
    tail = [incident("INC-1", ms(hours=31), "resolved", suspected="2.6.0", aliases=["2.6.1"]),
            deploy("2.6.1", ms(hours=32), env="staging"), deploy(TAG, ms(hours=33), env="qa")]
    a = [[x.rule for x in svc.process(e, NOW_MS).alerts] for e in tail]
    b = [[x.rule for x in copy.process(e, NOW_MS).alerts] for e in tail]
    assert a == b
    # 2.6.0 and 2.6.1 linked: CVE-1's last event is the clear, so 2.6.1 deploys clean;
    # the digest is the tag's release: its CVE-2 flags the qa deploy
    assert a == [[], [], ["flagged-release-deployed"]]


def test_release_names_are_bounded_per_service() -> None:
    svc = ServiceEngine(SERVICE, EngineConfig(max_linked_names=10))
    for i in range(20):
        svc.process(deploy(f"v{i}", ms(minutes=i), aliases=[f"img:v{i}.0.0"]), NOW_MS)
    assert len(svc.head.names) == 10
    assert svc.head.same_release("v4", "img:v4.0.0")
    assert not svc.head.same_release("v5", "img:v5.0.0")


def test_generated_sets_exercise_the_links() -> None:
    """A guard on the property strategies: links change outcomes in some generated sets,
    alerts show another name than their trigger's and list aliases."""

    from hypothesis import settings

    seen = {"changed": 0, "shown_differs": 0, "aliases": 0}

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(event_sets())
    def collect(events: list[Event]) -> None:
        got = sorted_run(events)
        unlinked = sorted_run([e.replace(release_aliases=()) for e in events])
        seen["changed"] += set(got) != set(unlinked)
        for alert in got.values():
            seen["aliases"] += bool(alert.release_aliases)
            identity = alert_id_for(alert.rule, alert.service, alert.environment,
                                    alert.release, alert.trigger)
            seen["shown_differs"] += identity != alert.alert_id

    collect()
    assert all(count > 0 for count in seen.values()), seen
