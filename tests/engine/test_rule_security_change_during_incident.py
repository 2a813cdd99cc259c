"""SPEC §3 ``security-change-during-incident``: a succeeded deploy or rollback by team security
while an incident is open on (service, E)."""

from __future__ import annotations

import pytest

from .factory import ENV, deploy, fired, incident, ms, rollback

RULE = "security-change-during-incident"


@pytest.mark.parametrize("make", [deploy, rollback])
def test_fires_medium_to_sre_without_recommendation(make) -> None:  # type: ignore[no-untyped-def]
    d = make("2.0", ms(hours=1), team="security")
    [alert] = fired([deploy("1.0", ms()), incident("INC-1", ms(minutes=30)), d], RULE)
    assert (alert.environment, alert.release, alert.trigger) == (ENV, "2.0", d.event_id)
    assert alert.severity == "medium"
    assert list(alert.notify) == ["sre"]
    assert alert.recommendation is None
    assert {e.type for e in alert.evidence} == {"deploy", "incident"}
    assert "INC-1" in alert.summary


@pytest.mark.parametrize("team", ["sre", "dev", None])
def test_other_teams_do_not_fire(team: str | None) -> None:
    events = [incident("INC-1", ms(minutes=30)), deploy("2.0", ms(hours=1), team=team)]
    assert fired(events, RULE) == []


def test_acknowledged_counts_resolved_does_not() -> None:
    ack = [incident("INC-1", ms()), incident("INC-1", ms(minutes=5), "acknowledged"),
           deploy("2.0", ms(hours=1), team="security")]
    assert len(fired(ack, RULE)) == 1
    res = [incident("INC-1", ms()), incident("INC-1", ms(minutes=5), "resolved"),
           deploy("2.0", ms(hours=1), team="security")]
    assert fired(res, RULE) == []


def test_incident_in_another_environment_or_service() -> None:
    events = [incident("INC-1", ms(), env="staging"), incident("INC-2", ms(), service="other"),
              deploy("2.0", ms(hours=1), team="security")]
    assert fired(events, RULE) == []


def test_incident_moves_with_its_events() -> None:
    """An incident belongs to the (service, environment) of its events: the last one wins."""
    events = [incident("INC-1", ms(), env="staging"),
              incident("INC-1", ms(minutes=5), "acknowledged", env=ENV),
              deploy("2.0", ms(hours=1), team="security", env="staging"),
              deploy("2.0", ms(hours=1), team="security", env=ENV)]
    assert [a.environment for a in fired(events, RULE)] == [ENV]


def test_failed_change_does_not_fire() -> None:
    events = [incident("INC-1", ms()), deploy("2.0", ms(hours=1), team="security", status="failed")]
    assert fired(events, RULE) == []


def test_same_instant_ties() -> None:
    t = ms(hours=1)
    opened = [incident("INC-1", t), deploy("2.0", t, team="security")]
    assert len(fired(opened, RULE)) == 1
    resolved = [incident("INC-1", ms()), incident("INC-1", t, "resolved"),
                deploy("2.0", t, team="security")]
    assert fired(resolved, RULE) == []


def test_time_zone_offset() -> None:
    events = [incident("INC-1", "2026-03-02T02:00:00+01:00"),
              deploy("2.0", "2026-03-02T01:00:00Z", team="security")]
    [alert] = fired(events, RULE)
    assert alert.occurred_at_ms == ms(hours=1)
