"""Small builders for events and a runner for the engine, shared by the engine tests.

Events are built as SPEC §1 JSON objects and go through ``parse_event``, so the
tests exercise the same path as files and topics. Times are minutes/hours/days
after :data:`T0`; ``when`` may also be an RFC 3339 string (for offset tests).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from agents.engine import Engine, EngineConfig
from agents.model.alerts import FIRING, Alert
from agents.model.events import Event, order_key, parse_event
from agents.model.timefmt import (
    MS_PER_DAY,
    MS_PER_HOUR,
    MS_PER_MINUTE,
    format_rfc3339_ms,
    parse_rfc3339_ms,
)

T0 = parse_rfc3339_ms("2026-03-02T00:00:00Z")
SERVICE = "payments-api"
ENV = "production"
NOW_AFTER_MS = 30 * MS_PER_DAY
"""The injected clock sits this far after T0, so nothing the tests build is 'future'."""

_ids = itertools.count(1)


def ms(*, days: float = 0, hours: float = 0, minutes: float = 0, millis: int = 0) -> int:
    """An instant relative to T0 in UTC epoch ms."""
    return T0 + int(days * MS_PER_DAY + hours * MS_PER_HOUR + minutes * MS_PER_MINUTE) + millis


def _when(when: int | str) -> str:
    return when if isinstance(when, str) else format_rfc3339_ms(when)


def _eid(event_id: str | None, prefix: str) -> str:
    return event_id if event_id is not None else f"{prefix}-{next(_ids):06d}"


def deploy(
    release: str,
    when: int | str,
    *,
    previous: str | None = None,
    action: str = "deploy",
    status: str = "succeeded",
    team: str | None = "dev",
    incident_id: str | None = None,
    service: str = SERVICE,
    env: str = ENV,
    event_id: str | None = None,
    aliases: Sequence[str] = (),
    **extra: Any,
) -> Event:
    obj: dict[str, Any] = {
        "release_aliases": list(aliases),
        "type": "deploy",
        "event_id": _eid(event_id, "dep"),
        "occurred_at": _when(when),
        "source": "argocd",
        "service": service,
        "environment": env,
        "release": release,
        "previous_release": previous,
        "action": action,
        "status": status,
        "team": team,
        "actor": "someone",
        "reason": None,
        "incident_id": incident_id,
        **extra,
    }
    return parse_event(obj)


def rollback(release: str, when: int | str, **kwargs: Any) -> Event:
    return deploy(release, when, action="rollback", **kwargs)


def incident(
    incident_id: str,
    when: int | str,
    status: str = "opened",
    *,
    severity: str = "sev2",
    service: str = SERVICE,
    env: str = ENV,
    event_id: str | None = None,
    suspected: str | None = None,
    aliases: Sequence[str] = (),
) -> Event:
    return parse_event(
        {
            "type": "incident",
            "event_id": _eid(event_id, "inc"),
            "occurred_at": _when(when),
            "source": "pagerduty",
            "service": service,
            "environment": env,
            "incident_id": incident_id,
            "status": status,
            "severity": severity,
            "title": "checkout errors",
            "suspected_release": suspected,
            "release_aliases": list(aliases),
        }
    )


def flag(
    flag_id: str,
    release: str,
    when: int | str,
    status: str = "raised",
    *,
    severity: str = "high",
    fixed_in: str | None = None,
    vulnerabilities: Sequence[str] = (),
    service: str = SERVICE,
    event_id: str | None = None,
    aliases: Sequence[str] = (),
) -> Event:
    return parse_event(
        {
            "type": "security_flag",
            "release_aliases": list(aliases),
            "event_id": _eid(event_id, "flg"),
            "occurred_at": _when(when),
            "source": "trivy",
            "service": service,
            "flag_id": flag_id,
            "release": release,
            "status": status,
            "severity": severity,
            "vulnerabilities": list(vulnerabilities),
            "title": "a finding",
            "fixed_in": fixed_in,
        }
    )


def clock_for(events: Iterable[Event]) -> int:
    """A wall-clock reading after every event (so none is 'future')."""
    return max((e.occurred_at_ms for e in events), default=T0) + NOW_AFTER_MS


def run(
    events: Iterable[Event],
    *,
    allowed_lateness_ms: int = 0,
    in_order: bool = True,
    config: EngineConfig | None = None,
) -> list[Alert]:
    """Process events (sorted by order key unless ``in_order`` is False) and return the
    final active alerts, in the order they were last emitted."""
    events = list(events)
    now_ms = clock_for(events)
    feed = sorted(events, key=order_key) if in_order else events
    engine = Engine(config or EngineConfig(allowed_lateness_ms=allowed_lateness_ms))
    latest: dict[str, Alert] = {}
    for event in feed:
        for alert in engine.process(event, now_ms).alerts:
            latest.pop(alert.alert_id, None)
            latest[alert.alert_id] = alert
    return [a for a in latest.values() if a.status == FIRING]


def of_rule(alerts: Iterable[Alert], rule: str) -> list[Alert]:
    return [a for a in alerts if a.rule == rule]


def fired(events: Iterable[Event], rule: str, **kwargs: Any) -> list[Alert]:
    """The final active alerts of one rule."""
    return of_rule(run(events, **kwargs), rule)


def rec_release(alert: Alert) -> str | None:
    return alert.recommendation.release if alert.recommendation is not None else None
