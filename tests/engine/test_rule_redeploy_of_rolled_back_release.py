"""SPEC §3 ``redeploy-of-rolled-back-release``: a deploy of a release that an incident-linked
rollback on the same (service, environment) rolled back from within the 7 days before."""

from __future__ import annotations

from agents.model.events import Event
from agents.model.timefmt import MS_PER_DAY

from .factory import ENV, deploy, fired, flag, incident, ms, rec_release, rollback

RULE = "redeploy-of-rolled-back-release"


def _rolled_back(at: int, **kwargs: object) -> list[Event]:
    """1.0 → 2.0, incident opened, rollback 2.0 → 1.0 at ``at``."""
    return [
        deploy("1.0", at - 3_600_000 * 2),
        deploy("2.0", at - 3_600_000, previous="1.0"),
        incident("INC-1", at - 60_000),
        rollback("1.0", at, previous="2.0", **kwargs),
    ]


def test_fires_with_identity_and_recommendation() -> None:
    t = ms(days=1)
    d = deploy("2.0", t + 3_600_000, previous="1.0", team="security")
    [alert] = fired([*_rolled_back(t), d], RULE)
    assert (alert.environment, alert.release, alert.trigger) == (ENV, "2.0", d.event_id)
    assert alert.severity == "high"
    assert sorted(alert.notify) == ["security", "sre"]
    assert rec_release(alert) == "1.0"
    assert "INC-1" in alert.summary


def test_seven_days_exactly_counts_one_millisecond_more_does_not() -> None:
    t = ms(days=1)
    edge = deploy("2.0", t + 7 * MS_PER_DAY)
    assert len(fired([*_rolled_back(t), edge], RULE)) == 1
    past = deploy("2.0", t + 7 * MS_PER_DAY + 1)
    assert fired([*_rolled_back(t), past], RULE) == []


def test_rollback_not_linked_to_an_incident_does_not_count() -> None:
    t = ms(days=1)
    events = [deploy("1.0", ms()), deploy("2.0", ms(hours=1)),
              rollback("1.0", t, previous="2.0"), deploy("2.0", t + 1000)]
    assert fired(events, RULE) == []


def test_incident_id_on_the_rollback_links_it() -> None:
    t = ms(days=1)
    events = [deploy("1.0", ms()), deploy("2.0", ms(hours=1)),
              rollback("1.0", t, previous="2.0", incident_id="INC-7"), deploy("2.0", t + 1000)]
    [alert] = fired(events, RULE)
    assert "INC-7" in alert.summary


def test_acknowledged_incident_links_resolved_does_not() -> None:
    t = ms(days=1)
    base = [deploy("1.0", ms()), deploy("2.0", ms(hours=1)), incident("INC-1", ms(hours=2))]
    ack = [*base, incident("INC-1", ms(hours=3), "acknowledged"),
           rollback("1.0", t, previous="2.0"), deploy("2.0", t + 1000)]
    assert len(fired(ack, RULE)) == 1
    resolved = [*base, incident("INC-1", ms(hours=3), "resolved"),
                rollback("1.0", t, previous="2.0"), deploy("2.0", t + 1000)]
    assert fired(resolved, RULE) == []


def test_incident_opened_at_the_same_instant_ranks_before_the_rollback() -> None:
    t = ms(days=1)
    events = [deploy("1.0", ms()), deploy("2.0", ms(hours=1)), incident("INC-1", t),
              rollback("1.0", t, previous="2.0"), deploy("2.0", t + 1000)]
    assert len(fired(events, RULE)) == 1
    resolved_same_instant = [deploy("1.0", ms()), deploy("2.0", ms(hours=1)),
                             incident("INC-1", ms(hours=2)), incident("INC-1", t, "resolved"),
                             rollback("1.0", t, previous="2.0"), deploy("2.0", t + 1000)]
    assert fired(resolved_same_instant, RULE) == []


def test_missing_previous_release_uses_the_running_release() -> None:
    t = ms(days=1)
    events = [deploy("1.0", ms()), deploy("2.0", ms(hours=1)),
              rollback("1.0", t, previous=None, incident_id="INC-1"),
              deploy("2.0", t + 1000)]
    assert len(fired(events, RULE)) == 1


def test_given_previous_release_wins_over_running_release() -> None:
    t = ms(days=1)
    base = [deploy("1.0", ms()), deploy("2.0", ms(hours=1)),
            rollback("1.0", t, previous="2.5", incident_id="INC-1")]
    assert fired([*base, deploy("2.0", t + 1000)], RULE) == []
    assert len(fired([*base, deploy("2.5", t + 1000)], RULE)) == 1


def test_running_release_after_a_failed_deploy_is_the_last_succeeded_one() -> None:
    t = ms(days=1)
    events = [deploy("1.0", ms()), deploy("2.0", ms(hours=1)),
              deploy("3.0", ms(hours=2), status="failed"),
              rollback("1.0", t, incident_id="INC-1"), deploy("2.0", t + 1000)]
    assert len(fired(events, RULE)) == 1


def test_other_environment_does_not_count() -> None:
    t = ms(days=1)
    events = [*_rolled_back(t), deploy("2.0", t + 1000, env="staging")]
    assert fired(events, RULE) == []


def test_failed_rollback_or_failed_redeploy_fire_nothing() -> None:
    t = ms(days=1)
    failed_rb = [*_rolled_back(t, status="failed"), deploy("2.0", t + 1000)]
    assert fired(failed_rb, RULE) == []
    failed_redeploy = [*_rolled_back(t), deploy("2.0", t + 1000, status="failed")]
    assert fired(failed_redeploy, RULE) == []


def test_rollback_to_the_rolled_back_release_is_not_a_redeploy() -> None:
    t = ms(days=1)
    events = [*_rolled_back(t), rollback("2.0", t + 1000)]
    assert fired(events, RULE) == []


def test_redeploy_at_the_same_instant_ranks_by_event_id() -> None:
    t = ms(days=1)
    base = [deploy("1.0", ms()), deploy("2.0", ms(hours=1)), incident("INC-1", ms(hours=2))]
    after = [*base, rollback("1.0", t, previous="2.0", event_id="a"),
             deploy("2.0", t, event_id="b")]
    assert len(fired(after, RULE)) == 1
    before = [*base, rollback("1.0", t, previous="2.0", event_id="b"),
              deploy("2.0", t, event_id="a")]
    assert fired(before, RULE) == []


def test_recommendation_excludes_rolled_back_and_flagged_releases() -> None:
    t = ms(days=1)
    events = [deploy("0.9", ms(hours=-5)), *_rolled_back(t), flag("CVE-1", "1.0", t + 10),
              deploy("2.0", t + 1000)]
    [alert] = fired(events, RULE)
    assert rec_release(alert) == "0.9"
