"""SPEC §3 ``rollback-to-flagged-release``: a succeeded rollback to a flagged release."""

from __future__ import annotations

import pytest

from agents.model.events import Event
from agents.model.timefmt import format_rfc3339_ms

from .factory import ENV, deploy, fired, flag, incident, ms, of_rule, rec_release, rollback, run

RULE = "rollback-to-flagged-release"


def _story(flag_severity: str = "critical") -> list[Event]:
    return [
        deploy("1.4.0", ms(hours=0)),
        flag("CVE-1", "1.4.0", ms(hours=1), severity=flag_severity),
        deploy("1.5.0", ms(hours=2), previous="1.4.0"),
    ]


def test_fires_with_identity_severity_notify_and_evidence() -> None:
    rb = rollback("1.4.0", ms(hours=3), previous="1.5.0", team="sre")
    alerts = run([*_story(), rb])
    [alert] = of_rule(alerts, RULE)
    assert (alert.service, alert.environment, alert.release) == ("payments-api", ENV, "1.4.0")
    assert alert.trigger == rb.event_id
    assert alert.severity == "critical"
    assert sorted(alert.notify) == ["security", "sre"]
    assert alert.occurred_at_ms == ms(hours=3)
    assert {e.event_id for e in alert.evidence} >= {rb.event_id}
    assert {e.type for e in alert.evidence} == {"deploy", "security_flag"}
    assert "CVE-1" in alert.summary
    # rollback-performed fires *instead*, never alongside.
    assert of_rule(alerts, "rollback-performed") == []


@pytest.mark.parametrize("severity", ["high", "medium", "low"])
def test_non_critical_flags_give_high(severity: str) -> None:
    alerts = fired([*_story(severity), rollback("1.4.0", ms(hours=3))], RULE)
    assert [a.severity for a in alerts] == ["high"]


def test_any_critical_active_flag_gives_critical() -> None:
    events = [
        *_story("low"),
        flag("CVE-2", "1.4.0", ms(hours=1, minutes=30), severity="critical"),
        rollback("1.4.0", ms(hours=3)),
    ]
    assert [a.severity for a in fired(events, RULE)] == ["critical"]


def test_critical_flag_cleared_leaves_high() -> None:
    events = [
        *_story("low"),
        flag("CVE-2", "1.4.0", ms(hours=1, minutes=30), severity="critical"),
        flag("CVE-2", "1.4.0", ms(hours=2, minutes=30), "cleared", severity="critical"),
        rollback("1.4.0", ms(hours=3)),
    ]
    assert [a.severity for a in fired(events, RULE)] == ["high"]


@pytest.mark.parametrize("ending", ["cleared", "risk_accepted"])
def test_ended_flag_does_not_fire_and_rollback_performed_does(ending: str) -> None:
    events = [
        *_story(),
        flag("CVE-1", "1.4.0", ms(hours=2, minutes=30), ending, severity="critical"),
        rollback("1.4.0", ms(hours=3)),
    ]
    alerts = run(events)
    assert of_rule(alerts, RULE) == []
    assert len(of_rule(alerts, "rollback-performed")) == 1


def test_raise_clear_raise_is_active_again() -> None:
    events = [
        *_story(),
        flag("CVE-1", "1.4.0", ms(hours=2, minutes=10), "cleared"),
        flag("CVE-1", "1.4.0", ms(hours=2, minutes=20), "raised", severity="critical"),
        rollback("1.4.0", ms(hours=3)),
    ]
    assert len(fired(events, RULE)) == 1


def test_failed_rollback_fires_nothing() -> None:
    alerts = run([*_story(), rollback("1.4.0", ms(hours=3), status="failed")])
    assert of_rule(alerts, RULE) == []
    assert of_rule(alerts, "rollback-performed") == []


def test_flag_on_other_release_or_service_does_not_count() -> None:
    events = [
        deploy("1.4.0", ms(hours=0)),
        flag("CVE-1", "1.5.0", ms(hours=1)),
        flag("CVE-2", "1.4.0", ms(hours=1), service="other-svc"),
        deploy("1.5.0", ms(hours=2)),
        rollback("1.4.0", ms(hours=3)),
    ]
    assert fired(events, RULE) == []


def test_tie_flag_raised_at_same_instant_counts() -> None:
    """Type rank: the flag is before the rollback at the same occurred_at."""
    t = ms(hours=3)
    events = [deploy("1.4.0", ms()), deploy("1.5.0", ms(hours=1)),
              flag("CVE-1", "1.4.0", t), rollback("1.4.0", t)]
    assert len(fired(events, RULE)) == 1


def test_tie_flag_cleared_at_same_instant_ends_it() -> None:
    t = ms(hours=3)
    events = [*_story(), flag("CVE-1", "1.4.0", t, "cleared"), rollback("1.4.0", t)]
    alerts = run(events)
    assert of_rule(alerts, RULE) == []
    assert len(of_rule(alerts, "rollback-performed")) == 1


def test_flag_one_millisecond_after_the_rollback_does_not_count() -> None:
    events = [deploy("1.4.0", ms()), deploy("1.5.0", ms(hours=1)),
              rollback("1.4.0", ms(hours=3)), flag("CVE-1", "1.4.0", ms(hours=3, millis=1))]
    assert fired(events, RULE) == []


def test_time_zone_offset_is_the_same_instant() -> None:
    """05:00+02:00 is 03:00Z: the flag ties with the rollback and ranks first."""
    t = ms(hours=3)
    assert format_rfc3339_ms(t) == "2026-03-02T03:00:00Z"
    events = [deploy("1.4.0", ms()), deploy("1.5.0", ms(hours=1)),
              flag("CVE-1", "1.4.0", "2026-03-02T05:00:00+02:00"),
              rollback("1.4.0", "2026-03-01T22:00:00-05:00")]
    [alert] = fired(events, RULE)
    assert alert.occurred_at_ms == t
    late_flag = [deploy("1.4.0", ms()), deploy("1.5.0", ms(hours=1)),
                 flag("CVE-1", "1.4.0", "2026-03-02T05:00:00.001+02:00"),
                 rollback("1.4.0", "2026-03-02T03:00:00Z")]
    assert fired(late_flag, RULE) == []


def test_recommendation_prefers_fixed_in_of_newest_flag() -> None:
    events = [
        deploy("1.3.0", ms()),
        deploy("1.4.0", ms(hours=1)),
        flag("CVE-1", "1.4.0", ms(hours=2), fixed_in="1.6.0"),
        flag("CVE-2", "1.4.0", ms(hours=3), fixed_in="1.7.0"),
        deploy("1.5.0", ms(hours=4)),
        rollback("1.4.0", ms(hours=5)),
    ]
    [alert] = fired(events, RULE)
    assert rec_release(alert) == "1.7.0"


def test_recommendation_skips_flagged_fixed_in_then_falls_back_to_recent_deploys() -> None:
    events = [
        deploy("1.3.0", ms()),
        deploy("1.4.0", ms(hours=1)),
        flag("CVE-1", "1.4.0", ms(hours=2), fixed_in="1.6.0"),
        flag("CVE-2", "1.4.0", ms(hours=3), fixed_in="1.7.0"),
        flag("CVE-9", "1.7.0", ms(hours=3)),
        deploy("1.5.0", ms(hours=4)),
        rollback("1.4.0", ms(hours=5)),
    ]
    [alert] = fired(events, RULE)
    assert rec_release(alert) == "1.6.0"
    # fixed_in all flagged: most recently deployed other than the alert's own release.
    events.append(flag("CVE-8", "1.6.0", ms(hours=3)))
    [alert] = fired(events, RULE)
    assert rec_release(alert) == "1.5.0"


def test_recommendation_excludes_release_rolled_back_from_during_an_incident() -> None:
    """The rollback itself is included ("up to and including the trigger")."""
    events = [
        deploy("1.3.0", ms()),
        deploy("1.4.0", ms(hours=1)),
        flag("CVE-1", "1.4.0", ms(hours=2)),
        deploy("1.5.0", ms(hours=4)),
        incident("INC-1", ms(hours=4, minutes=30)),
        rollback("1.4.0", ms(hours=5), previous="1.5.0"),
    ]
    [alert] = fired(events, RULE)
    assert rec_release(alert) == "1.3.0"
    events.append(flag("CVE-2", "1.3.0", ms(hours=2)))
    [alert] = fired(events, RULE)
    assert rec_release(alert) is None
    assert alert.recommendation is not None
    assert "roll-forward" in alert.recommendation.text


def test_summary_names_incident_when_linked() -> None:
    events = [*_story(), rollback("1.4.0", ms(hours=3), incident_id="INC-42")]
    [alert] = fired(events, RULE)
    assert "INC-42" in alert.summary
