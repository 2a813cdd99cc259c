"""The compact state of one service as of a point in the order: what the rules ask about.

Everything the eight rules need is summarized here, per service (flags are
per service and cross environments) and per (service, environment):

* the running release and the deploy that made it run;
* the recent succeeded deploys (for reversals and the 24 h flip-flop window);
* the open incidents;
* the incident-linked rollbacks of the last 7 days;
* the active flags (an inactive flag is the same as no flag, so it is dropped);
* the most recently deployed releases (recommendation candidates);
* the shared-identity alerts already owned by finalized events.

Records are immutable; containers are copied by :meth:`ServiceState.copy`.
:meth:`prune` drops what no evaluation at or after a frontier can need, and
:meth:`to_obj` / :meth:`from_obj` give a JSON-able form for snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.engine.windows import FLIP_FLOP_WINDOW_MS, REDEPLOY_WINDOW_MS
from agents.errors import StateError
from agents.model.alerts import Evidence

OrderKey = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class DeployRecord:
    """A succeeded deploy (either action) on one environment."""

    ms: int
    release: str
    reversal: bool
    ref: Evidence


@dataclass(frozen=True, slots=True)
class RollbackRecord:
    """An incident-linked rollback and the release it rolled back from."""

    ms: int
    from_release: str
    incident_id: str | None
    ref: Evidence


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """The last event of an open incident."""

    incident_id: str
    status: str
    severity: str
    ref: Evidence


@dataclass(frozen=True, slots=True)
class FlagRecord:
    """An active flag: the last raise of (release, flag_id)."""

    flag_id: str
    release: str
    severity: str
    vulnerabilities: tuple[str, ...]
    fixed_in: str | None
    ref: Evidence


class EnvState:
    """What the rules need about one (service, environment)."""

    __slots__ = ("deploys", "linked_rollbacks", "open_incidents", "running", "running_ref")

    def __init__(self) -> None:
        self.running: str | None = None
        self.running_ref: Evidence | None = None
        self.deploys: list[DeployRecord] = []
        self.open_incidents: dict[str, IncidentRecord] = {}
        self.linked_rollbacks: list[RollbackRecord] = []

    def copy(self) -> EnvState:
        new = EnvState()
        new.running = self.running
        new.running_ref = self.running_ref
        new.deploys = list(self.deploys)
        new.open_incidents = dict(self.open_incidents)
        new.linked_rollbacks = list(self.linked_rollbacks)
        return new

    def is_empty(self) -> bool:
        return (
            self.running is None
            and not self.deploys
            and not self.open_incidents
            and not self.linked_rollbacks
        )


class ServiceState:
    """The summary state of one service."""

    __slots__ = ("envs", "fired_shared", "flags", "releases")

    def __init__(self) -> None:
        self.envs: dict[str, EnvState] = {}
        self.flags: dict[str, dict[str, FlagRecord]] = {}
        self.releases: dict[str, int] = {}  # release -> time of its last succeeded deploy
        self.fired_shared: dict[str, int] = {}

    # -- queries -------------------------------------------------------------

    def env(self, environment: str) -> EnvState:
        state = self.envs.get(environment)
        if state is None:
            state = self.envs[environment] = EnvState()
        return state

    def peek_env(self, environment: str) -> EnvState | None:
        return self.envs.get(environment)

    def active_flags(self, release: str) -> list[FlagRecord]:
        """Active flags on a release, newest raise first.

        :func:`~agents.engine.transitions.apply` re-inserts a flag on every raise and
        events are applied in order, so each release's dict is in raise order."""
        flags = self.flags.get(release)
        if not flags:
            return []
        return list(reversed(flags.values()))

    def has_active_flag(self, release: str) -> bool:
        return bool(self.flags.get(release))

    def releases_most_recent_first(self) -> list[str]:
        """Releases in the order of their last succeeded deploy, newest first
        (``apply`` re-inserts a release on every deploy)."""
        return list(reversed(self.releases))

    # -- copying and pruning --------------------------------------------------

    def copy(self) -> ServiceState:
        new = ServiceState()
        new.envs = {name: env.copy() for name, env in self.envs.items()}
        new.flags = {release: dict(flags) for release, flags in self.flags.items()}
        new.releases = dict(self.releases)
        new.fired_shared = dict(self.fired_shared)
        return new

    def prune(self, frontier_ms: int, alert_memory_ms: int, max_releases: int) -> None:
        """Drop what no evaluation at or after ``frontier_ms`` can need.

        * deploys older than the flip-flop window before the frontier, keeping
          the last two (a reversal looks two deploys back however old);
        * incident-linked rollbacks older than 7 days before the frontier;
        * environments left with nothing;
        * shared-identity memory older than ``alert_memory_ms``;
        * recommendation candidates beyond the ``max_releases`` most recent.
        """
        deploy_edge = frontier_ms - FLIP_FLOP_WINDOW_MS
        rollback_edge = frontier_ms - REDEPLOY_WINDOW_MS
        for name in list(self.envs):
            env = self.envs[name]
            if len(env.deploys) > 2:
                keep_from = 0
                limit = len(env.deploys) - 2
                while keep_from < limit and env.deploys[keep_from].ms <= deploy_edge:
                    keep_from += 1
                if keep_from:
                    del env.deploys[:keep_from]
            if env.linked_rollbacks and env.linked_rollbacks[0].ms < rollback_edge:
                env.linked_rollbacks = [r for r in env.linked_rollbacks if r.ms >= rollback_edge]
            if env.is_empty():
                del self.envs[name]
        if self.fired_shared:
            memory_edge = frontier_ms - alert_memory_ms
            self.fired_shared = {k: v for k, v in self.fired_shared.items() if v >= memory_edge}
        if len(self.releases) > max_releases:
            keep = list(self.releases)[-max_releases:]  # oldest first, as the dict keeps them
            self.releases = {r: self.releases[r] for r in keep}

    # -- serialization ---------------------------------------------------------

    def to_obj(self) -> dict[str, Any]:
        """A compact JSON-able form: times that a record shares with its event reference
        are not repeated, and a flag whose only vulnerability is its own id stores none."""
        return {
            "envs": {
                name: {
                    "running": env.running,
                    "running_ref": _ref_obj(env.running_ref),
                    "deploys": [[d.release, int(d.reversal), _ref_obj(d.ref)] for d in env.deploys],
                    "incidents": [
                        [i.incident_id, i.status, i.severity, _ref_obj(i.ref)]
                        for i in env.open_incidents.values()
                    ],
                    "rollbacks": [
                        [r.from_release, r.incident_id, _ref_obj(r.ref)]
                        for r in env.linked_rollbacks
                    ],
                }
                for name, env in self.envs.items()
            },
            "flags": {
                release: [
                    [
                        f.flag_id,
                        f.severity,
                        None if f.vulnerabilities == (f.flag_id,) else list(f.vulnerabilities),
                        f.fixed_in,
                        _ref_obj(f.ref),
                    ]
                    for f in flags.values()
                ]
                for release, flags in self.flags.items()
            },
            "releases": [[r, ms] for r, ms in self.releases.items()],
            "fired_shared": self.fired_shared,
        }

    @staticmethod
    def from_obj(obj: Any) -> ServiceState:
        try:
            state = ServiceState()
            for name, e in obj["envs"].items():
                env = state.env(name)
                env.running = e["running"]
                env.running_ref = _ref_from(e["running_ref"])
                for rel, rev, ref in e["deploys"]:
                    r = _ref_req(ref)
                    env.deploys.append(DeployRecord(r.occurred_at_ms, rel, bool(rev), r))
                env.open_incidents = {
                    iid: IncidentRecord(iid, st, sev, _ref_req(ref))
                    for iid, st, sev, ref in e["incidents"]
                }
                for rel, iid, ref in e["rollbacks"]:
                    r = _ref_req(ref)
                    env.linked_rollbacks.append(RollbackRecord(r.occurred_at_ms, rel, iid, r))
            for release, records in obj["flags"].items():
                flags = state.flags[release] = {}
                for fid, sev, vulns, fixed, ref in records:
                    flags[fid] = FlagRecord(
                        fid, release, sev, (fid,) if vulns is None else tuple(vulns), fixed,
                        _ref_req(ref),
                    )
            state.releases = {r: int(ms) for r, ms in obj["releases"]}
            state.fired_shared = dict(obj["fired_shared"])
            return state
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise StateError(f"service state is malformed: {exc!r}") from None


def _ref_obj(ref: Evidence | None) -> list[Any] | None:
    if ref is None:
        return None
    return [ref.event_id, ref.type, ref.occurred_at_ms]


def _ref_from(obj: Any) -> Evidence | None:
    if obj is None:
        return None
    return Evidence(str(obj[0]), str(obj[1]), int(obj[2]))


def _ref_req(obj: Any) -> Evidence:
    ref = _ref_from(obj)
    if ref is None:
        raise ValueError("missing event reference")
    return ref
