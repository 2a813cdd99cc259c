"""The recommended release of an alert (SPEC §3, "Recommendation").

Judged over the events up to and including the trigger: a release of the
service, other than the alert's own, with no active flag, that no
incident-linked rollback on the alert's (service, environment) rolled back
from within the last 7 days. Candidates: the ``fixed_in`` of active flags on
the alert's release (newest flag first), then releases seen deployed for the
service in any environment, most recently deployed first (the
``max_releases`` most recent of them; see :func:`candidates`).

Releases are compared as SPEC §8 says (the same release when linked at the trigger): two
candidates of one release are one candidate, and the recommended release is shown by the
name its newest deploy used.
"""

from __future__ import annotations

from functools import lru_cache

from agents.engine.state import ServiceState
from agents.engine.windows import REDEPLOY_WINDOW_MS
from agents.model.alerts import Recommendation


def candidates(state: ServiceState, release: str, max_releases: int) -> list[str]:
    """Candidate release names in order of preference, without repeats.

    Only the ``max_releases`` most recently deployed release names are considered: the
    state keeps at least those (pruning drops older ones, at times that depend on
    arrival), so cutting here makes the answer the same whether or not, and
    whenever, pruning ran.
    """
    ordered: dict[str, None] = {}
    flags = state.flags_of(release)
    if flags is not None and flags.fixes:
        for fixed_in in flags.fixed_in_newest_first():
            ordered.setdefault(fixed_in, None)
    for seen in state.releases_most_recent_first(max_releases):
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
    names = state.names
    env = state.peek_env(environment)
    since_ms = trigger_ms - REDEPLOY_WINDOW_MS  # "within the last 7 days", edge included
    judged = {names.find(release)}
    for candidate in candidates(state, release, max_releases):
        root = names.find(candidate)
        if root in judged:
            continue
        judged.add(root)
        if state.has_active_flag(candidate):
            continue
        if (
            env is not None
            and env.linked_rollbacks
            and env.rolled_back_from_since(names.members(candidate), since_ms)
        ):
            continue
        return _move_to(service, environment, state.display_name(candidate, max_releases))
    return _no_release(service)


@lru_cache(maxsize=4096)
def _move_to(service: str, environment: str, release: str) -> Recommendation:
    return Recommendation(
        release,
        f"Move {service} {environment} to {release}: it has no active security flag and "
        "was not rolled back during an incident in the last 7 days.",
    )


@lru_cache(maxsize=4096)
def _no_release(service: str) -> Recommendation:
    return Recommendation(
        None,
        f"No release of {service} is both free of active security flags and clear of "
        "incident-linked rollbacks in the last 7 days: SRE and security must coordinate "
        "a roll-forward fix.",
    )
