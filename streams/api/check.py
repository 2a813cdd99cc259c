"""The verdict for a change about to happen: ``allow``, ``warn`` or ``deny``, with reasons.

One implementation of the rules: the check builds the deploy (or rollback) that is
about to happen as an event, asks the service's engine which alerts the rules would
produce if it came now (:meth:`ServiceEngine.preview`, on a copy of the state), and
maps them through the :class:`~streams.api.policy.Policy`. The hypothetical event:

* ``occurred_at`` = now, or the newest event time of the service when that is later;
* ``status`` succeeded, ``source`` ``relsec-check``, ``previous_release`` the release
  running in that environment, ``team`` / ``actor`` / aliases from the request;
* ``event_id`` ``relsec-check:`` + a hash of what was asked and when (it never enters
  any state: the engine is not changed by a preview).

Each reason names the rule, its verdict and summary, and what made it fire: the active
flags (with their CVE ids), the incident-linked rollback that rolled back from the
release, the open incidents of the environment. The recommendation is the one the
most severe recommending alert carries (SPEC §3), judged with the change applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from agents.engine import ServiceEngine
from agents.engine.state import FlagRecord, ServiceState
from agents.errors import ValidationError
from agents.model.alerts import SEVERITIES, Alert
from agents.model.events import Deploy, parse_event
from agents.model.timefmt import format_rfc3339_ms
from streams.api.policy import FLAG_SEVERITY_RULES, Policy, worst
from streams.api.readmodel import evaluation_time, flag_obj, open_incidents_of

ACTIONS: Final = ("deploy", "rollback")
CHECK_SOURCE: Final = "relsec-check"
FLAGS_PER_REASON: Final = 50


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """What is about to happen."""

    service: str
    environment: str
    release: str
    action: str = "deploy"
    team: str | None = None
    actor: str | None = None
    aliases: tuple[str, ...] = ()

    @staticmethod
    def from_params(params: dict[str, Any]) -> CheckRequest:
        """From query parameters or a JSON body; :class:`ValidationError` names the field."""

        def text(name: str, required: bool = True) -> str | None:
            value = params.get(name)
            if value is None or value == "":
                if required:
                    raise ValidationError(name, "missing", "is required")
                return None
            if not isinstance(value, str):
                kind = type(value).__name__
                raise ValidationError(name, "wrong_type", f"must be a string, got {kind}")
            return value

        action = text("action", required=False) or "deploy"
        if action not in ACTIONS:
            raise ValidationError(
                "action", "unknown_enum", f"{action!r} is not one of deploy, rollback"
            )
        raw_aliases = params.get("aliases") or ()
        if isinstance(raw_aliases, str):
            raw_aliases = [a for a in raw_aliases.split(",") if a]
        if not isinstance(raw_aliases, list | tuple) or not all(
            isinstance(a, str) for a in raw_aliases
        ):
            raise ValidationError("aliases", "wrong_type", "must be a list of strings")
        return CheckRequest(
            service=text("service") or "",
            environment=text("environment") or "",
            release=text("release") or "",
            action=action,
            team=text("team", required=False),
            actor=text("actor", required=False),
            aliases=tuple(raw_aliases),
        )


def hypothetical_deploy(request: CheckRequest, engine: ServiceEngine | None, at_ms: int) -> Deploy:
    """The change as an event, validated like any input (limits, enums)."""
    env = engine.head.peek_env(request.environment) if engine is not None else None
    digest = hashlib.sha256(
        "\x1f".join(
            (request.service, request.environment, request.release, request.action, str(at_ms))
        ).encode("utf-8")
    ).hexdigest()[:24]
    obj = {
        "type": "deploy",
        "event_id": f"{CHECK_SOURCE}:{digest}",
        "occurred_at": format_rfc3339_ms(at_ms),
        "source": CHECK_SOURCE,
        "service": request.service,
        "environment": request.environment,
        "release": request.release,
        "previous_release": env.running if env is not None else None,
        "action": request.action,
        "status": "succeeded",
        "team": request.team,
        "actor": request.actor,
        "reason": "relsec check",
        "incident_id": None,
        "release_aliases": list(request.aliases),
    }
    event = parse_event(obj)
    assert isinstance(event, Deploy)
    return event


def _flags_by_event(state: ServiceState) -> dict[str, FlagRecord]:
    return {f.ref.event_id: f for flags in state.flags.values() for f in flags.active.values()}


def _worst_severity(flags: Sequence[FlagRecord]) -> str | None:
    if not flags:
        return None
    return max((f.severity for f in flags), key=SEVERITIES.index)


def reason_for(
    alert: Alert, state: ServiceState, request: CheckRequest, policy: Policy
) -> dict[str, Any]:
    """One fired rule as a reason: its verdict and what made it fire."""
    env = state.peek_env(request.environment)
    flags_by_event = _flags_by_event(state)
    flags = [
        flags_by_event[e.event_id]
        for e in alert.evidence
        if e.type == "security_flag" and e.event_id in flags_by_event
    ]
    rollback_refs = {e.event_id for e in alert.evidence if e.type == "deploy"}
    rollbacks = [
        {
            "event_id": r.ref.event_id,
            "occurred_at": format_rfc3339_ms(r.ms),
            "from_release": r.from_release,
            "incident_id": r.incident_id,
        }
        for r in (env.linked_rollbacks if env is not None else ())
        if r.ref.event_id in rollback_refs
    ]
    incidents = open_incidents_of(env)
    keyed_by = (
        _worst_severity(flags) if alert.rule in FLAG_SEVERITY_RULES else None
    ) or alert.severity
    flags.sort(key=lambda f: (-SEVERITIES.index(f.severity), f.flag_id))
    cves: list[str] = []
    for f in flags:
        for name in (f.flag_id, *f.vulnerabilities):
            if name not in cves:
                cves.append(name)
    return {
        "rule": alert.rule,
        "verdict": policy.verdict_for(alert.rule, keyed_by),
        "severity": alert.severity,
        "policy_key": keyed_by,
        "summary": alert.summary,
        "flags": [flag_obj(f, alert.release) for f in flags[:FLAGS_PER_REASON]],
        "flag_count": len(flags),
        "vulnerabilities": cves[:FLAGS_PER_REASON],
        "rollbacks": rollbacks,
        "open_incidents": incidents,
        "recommendation": alert.recommendation.to_dict() if alert.recommendation else None,
    }


def run_check(
    engine: ServiceEngine | None,
    request: CheckRequest,
    policy: Policy,
    now_ms: int,
) -> dict[str, Any]:
    """The verdict of a change (see the module docstring for the answer's fields)."""
    at_ms = evaluation_time(engine, now_ms)
    event = hypothetical_deploy(request, engine, at_ms)
    known = engine is not None
    state = engine.head if engine is not None else ServiceState()
    env = state.peek_env(request.environment)
    if engine is None:
        alerts: tuple[Alert, ...] = ()
    else:
        alerts = engine.preview(event, now_ms)
    ranked = sorted(alerts, key=lambda a: (-SEVERITIES.index(a.severity), a.rule))
    reasons = [reason_for(a, state, request, policy) for a in ranked]
    verdicts = [r["verdict"] for r in reasons]
    if not known:
        verdicts.append(policy.unknown_service)
    verdict = worst(verdicts)
    recommendation = next(
        (r["recommendation"] for r in reasons if r["recommendation"] is not None), None
    )
    return {
        "verdict": verdict,
        "service": request.service,
        "environment": request.environment,
        "release": request.release,
        "action": request.action,
        "evaluated_at": format_rfc3339_ms(at_ms),
        "known_service": known,
        "running_release": env.running if env is not None else None,
        "open_incidents": open_incidents_of(env),
        "reasons": reasons,
        "recommendation": recommendation,
        "policy": policy.source,
    }


def verdict_text(answer: dict[str, Any]) -> str:
    """A few lines for a person (the CLI, a GitHub review comment)."""
    head = (
        f"{answer['verdict'].upper()}: {answer['action']} of {answer['service']} "
        f"{answer['environment']} to {answer['release']}"
    )
    lines = [head]
    if not answer.get("known_service", True):
        lines.append("  relsec has no state for this service (no events seen)")
    for r in answer["reasons"]:
        lines.append(f"  [{r['verdict']}] {r['rule']} ({r['severity']}): {r['summary']}")
        if r["vulnerabilities"]:
            more = r["flag_count"] - len(r["flags"])
            extra = f" and {more} more flags" if more > 0 else ""
            lines.append(f"      flags: {', '.join(r['vulnerabilities'][:12])}{extra}")
        for rb in r["rollbacks"]:
            during = f" during {rb['incident_id']}" if rb["incident_id"] else ""
            lines.append(
                f"      rolled back from {rb['from_release']}{during} at {rb['occurred_at']}"
            )
    for i in answer["open_incidents"]:
        lines.append(f"  open incident: {i['incident_id']} ({i['severity']}, {i['status']})")
    rec = answer.get("recommendation")
    if rec:
        target = rec["release"] or "no release qualifies"
        lines.append(f"  recommended release: {target} — {rec['text']}")
    if not answer["reasons"]:
        lines.append("  no rule would fire")
    return "\n".join(lines)
