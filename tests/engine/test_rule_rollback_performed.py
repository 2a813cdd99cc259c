"""SPEC §3 ``rollback-performed``: a succeeded rollback to a release with no active flag."""

from __future__ import annotations

import pytest

from .factory import ENV, deploy, fired, flag, ms, of_rule, rollback, run

RULE = "rollback-performed"


def test_fires_info_to_security_without_recommendation() -> None:
    rb = rollback("1.0", ms(hours=2), previous="2.0", reason="restore checkout")
    [alert] = fired([deploy("1.0", ms()), deploy("2.0", ms(hours=1)), rb], RULE)
    assert (alert.environment, alert.release, alert.trigger) == (ENV, "1.0", rb.event_id)
    assert alert.severity == "info"
    assert list(alert.notify) == ["security"]
    assert alert.recommendation is None
    assert [e.event_id for e in alert.evidence] == [rb.event_id]


def test_action_deploy_does_not_fire() -> None:
    assert fired([deploy("1.0", ms()), deploy("2.0", ms(hours=1)), deploy("1.0", ms(hours=2))],
                 RULE) == []


def test_failed_rollback_does_not_fire() -> None:
    assert fired([deploy("2.0", ms()), rollback("1.0", ms(hours=1), status="failed")], RULE) == []


def test_rollback_with_no_history_still_fires() -> None:
    assert len(fired([rollback("1.0", ms(hours=1))], RULE)) == 1


def test_active_flag_means_the_other_rule_fires_instead() -> None:
    alerts = run([flag("CVE-1", "1.0", ms()), rollback("1.0", ms(hours=1))])
    assert of_rule(alerts, RULE) == []
    assert len(of_rule(alerts, "rollback-to-flagged-release")) == 1


@pytest.mark.parametrize("ending", ["cleared", "risk_accepted"])
def test_ended_flag_means_it_fires(ending: str) -> None:
    events = [flag("CVE-1", "1.0", ms()), flag("CVE-1", "1.0", ms(minutes=1), ending),
              rollback("1.0", ms(hours=1))]
    assert len(fired(events, RULE)) == 1


def test_flag_on_another_release_does_not_matter() -> None:
    events = [flag("CVE-1", "2.0", ms()), rollback("1.0", ms(hours=1))]
    assert len(fired(events, RULE)) == 1


def test_same_instant_ties() -> None:
    t = ms(hours=1)
    raised = [flag("CVE-1", "1.0", t), rollback("1.0", t)]
    assert fired(raised, RULE) == []
    cleared = [flag("CVE-1", "1.0", ms()), flag("CVE-1", "1.0", t, "cleared"), rollback("1.0", t)]
    assert len(fired(cleared, RULE)) == 1


def test_each_rollback_is_its_own_alert() -> None:
    events = [rollback("1.0", ms(hours=1), env="production"),
              rollback("1.0", ms(hours=1), env="staging"),
              rollback("1.0", ms(hours=2), env="production")]
    assert len({a.alert_id for a in fired(events, RULE)}) == 3


def test_time_zone_offset() -> None:
    [alert] = fired([rollback("1.0", "2026-03-02T01:00:00-03:00")], RULE)
    assert alert.occurred_at_ms == ms(hours=4)
