"""A brute-force reading of SPEC §2, §3 and §8, written from the SPEC text, for comparison.

Nothing incremental: at each event the oracle looks at the whole prefix of the
sorted event list (the events whose order key is smaller) and asks each rule's
condition literally. Release names are compared as §8 says: two names are the same
release at the event being evaluated when a chain of events up to and including it
links them, mutable names never linking. Quadratic and slow, and meant to be: it
shares no code with the engine except the event model and the alert id.

Where the SPEC is silent it follows docs/decisions.md: the recommendation and
the alert show a release by the name its newest deploy used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.model.alerts import alert_id_for
from agents.model.events import Deploy, Event, Incident, SecurityFlag, order_key
from agents.model.timefmt import MS_PER_DAY, MS_PER_HOUR

SEVEN_DAYS_MS = 7 * MS_PER_DAY
DAY_MS = 24 * MS_PER_HOUR
BUMP = {"low": "medium", "medium": "high", "high": "critical", "critical": "critical"}
SHARED = ("flag-raised-on-running-release", "incident-on-flagged-release")
NO_RECOMMENDATION = ("rollback-performed", "security-change-during-incident")
MUTABLE_TAGS = ("latest", "stable", "main", "master", "nightly")
"""The moving words of the engine's default mutable patterns that the tests' names use."""

Same = Callable[[str, str], bool]


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
    release_aliases: tuple[str, ...]


# --- §8: which names are the same release at an event --------------------------------


def is_mutable(name: str) -> bool:
    tag = name.rsplit(":", 1)[-1]
    return not name.startswith("sha256:") and tag in MUTABLE_TAGS


def name_classes(upto: Sequence[Event], service: str) -> dict[str, frozenset[str]]:
    """Every linked name of the service -> its class, from the links of ``upto``."""
    classes: dict[str, frozenset[str]] = {}
    for e in upto:
        if e.service != service or not e.release_aliases:
            continue
        named = e.suspected_release if isinstance(e, Incident) else e.release
        names = [n for n in ((named,) if named else ()) + e.release_aliases if not is_mutable(n)]
        for a in names[1:]:
            joined = classes.get(names[0], frozenset({names[0]})) | classes.get(a, frozenset({a}))
            for n in joined:
                classes[n] = joined
    return classes


def same_at(upto: Sequence[Event], service: str) -> Same:
    classes = name_classes(upto, service)

    def same(a: str, b: str) -> bool:
        return a == b or b in classes.get(a, ())

    return same


# --- §2 ----------------------------------------------------------------------------------


def _succeeded(events: Sequence[Event], service: str, env: str) -> list[Deploy]:
    return [
        e for e in events
        if isinstance(e, Deploy) and e.service == service and e.environment == env
        and e.status == "succeeded"
    ]


def running(events: Sequence[Event], service: str, env: str) -> str | None:
    deploys = _succeeded(events, service, env)
    return deploys[-1].release if deploys else None


def active_flags(
    events: Sequence[Event], service: str, release: str, same: Same
) -> list[SecurityFlag]:
    """The last event of each active flag on (service, release), newest raise first."""
    last: dict[str, SecurityFlag] = {}
    for e in events:
        if isinstance(e, SecurityFlag) and e.service == service and same(e.release, release):
            last[e.flag_id] = e
    active = [f for f in last.values() if f.status == "raised"]
    return sorted(active, key=order_key, reverse=True)


def incident_open(events: Sequence[Event], service: str, env: str) -> bool:
    last: dict[str, Incident] = {}
    for e in events:
        if isinstance(e, Incident) and e.service == service:
            last[e.incident_id] = e
    return any(i.environment == env and i.status != "resolved" for i in last.values())


def linked_rollbacks(
    events: Sequence[Event], service: str, env: str, same: Same
) -> list[tuple[int, str]]:
    """(time, rolled back from) of every incident-linked rollback on (service, env) that
    rolled back from something."""
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


def is_reversal(events: Sequence[Event], d: Deploy, same: Same) -> bool:
    """``events`` is the prefix before d."""
    prior = _succeeded(events, d.service, d.environment)
    return (
        len(prior) >= 2
        and same(prior[-2].release, d.release)
        and not same(prior[-1].release, d.release)
    )


def shown_name(upto: Sequence[Event], service: str, release: str, same: Same) -> str:
    """The name the newest succeeded deploy of ``release`` used, else ``release``."""
    for e in reversed(upto):
        if (isinstance(e, Deploy) and e.service == service and e.status == "succeeded"
                and same(e.release, release)):
            return e.release
    return release


def recommend(
    upto: Sequence[Event], service: str, env: str, release: str, at_ms: int, same: Same
) -> str | None:
    ordered: list[str] = []
    for f in active_flags(upto, service, release, same):
        if f.fixed_in is not None and f.fixed_in not in ordered:
            ordered.append(f.fixed_in)
    last_deploy: dict[str, tuple[int, int, str]] = {}
    for e in upto:
        if isinstance(e, Deploy) and e.service == service and e.status == "succeeded":
            last_deploy[e.release] = order_key(e)
    for r in sorted(last_deploy, key=last_deploy.__getitem__, reverse=True):
        if r not in ordered:
            ordered.append(r)
    excluded = [
        src for t, src in linked_rollbacks(upto, service, env, same) if at_ms - SEVEN_DAYS_MS <= t
    ]
    for c in ordered:
        if same(c, release) or active_flags(upto, service, c, same):
            continue
        if any(same(c, x) for x in excluded):
            continue
        return shown_name(upto, service, c, same)
    return None


def expected_alerts(events: Sequence[Event]) -> list[Expected]:
    """The final active alerts SPEC §3 gives for a set of (unique) events."""
    ordered = sorted(events, key=order_key)
    found: dict[str, Expected] = {}
    for n, e in enumerate(ordered):
        before = ordered[:n]
        upto = ordered[: n + 1]
        same = same_at(upto, e.service)  # the links of the events before e and of e itself
        hits: list[tuple[str, str, str, str, str]] = []  # rule, env, release, trigger, sev
        if isinstance(e, Deploy) and e.status == "succeeded":
            flags = active_flags(before, e.service, e.release, same)
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
                if any(same(src, e.release) and e.occurred_at_ms - SEVEN_DAYS_MS <= t
                       for t, src in linked_rollbacks(before, e.service, e.environment, same)):
                    hits.append(("redeploy-of-rolled-back-release", e.environment, e.release,
                                 e.event_id, "high"))
            if is_reversal(before, e, same):
                reversals = 1
                for m, x in enumerate(before):
                    if (isinstance(x, Deploy) and x.service == e.service
                            and x.environment == e.environment and x.status == "succeeded"
                            and e.occurred_at_ms - DAY_MS < x.occurred_at_ms
                            and is_reversal(ordered[:m], x, same)):
                        reversals += 1
                if reversals == 2:
                    hits.append(("release-flip-flop", e.environment, e.release,
                                 e.event_id, "high"))
            if e.team == "security" and incident_open(before, e.service, e.environment):
                hits.append(("security-change-during-incident", e.environment, e.release,
                             e.event_id, "medium"))
        elif isinstance(e, SecurityFlag) and e.status == "raised":
            already = any(f.flag_id == e.flag_id
                          for f in active_flags(before, e.service, e.release, same))
            if not already:
                envs = sorted({x.environment for x in before
                               if isinstance(x, Deploy) and x.service == e.service})
                for env in envs:
                    r = running(before, e.service, env)
                    if r is not None and same(r, e.release):
                        sev = (BUMP[e.severity] if incident_open(before, e.service, env)
                               else e.severity)
                        hits.append(("flag-raised-on-running-release", env, e.release,
                                     e.flag_id, sev))
        elif isinstance(e, Incident) and e.status == "opened":
            r = running(before, e.service, e.environment)
            if r is not None and active_flags(before, e.service, r, same):
                hits.append(("incident-on-flagged-release", e.environment, r,
                             e.incident_id, "high"))
        classes = name_classes(upto, e.service)
        for rule, env, release, trigger, sev in hits:
            alert_id = alert_id_for(rule, e.service, env, release, trigger)
            if rule in SHARED and alert_id in found:
                continue  # the earliest producer owns the identity
            notify = ("security",) if rule == "rollback-performed" else (
                ("sre",) if rule == "security-change-during-incident" else ("security", "sre"))
            rec = (None if rule in NO_RECOMMENDATION
                   else recommend(upto, e.service, env, release, e.occurred_at_ms, same))
            shown = shown_name(upto, e.service, release, same)
            aliases = tuple(sorted(classes.get(release, frozenset()) - {shown}))
            found[alert_id] = Expected(alert_id, rule, e.service, env, shown, trigger, sev,
                                       e.occurred_at_ms, notify, rec, aliases)
    return list(found.values())
