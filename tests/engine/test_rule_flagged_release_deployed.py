"""SPEC §3 ``flagged-release-deployed``: a succeeded deploy (action deploy) of a flagged release."""

from __future__ import annotations

import pytest

from .factory import ENV, deploy, fired, flag, ms, of_rule, rec_release, rollback, run

RULE = "flagged-release-deployed"


def test_fires_on_deploy_of_flagged_release() -> None:
    d = deploy("2.0.0", ms(hours=2), previous="1.0.0")
    events = [deploy("1.0.0", ms()), flag("GHSA-1", "2.0.0", ms(hours=1), severity="medium"), d]
    [alert] = fired(events, RULE)
    assert (alert.environment, alert.release, alert.trigger) == (ENV, "2.0.0", d.event_id)
    assert alert.severity == "high"
    assert sorted(alert.notify) == ["security", "sre"]
    assert alert.occurred_at_ms == ms(hours=2)
    assert rec_release(alert) == "1.0.0"


def test_critical_flag_gives_critical() -> None:
    events = [flag("CVE-1", "2.0.0", ms(), severity="critical"), deploy("2.0.0", ms(hours=1))]
    assert [a.severity for a in fired(events, RULE)] == ["critical"]


def test_rollback_does_not_fire_this_rule() -> None:
    events = [deploy("2.0.0", ms()), deploy("3.0.0", ms(hours=1)),
              flag("CVE-1", "2.0.0", ms(hours=2)), rollback("2.0.0", ms(hours=3))]
    alerts = run(events)
    assert of_rule(alerts, RULE) == []
    assert len(of_rule(alerts, "rollback-to-flagged-release")) == 1


def test_failed_deploy_fires_nothing_and_changes_nothing() -> None:
    events = [flag("CVE-1", "2.0.0", ms()), deploy("2.0.0", ms(hours=1), status="failed")]
    assert run(events) == []


@pytest.mark.parametrize("ending", ["cleared", "risk_accepted"])
def test_ended_flag_does_not_fire(ending: str) -> None:
    events = [flag("CVE-1", "2.0.0", ms()), flag("CVE-1", "2.0.0", ms(hours=1), ending),
              deploy("2.0.0", ms(hours=2))]
    assert fired(events, RULE) == []


def test_one_flag_ended_another_still_active() -> None:
    events = [flag("CVE-1", "2.0.0", ms(), severity="critical"), flag("CVE-2", "2.0.0", ms()),
              flag("CVE-1", "2.0.0", ms(hours=1), "cleared"), deploy("2.0.0", ms(hours=2))]
    assert [a.severity for a in fired(events, RULE)] == ["high"]


def test_flag_applies_to_every_environment_one_alert_per_deploy() -> None:
    events = [flag("CVE-1", "2.0.0", ms()), deploy("2.0.0", ms(hours=1), env="staging"),
              deploy("2.0.0", ms(hours=2), env="production")]
    alerts = fired(events, RULE)
    assert sorted(a.environment for a in alerts) == ["production", "staging"]
    assert len({a.alert_id for a in alerts}) == 2


def test_tie_flag_at_same_instant_counts_flag_after_does_not() -> None:
    t = ms(hours=1)
    assert len(fired([flag("CVE-1", "2.0.0", t), deploy("2.0.0", t)], RULE)) == 1
    assert fired([deploy("2.0.0", t), flag("CVE-1", "2.0.0", t + 1)], RULE) == []


def test_time_zone_offset() -> None:
    events = [flag("CVE-1", "2.0.0", "2026-03-02T12:00:00+05:30"),
              deploy("2.0.0", "2026-03-02T06:30:00Z")]
    [alert] = fired(events, RULE)
    assert alert.occurred_at_ms == ms(hours=6, minutes=30)


def test_recommendation_most_recently_deployed_any_environment() -> None:
    events = [
        deploy("1.0.0", ms(hours=0), env="production"),
        deploy("1.1.0", ms(hours=1), env="production"),
        deploy("1.2.0", ms(hours=2), env="staging"),
        deploy("1.0.0", ms(hours=3), env="dev"),  # 1.0.0 deployed most recently now
        flag("CVE-1", "9.9.9", ms(hours=4)),
        deploy("9.9.9", ms(hours=5)),
    ]
    [alert] = fired(events, RULE)
    assert rec_release(alert) == "1.0.0"
    events.append(flag("CVE-2", "1.0.0", ms(hours=4)))
    [alert] = fired(events, RULE)
    assert rec_release(alert) == "1.2.0"


def test_recommendation_ignores_failed_deploys() -> None:
    events = [deploy("1.0.0", ms()), deploy("1.5.0", ms(hours=1), status="failed"),
              flag("CVE-1", "9.9.9", ms(hours=4)), deploy("9.9.9", ms(hours=5))]
    [alert] = fired(events, RULE)
    assert rec_release(alert) == "1.0.0"


def test_recommendation_none_when_only_own_release_known() -> None:
    events = [flag("CVE-1", "2.0.0", ms()), deploy("2.0.0", ms(hours=1))]
    [alert] = fired(events, RULE)
    assert rec_release(alert) is None
