"""How one event changes a service's state (no rule evaluation here).

``apply`` is the single place the state moves; the rules read the state as it
was before the event, recommendations read it after. Replaying the same
events through ``apply`` from the same state always gives the same state.
"""

from __future__ import annotations

from agents.engine.state import (
    DeployRecord,
    EnvState,
    FlagRecord,
    IncidentRecord,
    RollbackRecord,
    ServiceState,
)
from agents.model.alerts import Evidence
from agents.model.events import Deploy, Event, Incident, SecurityFlag


def evidence_of(event: Event) -> Evidence:
    return Evidence(event.event_id, event.type, event.occurred_at_ms)


def is_reversal(env: EnvState | None, release: str) -> bool:
    """A→B→A: the deploy two back ran ``release``, the one in between did not."""
    if env is None or len(env.deploys) < 2:
        return False
    return env.deploys[-2].release == release and env.deploys[-1].release != release


def rolled_back_from(env: EnvState | None, deploy: Deploy) -> str | None:
    """The release a rollback rolled back from: ``previous_release``, else what ran before."""
    if deploy.previous_release is not None:
        return deploy.previous_release
    return env.running if env is not None else None


def linked_incident(env: EnvState | None, deploy: Deploy) -> tuple[bool, str | None]:
    """Whether a rollback is incident-linked, and the incident it is linked to."""
    if deploy.incident_id is not None:
        return True, deploy.incident_id
    if env is not None and env.open_incidents:
        return True, next(iter(env.open_incidents))
    return False, None


def apply(state: ServiceState, event: Event) -> None:
    """Move ``state`` past ``event``."""
    if isinstance(event, Deploy):
        _apply_deploy(state, event)
    elif isinstance(event, Incident):
        _apply_incident(state, event)
    else:
        _apply_flag(state, event)


def _apply_deploy(state: ServiceState, d: Deploy) -> None:
    if d.status != "succeeded":
        return
    env = state.env(d.environment)
    ref = evidence_of(d)
    if d.action == "rollback":
        linked, incident_id = linked_incident(env, d)
        source = rolled_back_from(env, d)
        if linked and source is not None:
            env.linked_rollbacks.append(RollbackRecord(d.occurred_at_ms, source, incident_id, ref))
    env.deploys.append(DeployRecord(d.occurred_at_ms, d.release, is_reversal(env, d.release), ref))
    env.running = d.release
    env.running_ref = ref
    releases = state.releases
    releases.pop(d.release, None)  # re-insert: the dict stays in deploy order
    releases[d.release] = d.occurred_at_ms


def _apply_incident(state: ServiceState, i: Incident) -> None:
    for env in state.envs.values():
        if i.incident_id in env.open_incidents:
            del env.open_incidents[i.incident_id]
            break
    if i.status != "resolved":
        state.env(i.environment).open_incidents[i.incident_id] = IncidentRecord(
            i.incident_id, i.status, i.severity, evidence_of(i)
        )


def _apply_flag(state: ServiceState, f: SecurityFlag) -> None:
    if f.status == "raised":
        flags = state.flags.setdefault(f.release, {})
        flags.pop(f.flag_id, None)  # re-insert: the dict stays in raise order
        flags[f.flag_id] = FlagRecord(
            f.flag_id,
            f.release,
            f.severity,
            f.vulnerabilities,
            f.fixed_in,
            evidence_of(f),
        )
        return
    current = state.flags.get(f.release)
    if current is not None and f.flag_id in current:
        del current[f.flag_id]
        if not current:
            del state.flags[f.release]
