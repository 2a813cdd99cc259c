"""The eight rules of SPEC §3, each a small named unit.

A rule reads the service state *before* its triggering event (with the event's own
release links made, SPEC §8) and returns :class:`Finding` values: where the alert lands
(environment, release), its trigger (which fixes the alert's identity), severity,
evidence and summary. The engine turns findings into alerts, adding identity, audience
and, for the rules that recommend, a recommendation judged *after* the trigger.

Releases are compared as SPEC §8 says: two names are equal when they are the same
release at the event (``state.same_release``).

Every rule's cost is bounded whatever the state holds: ``evidence`` lists the trigger
and at most :data:`MAX_EVIDENCE` entries in all (``evidence_count`` says how many events
made the rule fire), and a summary names at most :data:`SUMMARY_NAMES` flag or
vulnerability ids and :data:`SUMMARY_INCIDENTS` incidents, then says how many more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain, islice
from typing import ClassVar, Final

from agents.engine.state import IncidentRecord, ReleaseFlags, ServiceState
from agents.engine.transitions import is_reversal
from agents.engine.windows import FLIP_FLOP_WINDOW_MS, REDEPLOY_WINDOW_MS, in_half_open_window
from agents.model.alerts import Evidence
from agents.model.events import Deploy, Event, Incident, SecurityFlag
from agents.model.timefmt import format_rfc3339_ms
from agents.model.values import Value

SRE_AND_SECURITY: Final = ("security", "sre")
_BUMP: Final = {"low": "medium", "medium": "high", "high": "critical", "critical": "critical"}

MAX_EVIDENCE: Final = 20
"""Evidence entries of one alert, the trigger included: the most relevant first (see each
rule). A deploy onto a release with 50 000 active flags is a 20-entry alert that says
``evidence_count: 50001``."""

SUMMARY_NAMES: Final = 5
SUMMARY_INCIDENTS: Final = 3
FLIP_FLOP_PATH: Final = 8
"""Releases of a flip-flop path named in its summary (the newest ones)."""


class Finding(Value):
    """A rule's verdict at one event, before it becomes an alert."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "rule",
        "environment",
        "release",
        "trigger",
        "severity",
        "evidence",
        "summary",
        "evidence_count",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        rule: str,
        environment: str,
        release: str,
        trigger: str,
        severity: str,
        evidence: tuple[Evidence, ...],
        summary: str,
        evidence_count: int = 0,
    ) -> None:
        self.rule: Final = rule
        self.environment: Final = environment
        self.release: Final = release
        self.trigger: Final = trigger
        self.severity: Final = severity
        self.evidence: Final = evidence
        self.summary: Final = summary
        self.evidence_count: Final = evidence_count
        """How many events made the rule fire (``len(evidence)`` when 0)."""

    def values(self) -> tuple[object, ...]:
        return (
            self.rule,
            self.environment,
            self.release,
            self.trigger,
            self.severity,
            self.evidence,
            self.summary,
            self.evidence_count,
        )


class Rule:
    """A SPEC §3 rule: an id, the event type it fires at, its audience.

    ``evaluate(state, event, ref)``: ``ref`` is the event's evidence reference (one
    object per event, shared by every record and alert that cites it)."""

    rule_id: ClassVar[str]
    fires_at: ClassVar[str]
    notify: ClassVar[tuple[str, ...]] = SRE_AND_SECURITY
    recommends: ClassVar[bool] = True
    shared_identity: ClassVar[bool] = False
    """True when the trigger is not the event's own id, so several events may
    produce the same alert identity (flag_id or incident_id triggers)."""

    def evaluate(self, state: ServiceState, event: Event, ref: Evidence) -> list[Finding]:
        raise NotImplementedError


def flag_severity(flags: ReleaseFlags) -> str:
    """``critical`` if any active flag is critical, else ``high``."""
    return "critical" if flags.worst_severity() == "critical" else "high"


def name_list(names: Iterable[str], count: int) -> str:
    """At most :data:`SUMMARY_NAMES` distinct names of the ``count`` given, then how many
    more are listed after them. Costs what it shows, not ``count``."""
    shown: dict[str, None] = {}
    for read, name in enumerate(names):
        if name not in shown:
            if len(shown) == SUMMARY_NAMES:
                return f"{', '.join(shown)} and {count - read:,} more"
            shown[name] = None
    return ", ".join(shown)


def describe_flags(flags: ReleaseFlags) -> str:
    """``CVE-1, CVE-2; critical``: the ids of the most relevant flags and their
    vulnerability ids, then the worst severity; past :data:`SUMMARY_NAMES` names,
    ``…and more; 3,000 flags, worst critical``. Costs O(names shown), not O(flags)."""
    names: dict[str, None] = {}
    complete = True
    for record in islice(flags.most_relevant(), SUMMARY_NAMES + 1):
        for name in chain((record.flag_id,), record.vulnerabilities):
            if name in names:
                continue
            if len(names) == SUMMARY_NAMES:
                complete = False
                break
            names[name] = None
        if not complete:
            break
    else:
        complete = len(flags) <= SUMMARY_NAMES + 1
    worst = flags.worst_severity()
    text = ", ".join(names)
    if complete:
        return f"{text}; {worst}"
    return f"{text} and more; {len(flags):,} flags, worst {worst}"


def describe_incidents(incidents: Sequence[IncidentRecord]) -> str:
    shown = ", ".join(f"{i.incident_id} ({i.severity})" for i in incidents[:SUMMARY_INCIDENTS])
    if len(incidents) > SUMMARY_INCIDENTS:
        return f"{shown} and {len(incidents) - SUMMARY_INCIDENTS:,} more"
    return shown


def _capped(refs: Iterable[Evidence], room: int) -> list[Evidence]:
    return list(islice(refs, max(0, room)))


class _ChangeToFlaggedRelease(Rule):
    """A succeeded deploy with ``action`` to a release R with at least one active flag."""

    action: ClassVar[str]

    def describe(self, state: ServiceState, deploy: Deploy) -> str:
        raise NotImplementedError

    def evaluate(self, state: ServiceState, event: Event, ref: Evidence) -> list[Finding]:
        if not isinstance(event, Deploy) or event.status != "succeeded":
            return []
        if event.action != self.action:
            return []
        flags = state.flags_of(event.release)
        if flags is None:
            return []
        summary = (
            f"{event.service} {event.environment} {self.describe(state, event)}, "
            f"a release security has flagged ({describe_flags(flags)})."
        )
        # Evidence: the trigger, then the flags most severe first, newest first.
        evidence = [ref]
        evidence.extend(_capped((f.ref for f in flags.most_relevant()), MAX_EVIDENCE - 1))
        return [
            Finding(
                self.rule_id,
                event.environment,
                event.release,
                event.event_id,
                flag_severity(flags),
                tuple(evidence),
                summary,
                1 + len(flags),
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

    def evaluate(self, state: ServiceState, event: Event, ref: Evidence) -> list[Finding]:
        if not isinstance(event, Deploy) or event.status != "succeeded":
            return []
        if event.action != "deploy":
            return []
        env = state.peek_env(event.environment)
        if env is None:
            return []
        if not env.linked_rollbacks:
            return []
        rollbacks = env.rollbacks_from(
            state.names.members(event.release), event.occurred_at_ms - REDEPLOY_WINDOW_MS
        )
        if not rollbacks:
            return []
        last = rollbacks[-1]
        incident = f" during incident {last.incident_id}" if last.incident_id else ""
        summary = (
            f"{event.service} {event.environment} was redeployed to {event.release}, which was "
            f"rolled back{incident} at {format_rfc3339_ms(last.ms)}."
        )
        # Evidence: the trigger, then the newest rollbacks (in time order).
        kept = rollbacks[-(MAX_EVIDENCE - 1) :]
        return [
            Finding(
                self.rule_id,
                event.environment,
                event.release,
                event.event_id,
                "high",
                (ref, *(r.ref for r in kept)),
                summary,
                1 + len(rollbacks),
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

    def evaluate(self, state: ServiceState, event: Event, ref: Evidence) -> list[Finding]:
        if not isinstance(event, SecurityFlag) or event.status != "raised":
            return []
        if state.is_flag_active(event.release, event.flag_id):
            return []
        findings: list[Finding] = []
        names: str | None = None
        same = state.same_release
        for name in sorted(state.envs):
            env = state.envs[name]
            if env.running is None or not same(env.running, event.release):
                continue
            if names is None:
                names = name_list(
                    chain((event.flag_id,), event.vulnerabilities), 1 + len(event.vulnerabilities)
                )
            incidents = list(env.open_incidents.values())
            severity = _BUMP[event.severity] if incidents else event.severity
            # Evidence: the trigger, the deploy that made R run, the open incidents.
            evidence = [ref]
            if env.running_ref is not None:
                evidence.append(env.running_ref)
            evidence.extend(_capped((i.ref for i in incidents), MAX_EVIDENCE - len(evidence)))
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
                    1 + (env.running_ref is not None) + len(incidents),
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

    def evaluate(self, state: ServiceState, event: Event, ref: Evidence) -> list[Finding]:
        if not isinstance(event, Deploy) or event.status != "succeeded":
            return []
        if event.action != "rollback" or state.has_active_flag(event.release):
            return []
        previous = event.previous_release
        if previous is not None and state.same_release(previous, event.release):
            previous = None  # "rolled back from R to R" reads as a typo to a person
        source = f" from {previous}" if previous else ""
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
                (ref,),
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

    def evaluate(self, state: ServiceState, event: Event, ref: Evidence) -> list[Finding]:
        if not isinstance(event, Deploy) or event.status != "succeeded":
            return []
        env = state.peek_env(event.environment)
        if env is None:
            return []
        deploys = env.deploys
        end = len(deploys)
        if not is_reversal(state, deploys, end, event.release):
            return []
        start = end
        while start > 0 and in_half_open_window(
            deploys[start - 1].ms, event.occurred_at_ms, FLIP_FLOP_WINDOW_MS
        ):
            start -= 1
        reversals = 0
        for at in range(start, end):
            if is_reversal(state, deploys, at, deploys[at].release):
                reversals += 1
                if reversals > 1:
                    return []
        if reversals != 1:
            return []
        window = deploys[start:end]
        hops = [x.release for x in window[-FLIP_FLOP_PATH:]] + [event.release]
        path = ("… → " if len(window) > FLIP_FLOP_PATH else "") + " → ".join(hops)
        summary = (
            f"{event.service} {event.environment} flip-flopped within 24 hours: {path}; "
            "SRE and security are reversing each other's changes."
        )
        # Evidence: the deploys of the window in time order (the newest ones), the trigger.
        kept = window[-(MAX_EVIDENCE - 1) :]
        return [
            Finding(
                self.rule_id,
                event.environment,
                event.release,
                event.event_id,
                "high",
                (*(x.ref for x in kept), ref),
                summary,
                len(window) + 1,
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

    def evaluate(self, state: ServiceState, event: Event, ref: Evidence) -> list[Finding]:
        if not isinstance(event, Incident) or event.status != "opened":
            return []
        env = state.peek_env(event.environment)
        if env is None or env.running is None:
            return []
        flags = state.flags_of(env.running)
        if flags is None:
            return []
        # Evidence: the trigger, the deploy that made R run, the flags most severe first.
        evidence = [ref]
        if env.running_ref is not None:
            evidence.append(env.running_ref)
        evidence.extend(
            _capped((f.ref for f in flags.most_relevant()), MAX_EVIDENCE - len(evidence))
        )
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
                1 + (env.running_ref is not None) + len(flags),
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

    def evaluate(self, state: ServiceState, event: Event, ref: Evidence) -> list[Finding]:
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
        # Evidence: the trigger, then the open incidents.
        kept = _capped((i.ref for i in incidents), MAX_EVIDENCE - 1)
        return [
            Finding(
                self.rule_id,
                event.environment,
                event.release,
                event.event_id,
                "medium",
                (ref, *kept),
                summary,
                1 + len(incidents),
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
