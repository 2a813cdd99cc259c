"""The eight rules of SPEC §3, each a small named unit.

A rule reads the service state *before* its triggering event and returns
:class:`Finding` values: where the alert lands (environment, release), its
trigger (which fixes the alert's identity), severity, evidence and summary.
The engine turns findings into alerts, adding identity, audience and, for the
rules that recommend, a recommendation judged *after* the trigger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from agents.engine.state import FlagRecord, IncidentRecord, ServiceState
from agents.engine.transitions import evidence_of, is_reversal
from agents.engine.windows import (
    FLIP_FLOP_WINDOW_MS,
    REDEPLOY_WINDOW_MS,
    in_half_open_window,
    within_before,
)
from agents.model.alerts import Evidence
from agents.model.events import Deploy, Event, Incident, SecurityFlag
from agents.model.timefmt import format_rfc3339_ms

SRE_AND_SECURITY: Final = ("security", "sre")
_BUMP: Final = {"low": "medium", "medium": "high", "high": "critical", "critical": "critical"}


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict at one event, before it becomes an alert."""

    rule: str
    environment: str
    release: str
    trigger: str
    severity: str
    evidence: tuple[Evidence, ...]
    summary: str


class Rule:
    """A SPEC §3 rule: an id, the event type it fires at, its audience."""

    rule_id: ClassVar[str]
    fires_at: ClassVar[str]
    notify: ClassVar[tuple[str, ...]] = SRE_AND_SECURITY
    recommends: ClassVar[bool] = True
    shared_identity: ClassVar[bool] = False
    """True when the trigger is not the event's own id, so several events may
    produce the same alert identity (flag_id or incident_id triggers)."""

    def evaluate(self, state: ServiceState, event: Event) -> list[Finding]:
        raise NotImplementedError


def flag_severity(flags: Sequence[FlagRecord]) -> str:
    """``critical`` if any active flag is critical, else ``high``."""
    return "critical" if any(f.severity == "critical" for f in flags) else "high"


def describe_flags(flags: Sequence[FlagRecord]) -> str:
    """``CVE-1, CVE-2 (critical)``: the flags' ids and vulnerability ids, worst severity."""
    names: list[str] = []
    for f in flags:
        for name in (f.flag_id, *f.vulnerabilities):
            if name not in names:
                names.append(name)
    order = ("low", "medium", "high", "critical")
    worst = max((f.severity for f in flags), key=order.index)
    return f"{', '.join(names)}; {worst}"


def describe_incidents(incidents: Sequence[IncidentRecord]) -> str:
    return ", ".join(f"{i.incident_id} ({i.severity})" for i in incidents)


class _ChangeToFlaggedRelease(Rule):
    """A succeeded deploy with ``action`` to a release R with at least one active flag."""

    action: ClassVar[str]

    def describe(self, state: ServiceState, deploy: Deploy) -> str:
        raise NotImplementedError

    def evaluate(self, state: ServiceState, event: Event) -> list[Finding]:
        if not isinstance(event, Deploy) or event.status != "succeeded":
            return []
        if event.action != self.action:
            return []
        flags = state.active_flags(event.release)
        if not flags:
            return []
        summary = (
            f"{event.service} {event.environment} {self.describe(state, event)}, "
            f"a release security has flagged ({describe_flags(flags)})."
        )
        return [
            Finding(
                self.rule_id,
                event.environment,
                event.release,
                event.event_id,
                flag_severity(flags),
                (evidence_of(event), *(f.ref for f in flags)),
                summary,
            )
        ]


class RollbackToFlaggedRelease(_ChangeToFlaggedRelease):
    """A succeeded rollback d to release R; at d, at least one flag on (service, R) is active.

    Severity ``critical`` if an active flag is critical, else ``high``. Notify sre, security.
    """

    rule_id = "rollback-to-flagged-release"
    fires_at = "deploy"
    action = "rollback"

    def describe(self, state: ServiceState, deploy: Deploy) -> str:
        env = state.peek_env(deploy.environment)
        incident = deploy.incident_id or (
            next(iter(env.open_incidents)) if env and env.open_incidents else None
        )
        during = f" during incident {incident}" if incident else ""
        return f"was rolled back to {deploy.release}{during}"


class FlaggedReleaseDeployed(_ChangeToFlaggedRelease):
    """A succeeded deploy (action deploy) d to release R; at d, at least one flag on
    (service, R) is active.

    Severity as for rollbacks. Notify sre, security.
    """

    rule_id = "flagged-release-deployed"
    fires_at = "deploy"
    action = "deploy"

    def describe(self, state: ServiceState, deploy: Deploy) -> str:
        return f"was deployed to {deploy.release}"


class RedeployOfRolledBackRelease(Rule):
    """A succeeded deploy (action deploy) d to release R; within 7 days before d, an
    incident-linked rollback on the same (service, environment) rolled back from R.

    Severity ``high``. Notify sre, security.
    """

    rule_id = "redeploy-of-rolled-back-release"
    fires_at = "deploy"

    def evaluate(self, state: ServiceState, event: Event) -> list[Finding]:
        if not isinstance(event, Deploy) or event.status != "succeeded":
            return []
        if event.action != "deploy":
            return []
        env = state.peek_env(event.environment)
        if env is None:
            return []
        rollbacks = [
            r
            for r in env.linked_rollbacks
            if r.from_release == event.release
            and within_before(r.ms, event.occurred_at_ms, REDEPLOY_WINDOW_MS)
        ]
        if not rollbacks:
            return []
        last = rollbacks[-1]
        incident = f" during incident {last.incident_id}" if last.incident_id else ""
        summary = (
            f"{event.service} {event.environment} was redeployed to {event.release}, which was "
            f"rolled back{incident} at {format_rfc3339_ms(last.ms)}."
        )
        return [
            Finding(
                self.rule_id,
                event.environment,
                event.release,
                event.event_id,
                "high",
                (evidence_of(event), *(r.ref for r in rollbacks)),
                summary,
            )
        ]


class FlagRaisedOnRunningRelease(Rule):
    """A security_flag f with status raised on (service, R); R is the running release of
    (service, E) at f. One alert per such E; a raise of an already active flag fires nothing.

    Severity: the flag's, one step higher (capped at critical) if an incident is open on
    (service, E) at f. Notify sre, security. Trigger: the ``flag_id``.
    """

    rule_id = "flag-raised-on-running-release"
    fires_at = "security_flag"
    shared_identity = True

    def evaluate(self, state: ServiceState, event: Event) -> list[Finding]:
        if not isinstance(event, SecurityFlag) or event.status != "raised":
            return []
        active = state.flags.get(event.release)
        if active and event.flag_id in active:
            return []
        findings: list[Finding] = []
        names = ", ".join(dict.fromkeys((event.flag_id, *event.vulnerabilities)))
        for name in sorted(state.envs):
            env = state.envs[name]
            if env.running != event.release:
                continue
            incidents = list(env.open_incidents.values())
            severity = _BUMP[event.severity] if incidents else event.severity
            evidence = [evidence_of(event)]
            if env.running_ref is not None:
                evidence.append(env.running_ref)
            evidence.extend(i.ref for i in incidents)
            during = f" while incident {describe_incidents(incidents)} is open" if incidents else ""
            summary = (
                f"Security flagged {event.release} ({names}; {event.severity}), the release "
                f"running in {event.service} {name}{during}."
            )
            findings.append(
                Finding(
                    self.rule_id,
                    name,
                    event.release,
                    event.flag_id,
                    severity,
                    tuple(evidence),
                    summary,
                )
            )
        return findings


class RollbackPerformed(Rule):
    """A succeeded rollback d to release R; no flag on (service, R) is active at d
    (else rollback-to-flagged-release fires instead).

    Severity ``info``. Notify security. No recommendation.
    """

    rule_id = "rollback-performed"
    fires_at = "deploy"
    notify = ("security",)
    recommends = False

    def evaluate(self, state: ServiceState, event: Event) -> list[Finding]:
        if not isinstance(event, Deploy) or event.status != "succeeded":
            return []
        if event.action != "rollback" or state.has_active_flag(event.release):
            return []
        source = f" from {event.previous_release}" if event.previous_release else ""
        reason = f" ({event.reason})" if event.reason else ""
        summary = (
            f"{event.service} {event.environment} was rolled back{source} to "
            f"{event.release}{reason}; the release has no active security flag."
        )
        return [
            Finding(
                self.rule_id,
                event.environment,
                event.release,
                event.event_id,
                "info",
                (evidence_of(event),),
                summary,
            )
        ]


class ReleaseFlipFlop(Rule):
    """A succeeded deploy d that is a reversal (A→B→A); counting succeeded deploys on
    (service, E) with ``occurred_at`` in (d - 24 h, d], d is the second reversal.

    Severity ``high``. Notify sre, security.
    """

    rule_id = "release-flip-flop"
    fires_at = "deploy"

    def evaluate(self, state: ServiceState, event: Event) -> list[Finding]:
        if not isinstance(event, Deploy) or event.status != "succeeded":
            return []
        env = state.peek_env(event.environment)
        if env is None or not is_reversal(env, event.release):
            return []
        window = [
            x
            for x in env.deploys
            if in_half_open_window(x.ms, event.occurred_at_ms, FLIP_FLOP_WINDOW_MS)
        ]
        if sum(1 for x in window if x.reversal) + 1 != 2:
            return []
        path = " → ".join([x.release for x in window] + [event.release])
        summary = (
            f"{event.service} {event.environment} flip-flopped within 24 hours: {path}; "
            "SRE and security are reversing each other's changes."
        )
        return [
            Finding(
                self.rule_id,
                event.environment,
                event.release,
                event.event_id,
                "high",
                (*(x.ref for x in window), evidence_of(event)),
                summary,
            )
        ]


class IncidentOnFlaggedRelease(Rule):
    """An incident event with status opened; the running release R of (service, E) at that
    event has an active flag.

    Severity ``high``. Notify security, sre. Trigger: the ``incident_id``.
    """

    rule_id = "incident-on-flagged-release"
    fires_at = "incident"
    shared_identity = True

    def evaluate(self, state: ServiceState, event: Event) -> list[Finding]:
        if not isinstance(event, Incident) or event.status != "opened":
            return []
        env = state.peek_env(event.environment)
        if env is None or env.running is None:
            return []
        flags = state.active_flags(env.running)
        if not flags:
            return []
        evidence = [evidence_of(event)]
        if env.running_ref is not None:
            evidence.append(env.running_ref)
        evidence.extend(f.ref for f in flags)
        summary = (
            f"Incident {event.incident_id} ({event.severity}: {event.title}) opened on "
            f"{event.service} {event.environment}, running {env.running}, a release security "
            f"has flagged ({describe_flags(flags)})."
        )
        return [
            Finding(
                self.rule_id,
                event.environment,
                env.running,
                event.incident_id,
                "high",
                tuple(evidence),
                summary,
            )
        ]


class SecurityChangeDuringIncident(Rule):
    """A succeeded deploy or rollback d with ``team`` = security; an incident is open on
    (service, E) at d.

    Severity ``medium``. Notify sre. No recommendation.
    """

    rule_id = "security-change-during-incident"
    fires_at = "deploy"
    notify = ("sre",)
    recommends = False

    def evaluate(self, state: ServiceState, event: Event) -> list[Finding]:
        if not isinstance(event, Deploy) or event.status != "succeeded":
            return []
        if event.team != "security":
            return []
        env = state.peek_env(event.environment)
        if env is None or not env.open_incidents:
            return []
        incidents = list(env.open_incidents.values())
        verb = "rolled back" if event.action == "rollback" else "deployed"
        summary = (
            f"Security {verb} {event.service} {event.environment} to {event.release} while "
            f"incident {describe_incidents(incidents)} is open; SRE on call should know."
        )
        return [
            Finding(
                self.rule_id,
                event.environment,
                event.release,
                event.event_id,
                "medium",
                (evidence_of(event), *(i.ref for i in incidents)),
                summary,
            )
        ]


ALL_RULES: Final[tuple[Rule, ...]] = (
    RollbackToFlaggedRelease(),
    FlaggedReleaseDeployed(),
    RedeployOfRolledBackRelease(),
    FlagRaisedOnRunningRelease(),
    RollbackPerformed(),
    ReleaseFlipFlop(),
    IncidentOnFlaggedRelease(),
    SecurityChangeDuringIncident(),
)

RULES_BY_ID: Final = {r.rule_id: r for r in ALL_RULES}
RULES_BY_EVENT_TYPE: Final = {
    t: tuple(r for r in ALL_RULES if r.fires_at == t)
    for t in ("deploy", "incident", "security_flag")
}
