"""SPEC §3 ``incident-on-flagged-release``: an incident opened while the environment runs a
release with an active flag; triggered by the ``incident_id``."""

from __future__ import annotations

import pytest

from agents.model.alerts import alert_id_for
from agents.model.events import Event

from .factory import ENV, SERVICE, deploy, fired, flag, incident, ms, rec_release

RULE = "incident-on-flagged-release"


def _flagged_running() -> list[Event]:
    return [deploy("1.0", ms()), deploy("2.0", ms(minutes=10)),
            flag("CVE-1", "2.0", ms(minutes=20), fixed_in="2.1")]


def test_fires_with_identity_and_recommendation() -> None:
    inc = incident("INC-1", ms(hours=1), severity="sev1")
    [alert] = fired([*_flagged_running(), inc], RULE)
    assert (alert.environment, alert.release, alert.trigger) == (ENV, "2.0", "INC-1")
    assert alert.alert_id == alert_id_for(RULE, SERVICE, ENV, "2.0", "INC-1")
    assert alert.severity == "high"
    assert sorted(alert.notify) == ["security", "sre"]
    assert alert.occurred_at_ms == ms(hours=1)
    assert rec_release(alert) == "2.1"
    assert "INC-1" in alert.summary


@pytest.mark.parametrize("status", ["acknowledged", "resolved"])
def test_only_opened_events_fire(status: str) -> None:
    assert fired([*_flagged_running(), incident("INC-1", ms(hours=1), status)], RULE) == []


@pytest.mark.parametrize("ending", ["cleared", "risk_accepted"])
def test_ended_flag_does_not_fire(ending: str) -> None:
    events = [*_flagged_running(), flag("CVE-1", "2.0", ms(minutes=30), ending),
              incident("INC-1", ms(hours=1))]
    assert fired(events, RULE) == []


def test_no_running_release_or_unflagged_running_release() -> None:
    assert fired([flag("CVE-1", "2.0", ms()), incident("INC-1", ms(hours=1))], RULE) == []
    events = [*_flagged_running(), deploy("2.1", ms(minutes=30)), incident("INC-1", ms(hours=1))]
    assert fired(events, RULE) == []


def test_failed_deploy_leaves_the_flagged_release_running() -> None:
    events = [*_flagged_running(), deploy("2.1", ms(minutes=30), status="failed"),
              incident("INC-1", ms(hours=1))]
    assert len(fired(events, RULE)) == 1


def test_incident_in_an_environment_running_another_release() -> None:
    events = [*_flagged_running(), deploy("1.0", ms(), env="staging"),
              incident("INC-1", ms(hours=1), env="staging")]
    assert fired(events, RULE) == []


def test_reopen_on_the_same_flagged_release_fires_nothing_new() -> None:
    events = [*_flagged_running(), incident("INC-1", ms(hours=1)),
              incident("INC-1", ms(hours=2), "resolved"), incident("INC-1", ms(hours=3))]
    [alert] = fired(events, RULE)
    assert alert.occurred_at_ms == ms(hours=1)


def test_second_opened_event_of_an_open_incident_fires_nothing_new() -> None:
    events = [*_flagged_running(), incident("INC-1", ms(hours=1)), incident("INC-1", ms(hours=2))]
    assert len(fired(events, RULE)) == 1


def test_reopen_on_another_flagged_release_is_another_alert() -> None:
    events = [*_flagged_running(), incident("INC-1", ms(hours=1)),
              incident("INC-1", ms(hours=2), "resolved"),
              flag("CVE-7", "1.0", ms(hours=2)), deploy("1.0", ms(hours=2, minutes=30)),
              incident("INC-1", ms(hours=3))]
    alerts = fired(events, RULE)
    assert sorted((a.release, a.occurred_at_ms) for a in alerts) == [
        ("1.0", ms(hours=3)), ("2.0", ms(hours=1))]


def test_same_instant_ties() -> None:
    t = ms(hours=1)
    flag_tie = [deploy("2.0", ms()), flag("CVE-1", "2.0", t), incident("INC-1", t)]
    assert len(fired(flag_tie, RULE)) == 1
    # the deploy ranks after the incident: the incident sees 1.0 running
    deploy_tie = [deploy("1.0", ms()), flag("CVE-1", "2.0", ms()), deploy("2.0", t),
                  incident("INC-1", t)]
    assert fired(deploy_tie, RULE) == []


def test_time_zone_offset() -> None:
    events = [*_flagged_running(), incident("INC-1", "2026-03-02T03:00:00+02:00")]
    [alert] = fired(events, RULE)
    assert alert.occurred_at_ms == ms(hours=1)
