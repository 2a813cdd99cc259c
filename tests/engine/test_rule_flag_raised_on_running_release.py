"""SPEC §3 ``flag-raised-on-running-release``: a raised flag on the release running in an
environment; one alert per such environment, triggered by the ``flag_id``."""

from __future__ import annotations

import pytest

from agents.model.alerts import alert_id_for
from agents.model.events import Event

from .factory import SERVICE, deploy, fired, flag, incident, ms, rec_release, rollback

RULE = "flag-raised-on-running-release"


def _three_envs() -> list[Event]:
    return [
        deploy("1.0", ms(), env="production"),
        deploy("1.0", ms(minutes=1), env="staging"),
        deploy("2.0", ms(minutes=2), env="dev"),
    ]


def test_one_alert_per_environment_running_the_release() -> None:
    f = flag("CVE-1", "1.0", ms(hours=1), fixed_in="1.1")
    alerts = fired([*_three_envs(), f], RULE)
    assert sorted(a.environment for a in alerts) == ["production", "staging"]
    for a in alerts:
        assert a.trigger == "CVE-1"
        assert a.alert_id == alert_id_for(RULE, SERVICE, a.environment, "1.0", "CVE-1")
        assert a.severity == "high"
        assert sorted(a.notify) == ["security", "sre"]
        assert a.occurred_at_ms == f.occurred_at_ms
        assert rec_release(a) == "1.1"


def test_raise_of_already_active_flag_fires_nothing_new() -> None:
    first = flag("CVE-1", "1.0", ms(hours=1))
    again = flag("CVE-1", "1.0", ms(hours=2), severity="critical")
    alerts = fired([*_three_envs(), first, again], RULE)
    assert len(alerts) == 2
    assert {a.occurred_at_ms for a in alerts} == {first.occurred_at_ms}
    assert {a.severity for a in alerts} == {"high"}


@pytest.mark.parametrize("ending", ["cleared", "risk_accepted"])
def test_raise_end_raise_keeps_the_first_alert_only(ending: str) -> None:
    """The earliest producer owns the identity; a later raise emits nothing new."""
    events = [*_three_envs(), flag("CVE-1", "1.0", ms(hours=1)),
              flag("CVE-1", "1.0", ms(hours=2), ending),
              flag("CVE-1", "1.0", ms(hours=3))]
    alerts = fired(events, RULE)
    assert len(alerts) == 2
    assert {a.occurred_at_ms for a in alerts} == {ms(hours=1)}


def test_re_raise_reaches_an_environment_that_started_running_it_later() -> None:
    events = [deploy("1.0", ms(), env="production"), flag("CVE-1", "1.0", ms(hours=1)),
              flag("CVE-1", "1.0", ms(hours=2), "cleared"),
              deploy("1.0", ms(hours=3), env="staging"),
              flag("CVE-1", "1.0", ms(hours=4))]
    alerts = {a.environment: a for a in fired(events, RULE)}
    assert alerts["production"].occurred_at_ms == ms(hours=1)
    assert alerts["staging"].occurred_at_ms == ms(hours=4)


@pytest.mark.parametrize("ending", ["cleared", "risk_accepted"])
def test_ending_events_fire_nothing(ending: str) -> None:
    assert fired([*_three_envs(), flag("CVE-1", "1.0", ms(hours=1), ending)], RULE) == []


@pytest.mark.parametrize(
    ("flag_sev", "expected"),
    [("low", "medium"), ("medium", "high"), ("high", "critical"), ("critical", "critical")],
)
def test_open_incident_bumps_severity_one_step(flag_sev: str, expected: str) -> None:
    events = [*_three_envs(), incident("INC-1", ms(minutes=30), env="production"),
              flag("CVE-1", "1.0", ms(hours=1), severity=flag_sev)]
    by_env = {a.environment: a.severity for a in fired(events, RULE)}
    assert by_env == {"production": expected, "staging": flag_sev}


def test_acknowledged_incident_bumps_resolved_does_not() -> None:
    ack = [*_three_envs(), incident("INC-1", ms(minutes=30)),
           incident("INC-1", ms(minutes=40), "acknowledged"), flag("CVE-1", "1.0", ms(hours=1))]
    assert {a.environment: a.severity for a in fired(ack, RULE)}["production"] == "critical"
    res = [*_three_envs(), incident("INC-1", ms(minutes=30)),
           incident("INC-1", ms(minutes=40), "resolved"), flag("CVE-1", "1.0", ms(hours=1))]
    assert {a.environment: a.severity for a in fired(res, RULE)}["production"] == "high"


def test_incident_resolved_at_the_same_instant_does_not_bump() -> None:
    t = ms(hours=1)
    events = [*_three_envs(), incident("INC-1", ms(minutes=30)),
              incident("INC-1", t, "resolved"), flag("CVE-1", "1.0", t)]
    # the flag ranks before the incident event at the same instant: still open
    assert {a.environment: a.severity for a in fired(events, RULE)}["production"] == "critical"


def test_deploy_at_the_same_instant_ranks_after_the_flag() -> None:
    t = ms(hours=1)
    events = [deploy("0.9", ms()), deploy("1.0", t), flag("CVE-1", "1.0", t)]
    assert fired(events, RULE) == []


def test_deploys_at_the_same_instant_rank_by_event_id() -> None:
    t = ms(hours=1)
    a_then_b = [deploy("1.0", t, event_id="a"), deploy("2.0", t, event_id="b"),
                flag("CVE-1", "2.0", ms(hours=2))]
    assert len(fired(a_then_b, RULE)) == 1
    b_last_is_1 = [deploy("1.0", t, event_id="b"), deploy("2.0", t, event_id="a"),
                   flag("CVE-1", "2.0", ms(hours=2))]
    assert fired(b_last_is_1, RULE) == []


def test_failed_deploy_does_not_change_the_running_release() -> None:
    events = [deploy("1.0", ms()), deploy("2.0", ms(minutes=5), status="failed"),
              flag("CVE-1", "2.0", ms(hours=1)), flag("CVE-2", "1.0", ms(hours=1))]
    assert [a.trigger for a in fired(events, RULE)] == ["CVE-2"]


def test_rollback_changes_the_running_release() -> None:
    events = [deploy("1.0", ms()), deploy("2.0", ms(minutes=5)),
              rollback("1.0", ms(minutes=10)), flag("CVE-1", "1.0", ms(hours=1))]
    assert len(fired(events, RULE)) == 1


def test_other_service_running_the_release_is_not_affected() -> None:
    events = [deploy("1.0", ms(), service="other"), flag("CVE-1", "1.0", ms(hours=1))]
    assert fired(events, RULE) == []


def test_time_zone_offset() -> None:
    """10:00+01:00 is 09:00Z: a flag at 09:00Z ties with the deploy and ranks before it."""
    tie = [deploy("1.0", "2026-03-02T10:00:00+01:00"), flag("CVE-1", "1.0", "2026-03-02T09:00:00Z")]
    assert fired(tie, RULE) == []
    after = [deploy("1.0", "2026-03-02T10:00:00+01:00"),
             flag("CVE-1", "1.0", "2026-03-02T09:00:00.001Z")]
    [alert] = fired(after, RULE)
    assert alert.occurred_at_ms == ms(hours=9, millis=1)
