"""The recommended release of an alert (SPEC §3, "Recommendation").

Judged over the events up to and including the trigger: a release of the
service, other than the alert's own, with no active flag, that no
incident-linked rollback on the alert's (service, environment) rolled back
from within the last 7 days. Candidates: the ``fixed_in`` of active flags on
the alert's release (newest flag first), then releases seen deployed for the
service in any environment, most recently deployed first (the
``max_releases`` most recent of them; see :func:`candidates`).
"""

from __future__ import annotations

from agents.engine.state import ServiceState
from agents.engine.windows import REDEPLOY_WINDOW_MS, within_before
from agents.model.alerts import Recommendation


def candidates(state: ServiceState, release: str, max_releases: int) -> list[str]:
    """Candidate releases in order of preference, without repeats.

    Only the ``max_releases`` most recently deployed releases are considered: the
    state keeps at least those (pruning drops older ones, at times that depend on
    arrival), so cutting here makes the answer the same whether or not, and
    whenever, pruning ran.
    """
    ordered: dict[str, None] = {}
    for flag in state.active_flags(release):
        if flag.fixed_in is not None:
            ordered.setdefault(flag.fixed_in, None)
    for seen in state.releases_most_recent_first()[:max_releases]:
        ordered.setdefault(seen, None)
    return list(ordered)


def recommend(
    state: ServiceState,
    service: str,
    environment: str,
    release: str,
    trigger_ms: int,
    max_releases: int,
) -> Recommendation:
    env = state.peek_env(environment)
    recently_rolled_back = (
        {
            r.from_release
            for r in env.linked_rollbacks
            if within_before(r.ms, trigger_ms, REDEPLOY_WINDOW_MS)
        }
        if env is not None
        else set()
    )
    for candidate in candidates(state, release, max_releases):
        if candidate == release or state.has_active_flag(candidate):
            continue
        if candidate in recently_rolled_back:
            continue
        return Recommendation(
            candidate,
            f"Move {service} {environment} to {candidate}: it has no active security flag and "
            "was not rolled back during an incident in the last 7 days.",
        )
    return Recommendation(
        None,
        f"No release of {service} is both free of active security flags and clear of "
        "incident-linked rollbacks in the last 7 days: SRE and security must coordinate "
        "a roll-forward fix.",
    )
