"""A brute-force reading of SPEC §2 and §3, written from the SPEC text, for comparison.

Nothing incremental: at each event the oracle looks at the whole prefix of the
sorted event list (the events whose order key is smaller) and asks each rule's
condition literally. Quadratic and slow, and meant to be: it shares no code
with the engine except the event model and the alert id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.model.alerts import alert_id_for
from agents.model.events import Deploy, Event, Incident, SecurityFlag, order_key
from agents.model.timefmt import MS_PER_DAY, MS_PER_HOUR

SEVEN_DAYS_MS = 7 * MS_PER_DAY
DAY_MS = 24 * MS_PER_HOUR
BUMP = {"low": "medium", "medium": "high", "high": "critical", "critical": "critical"}
SHARED = ("flag-raised-on-running-release", "incident-on-flagged-release")
NO_RECOMMENDATION = ("rollback-performed", "security-change-during-incident")


@dataclass(frozen=True, slots=True)
class Expected:
    alert_id: str
    rule: str
    service: str
    environment: str
    release: str
    trigger: str
    severity: str
    occurred_at_ms: int
    notify: tuple[str, ...]
    recommendation_release: str | None


def _succeeded(events: Sequence[Event], service: str, env: str) -> list[Deploy]:
    return [
        e for e in events
        if isinstance(e, Deploy) and e.service == service and e.environment == env
        and e.status == "succeeded"
    ]


def running(events: Sequence[Event], service: str, env: str) -> str | None:
    deploys = _succeeded(events, service, env)
    return deploys[-1].release if deploys else None


def active_flags(events: Sequence[Event], service: str, release: str) -> list[SecurityFlag]:
    """The last event of each active flag on (service, release), newest raise first."""
    last: dict[str, SecurityFlag] = {}
    for e in events:
        if isinstance(e, SecurityFlag) and e.service == service and e.release == release:
            last[e.flag_id] = e
    active = [f for f in last.values() if f.status == "raised"]
    return sorted(active, key=order_key, reverse=True)


def incident_open(events: Sequence[Event], service: str, env: str) -> bool:
    last: dict[str, Incident] = {}
    for e in events:
        if isinstance(e, Incident) and e.service == service:
            last[e.incident_id] = e
    return any(i.environment == env and i.status != "resolved" for i in last.values())


def linked_rollbacks(events: Sequence[Event], service: str, env: str) -> list[tuple[int, str]]:
    """(time, rolled back from) of every incident-linked rollback on (service, env)."""
    out = []
    for n, e in enumerate(events):
        if not (isinstance(e, Deploy) and e.service == service and e.environment == env):
            continue
        if e.status != "succeeded" or e.action != "rollback":
            continue
        before = events[:n]
        if e.incident_id is None and not incident_open(before, service, env):
            continue
        source = e.previous_release or running(before, service, env)
        if source is not None:
            out.append((e.occurred_at_ms, source))
    return out


def is_reversal(events: Sequence[Event], d: Deploy) -> bool:
    """``events`` is the prefix before d."""
    prior = _succeeded(events, d.service, d.environment)
    return len(prior) >= 2 and prior[-2].release == d.release and prior[-1].release != d.release


def recommend(
    upto: Sequence[Event], service: str, env: str, release: str, at_ms: int
) -> str | None:
    ordered: list[str] = []
    for f in active_flags(upto, service, release):
        if f.fixed_in is not None and f.fixed_in not in ordered:
            ordered.append(f.fixed_in)
    last_deploy: dict[str, tuple[int, int, str]] = {}
    for e in upto:
        if isinstance(e, Deploy) and e.service == service and e.status == "succeeded":
            last_deploy[e.release] = order_key(e)
    for r in sorted(last_deploy, key=last_deploy.__getitem__, reverse=True):
        if r not in ordered:
            ordered.append(r)
    excluded = {
        src for t, src in linked_rollbacks(upto, service, env) if at_ms - SEVEN_DAYS_MS <= t
    }
    for c in ordered:
        if c != release and not active_flags(upto, service, c) and c not in excluded:
            return c
    return None


def expected_alerts(events: Sequence[Event]) -> list[Expected]:
    """The final active alerts SPEC §3 gives for a set of (unique) events."""
    ordered = sorted(events, key=order_key)
    found: dict[str, Expected] = {}
    for n, e in enumerate(ordered):
        before = ordered[:n]
        upto = ordered[: n + 1]
        hits: list[tuple[str, str, str, str, str]] = []  # rule, env, release, trigger, sev
        if isinstance(e, Deploy) and e.status == "succeeded":
            flags = active_flags(before, e.service, e.release)
            sev = "critical" if any(f.severity == "critical" for f in flags) else "high"
            if e.action == "rollback":
                if flags:
                    hits.append(("rollback-to-flagged-release", e.environment, e.release,
                                 e.event_id, sev))
                else:
                    hits.append(("rollback-performed", e.environment, e.release,
                                 e.event_id, "info"))
            else:
                if flags:
                    hits.append(("flagged-release-deployed", e.environment, e.release,
                                 e.event_id, sev))
                if any(src == e.release and e.occurred_at_ms - SEVEN_DAYS_MS <= t
                       for t, src in linked_rollbacks(before, e.service, e.environment)):
                    hits.append(("redeploy-of-rolled-back-release", e.environment, e.release,
                                 e.event_id, "high"))
            if is_reversal(before, e):
                reversals = 1
                for m, x in enumerate(before):
                    if (isinstance(x, Deploy) and x.service == e.service
                            and x.environment == e.environment and x.status == "succeeded"
                            and e.occurred_at_ms - DAY_MS < x.occurred_at_ms
                            and is_reversal(ordered[:m], x)):
                        reversals += 1
                if reversals == 2:
                    hits.append(("release-flip-flop", e.environment, e.release,
                                 e.event_id, "high"))
            if e.team == "security" and incident_open(before, e.service, e.environment):
                hits.append(("security-change-during-incident", e.environment, e.release,
                             e.event_id, "medium"))
        elif isinstance(e, SecurityFlag) and e.status == "raised":
            already = any(f.flag_id == e.flag_id
                          for f in active_flags(before, e.service, e.release))
            if not already:
                envs = sorted({x.environment for x in before
                               if isinstance(x, Deploy) and x.service == e.service})
                for env in envs:
                    if running(before, e.service, env) == e.release:
                        sev = (BUMP[e.severity] if incident_open(before, e.service, env)
                               else e.severity)
                        hits.append(("flag-raised-on-running-release", env, e.release,
                                     e.flag_id, sev))
        elif isinstance(e, Incident) and e.status == "opened":
            r = running(before, e.service, e.environment)
            if r is not None and active_flags(before, e.service, r):
                hits.append(("incident-on-flagged-release", e.environment, r,
                             e.incident_id, "high"))
        for rule, env, release, trigger, sev in hits:
            alert_id = alert_id_for(rule, e.service, env, release, trigger)
            if rule in SHARED and alert_id in found:
                continue  # the earliest producer owns the identity
            notify = ("security",) if rule == "rollback-performed" else (
                ("sre",) if rule == "security-change-during-incident" else ("security", "sre"))
            rec = (None if rule in NO_RECOMMENDATION
                   else recommend(upto, e.service, env, release, e.occurred_at_ms))
            found[alert_id] = Expected(alert_id, rule, e.service, env, release, trigger, sev,
                                       e.occurred_at_ms, notify, rec)
    return list(found.values())
