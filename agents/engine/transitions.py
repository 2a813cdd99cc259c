"""How one event changes a service's state (no rule evaluation here).

Two steps, because SPEC §8 makes an event's own links visible to the rules at it:

* :func:`link` joins the event's release with its aliases ("the events before it and
  the event itself"); the engine runs it *before* the rules;
* :func:`apply_effects` moves everything else past the event; the rules read the state
  before it, recommendations after it.

:func:`apply` is both, for events that are only replayed. Replaying the same events
through ``apply`` from the same state always gives the same state.
"""

from __future__ import annotations

from agents.engine.names import ReleaseNamePolicy
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


def named_release(event: Event) -> str | None:
    """The release an event names: ``release``, or an incident's ``suspected_release``."""
    if isinstance(event, Incident):
        return event.suspected_release
    return event.release


def link(state: ServiceState, event: Event, policy: ReleaseNamePolicy) -> None:
    """SPEC §8: the event links its release with each of its aliases.

    Mutable names never link. When the release itself is mutable (or an incident names
    none), the aliases that are left still name one release at this event, so they are
    linked with each other; the mutable name stays a class of its own.
    """
    if not event.release_aliases:
        return
    release = named_release(event)
    names = policy.linkable(
        event.release_aliases if release is None else (release, *event.release_aliases)
    )
    if len(names) < 2:
        return
    first = names[0]
    for other in names[1:]:
        state.link(first, other, policy)


def is_reversal(state: ServiceState, deploys: list[DeployRecord], at: int, release: str) -> bool:
    """A→B→A: the succeeded deploy two before position ``at`` ran the same release as
    ``release``, the one in between did not (same = linked at the point of evaluation)."""
    if at < 2:
        return False
    same = state.names.same
    return same(deploys[at - 2].release, release) and not same(deploys[at - 1].release, release)


def rolled_back_from(env: EnvState | None, deploy: Deploy) -> str | None:
    """The release a rollback rolled back from: ``previous_release``, else what ran before.

    SPEC §2 as written, also for a rollback "from R to R" (``previous_release`` its own
    release): the shared scenarios expect it (docs/decisions.md)."""
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


def apply(
    state: ServiceState, event: Event, policy: ReleaseNamePolicy, ref: Evidence | None = None
) -> None:
    """Move ``state`` past ``event``: its links, then its effects."""
    link(state, event, policy)
    apply_effects(state, event, evidence_of(event) if ref is None else ref)


def apply_effects(state: ServiceState, event: Event, ref: Evidence) -> None:
    """Move ``state`` past ``event``, its links already made; ``ref`` is its evidence
    reference (the records of the event share it)."""
    if isinstance(event, Deploy):
        _apply_deploy(state, event, ref)
    elif isinstance(event, Incident):
        _apply_incident(state, event, ref)
    else:
        _apply_flag(state, event, ref)


def _apply_deploy(state: ServiceState, d: Deploy, ref: Evidence) -> None:
    if d.status != "succeeded":
        return
    env = state.env(d.environment)
    if d.action == "rollback":
        linked, incident_id = linked_incident(env, d)
        source = rolled_back_from(env, d)
        if linked and source is not None:
            env.add_rollback(RollbackRecord(d.occurred_at_ms, source, incident_id, ref))
    env.deploys.append(DeployRecord(d.occurred_at_ms, d.release, ref))
    env.running = d.release
    env.running_ref = ref
    releases = state.releases
    releases.pop(d.release, None)  # re-insert: the dict stays in deploy order
    releases[d.release] = d.occurred_at_ms


def _apply_incident(state: ServiceState, i: Incident, ref: Evidence) -> None:
    for env in state.envs.values():
        if env.close_incident(i.incident_id):
            break
    if i.status != "resolved":
        state.env(i.environment).open_incident(
            IncidentRecord(i.incident_id, i.status, i.severity, ref)
        )


def _apply_flag(state: ServiceState, f: SecurityFlag, ref: Evidence) -> None:
    root = state.names.find(f.release)
    if f.status == "raised":
        state.own_flags(root).raise_flag(
            FlagRecord(f.flag_id, f.severity, f.vulnerabilities, f.fixed_in, ref)
        )
        return
    # The end is kept as a tombstone: once linked with another name on which the flag is
    # active, the later of the two last events decides (pruning drops useless ones).
    state.own_flags(root).end_flag(f.flag_id, (f.occurred_at_ms, f.event_id), True)
