"""The compact state of one service as of a point in the order: what the rules ask about.

Everything the eight rules need is summarized here, per service (flags are per service
and cross environments) and per (service, environment):

* the running release and the deploy that made it run;
* the recent succeeded deploys (for reversals and the 24 h flip-flop window);
* the open incidents;
* the incident-linked rollbacks of the last 7 days;
* the flags of each release, indexed so that a rule's question costs the same whatever
  the number of flags (most severe first, newest first, by ``fixed_in``);
* the most recently deployed release names (recommendation candidates);
* which release names are the same release (:class:`~agents.engine.names.ReleaseNames`).

Flags are kept per release *class* (all names of one release, keyed by the class root).
A flag's order is its last event's order key (``occurred_at``, ``event_id``: flags share
one type rank), so when a link joins two classes each flag keeps the later of its two
last events. That needs the end of a flag (cleared, risk accepted) remembered while
another class may hold the same flag active: a *tombstone*.

Records are immutable. :meth:`ServiceState.copy` copies the per-environment containers
and shares the per-release flag sets and the names copy-on-write. :meth:`prune` drops
what no evaluation at or after a frontier can need; :meth:`to_obj` / :meth:`from_obj`
give a JSON-able form for snapshots (and read the version 1 form).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any, ClassVar, Final

from agents.engine.names import ReleaseNamePolicy, ReleaseNames
from agents.engine.windows import FLIP_FLOP_WINDOW_MS, REDEPLOY_WINDOW_MS
from agents.errors import StateError
from agents.model.alerts import Evidence
from agents.model.values import Value

OrderKey = tuple[int, int, str]
FlagOrder = tuple[int, str]
"""The order of a flag event among flag events: ``(occurred_at, event_id)``."""

SEVERITY_ORDER: Final = ("critical", "high", "medium", "low")
"""Flag severities, most severe first."""


class DeployRecord(Value):
    """A succeeded deploy (either action) on one environment."""

    FIELDS: ClassVar[tuple[str, ...]] = ("ms", "release", "ref")
    __slots__ = FIELDS

    def __init__(self, ms: int, release: str, ref: Evidence) -> None:
        self.ms: Final = ms
        self.release: Final = release
        self.ref: Final = ref

    def values(self) -> tuple[object, ...]:
        return (self.ms, self.release, self.ref)


class RollbackRecord(Value):
    """An incident-linked rollback and the release it rolled back from."""

    FIELDS: ClassVar[tuple[str, ...]] = ("ms", "from_release", "incident_id", "ref")
    __slots__ = FIELDS

    def __init__(self, ms: int, from_release: str, incident_id: str | None, ref: Evidence) -> None:
        self.ms: Final = ms
        self.from_release: Final = from_release
        self.incident_id: Final = incident_id
        self.ref: Final = ref

    def values(self) -> tuple[object, ...]:
        return (self.ms, self.from_release, self.incident_id, self.ref)


class IncidentRecord(Value):
    """The last event of an open incident."""

    FIELDS: ClassVar[tuple[str, ...]] = ("incident_id", "status", "severity", "ref")
    __slots__ = FIELDS

    def __init__(self, incident_id: str, status: str, severity: str, ref: Evidence) -> None:
        self.incident_id: Final = incident_id
        self.status: Final = status
        self.severity: Final = severity
        self.ref: Final = ref

    def values(self) -> tuple[object, ...]:
        return (self.incident_id, self.status, self.severity, self.ref)


class FlagRecord(Value):
    """An active flag: the last raise of (release, flag_id)."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "flag_id",
        "severity",
        "vulnerabilities",
        "fixed_in",
        "ref",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        flag_id: str,
        severity: str,
        vulnerabilities: tuple[str, ...],
        fixed_in: str | None,
        ref: Evidence,
    ) -> None:
        self.flag_id: Final = flag_id
        self.severity: Final = severity
        self.vulnerabilities: Final = vulnerabilities
        self.fixed_in: Final = fixed_in
        self.ref: Final = ref

    def values(self) -> tuple[object, ...]:
        return (self.flag_id, self.severity, self.vulnerabilities, self.fixed_in, self.ref)

    @property
    def order(self) -> FlagOrder:
        return (self.ref.occurred_at_ms, self.ref.event_id)


_NO_INCIDENTS: Final[dict[str, IncidentRecord]] = {}
_NO_ROLLBACKS: Final[list[RollbackRecord]] = []
_NO_ROLLED_BACK: Final[dict[str, list[RollbackRecord]]] = {}


def _rollback_ms(record: RollbackRecord) -> int:
    return record.ms


def _rollback_order(record: RollbackRecord) -> tuple[int, str]:
    return (record.ms, record.ref.event_id)


class EnvState:
    """What the rules need about one (service, environment).

    ``open_incidents`` and ``linked_rollbacks`` start as shared empty containers (most
    environments have neither): change them through the methods only. Rollbacks are
    also indexed by the release they rolled back from (``rolled_back``, each list in
    time order), so "rolled back from R" costs a lookup per name of R, not a scan."""

    __slots__ = (
        "deploys",
        "linked_rollbacks",
        "open_incidents",
        "rolled_back",
        "running",
        "running_ref",
    )

    def __init__(self) -> None:
        self.running: str | None = None
        self.running_ref: Evidence | None = None
        self.deploys: list[DeployRecord] = []
        self.open_incidents: dict[str, IncidentRecord] = _NO_INCIDENTS
        self.linked_rollbacks: list[RollbackRecord] = _NO_ROLLBACKS
        self.rolled_back: dict[str, list[RollbackRecord]] = _NO_ROLLED_BACK

    def copy(self) -> EnvState:
        new = EnvState()
        new.running = self.running
        new.running_ref = self.running_ref
        new.deploys = list(self.deploys)
        if self.open_incidents:
            new.open_incidents = dict(self.open_incidents)
        if self.linked_rollbacks:
            new.linked_rollbacks = list(self.linked_rollbacks)
            new.rolled_back = {name: list(rs) for name, rs in self.rolled_back.items()}
        return new

    def rollbacks_from(self, names: tuple[str, ...], since_ms: int) -> list[RollbackRecord]:
        """The incident-linked rollbacks from any of ``names`` at or after ``since_ms``,
        in time order."""
        found: list[RollbackRecord] = []
        for name in names:
            records = self.rolled_back.get(name)
            if records:
                start = bisect.bisect_left(records, since_ms, key=_rollback_ms)
                found.extend(records[start:])
        if len(names) > 1:
            found.sort(key=_rollback_order)
        return found

    def rolled_back_from_since(self, names: tuple[str, ...], since_ms: int) -> bool:
        """Whether any incident-linked rollback from one of ``names`` is at or after
        ``since_ms``."""
        for name in names:
            records = self.rolled_back.get(name)
            if records and records[-1].ms >= since_ms:
                return True
        return False

    def open_incident(self, record: IncidentRecord) -> None:
        if self.open_incidents is _NO_INCIDENTS:
            self.open_incidents = {}
        self.open_incidents[record.incident_id] = record

    def close_incident(self, incident_id: str) -> bool:
        """Forget an open incident; whether it was open here."""
        if incident_id not in self.open_incidents:
            return False
        del self.open_incidents[incident_id]
        return True

    def add_rollback(self, record: RollbackRecord) -> None:
        """Record a rollback (they come in time order)."""
        if self.linked_rollbacks is _NO_ROLLBACKS:
            self.linked_rollbacks = []
            self.rolled_back = {}
        self.linked_rollbacks.append(record)
        self.rolled_back.setdefault(record.from_release, []).append(record)

    def drop_rollbacks_before(self, edge_ms: int) -> None:
        kept = [r for r in self.linked_rollbacks if r.ms >= edge_ms]
        self.linked_rollbacks = _NO_ROLLBACKS
        self.rolled_back = _NO_ROLLED_BACK
        for record in kept:
            self.add_rollback(record)

    def is_empty(self) -> bool:
        return (
            self.running is None
            and not self.deploys
            and not self.open_incidents
            and not self.linked_rollbacks
        )


_NO_FIXES: Final[dict[str, dict[str, FlagRecord]]] = {}
_NO_TOMBSTONES: Final[dict[str, FlagOrder]] = {}


class ReleaseFlags:
    """The flags of one release class: active ones indexed three ways, and tombstones.

    ``by_severity[s]`` and ``fixes[x]`` hold their records in flag order (oldest first):
    events are applied in order, and a merge rebuilds them sorted.
    """

    __slots__ = ("active", "by_severity", "cleared", "fixes", "owner")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.active: dict[str, FlagRecord] = {}
        self.by_severity: dict[str, dict[str, FlagRecord]] = {}
        # Few flags name a fix, few classes need tombstones: shared empty until written.
        self.fixes: dict[str, dict[str, FlagRecord]] = _NO_FIXES
        self.cleared: dict[str, FlagOrder] = _NO_TOMBSTONES

    def clone(self, owner: object) -> ReleaseFlags:
        new = ReleaseFlags(owner)
        new.active = dict(self.active)
        new.by_severity = {s: dict(b) for s, b in self.by_severity.items()}
        if self.fixes:
            new.fixes = {x: dict(b) for x, b in self.fixes.items()}
        if self.cleared:
            new.cleared = dict(self.cleared)
        return new

    def is_empty(self) -> bool:
        return not self.active and not self.cleared

    # -- queries -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.active)

    def worst_severity(self) -> str | None:
        for severity in SEVERITY_ORDER:
            if severity in self.by_severity:
                return severity
        return None

    def most_relevant(self) -> Iterator[FlagRecord]:
        """Active flags, most severe first, newest first within a severity."""
        for severity in SEVERITY_ORDER:
            bucket = self.by_severity.get(severity)
            if bucket:
                yield from reversed(bucket.values())

    def fixed_in_newest_first(self) -> list[str]:
        """The distinct ``fixed_in`` of the active flags, by their newest flag first."""
        if len(self.fixes) == 1:
            return list(self.fixes)
        newest = {x: next(reversed(b.values())).order for x, b in self.fixes.items()}
        return sorted(newest, key=newest.__getitem__, reverse=True)

    def in_order(self) -> list[FlagRecord]:
        """Active flags, oldest first."""
        return sorted(self.active.values(), key=lambda f: f.order)

    # -- changes (the caller owns this object) ----------------------------------

    def _unindex(self, record: FlagRecord) -> None:
        bucket = self.by_severity[record.severity]
        del bucket[record.flag_id]
        if not bucket:
            del self.by_severity[record.severity]
        if record.fixed_in is not None:
            fixes = self.fixes[record.fixed_in]
            del fixes[record.flag_id]
            if not fixes:
                del self.fixes[record.fixed_in]

    def _index(self, record: FlagRecord) -> None:
        self.active[record.flag_id] = record
        self.by_severity.setdefault(record.severity, {})[record.flag_id] = record
        if record.fixed_in is not None:
            if self.fixes is _NO_FIXES:
                self.fixes = {}
            self.fixes.setdefault(record.fixed_in, {})[record.flag_id] = record

    def add_tombstone(self, flag_id: str, order: FlagOrder) -> None:
        if self.cleared is _NO_TOMBSTONES:
            self.cleared = {}
        self.cleared[flag_id] = order

    def raise_flag(self, record: FlagRecord) -> None:
        """The newest event of ``record.flag_id`` is this raise."""
        old = self.active.pop(record.flag_id, None)
        if old is not None:
            self._unindex(old)
        self.cleared.pop(record.flag_id, None)
        self._index(record)

    def end_flag(self, flag_id: str, order: FlagOrder, tombstone: bool) -> None:
        """The newest event of ``flag_id`` ends it (cleared or risk accepted)."""
        old = self.active.pop(flag_id, None)
        if old is not None:
            self._unindex(old)
        if tombstone:
            self.add_tombstone(flag_id, order)
        else:
            self.cleared.pop(flag_id, None)

    @staticmethod
    def merged(a: ReleaseFlags, b: ReleaseFlags, owner: object) -> ReleaseFlags:
        """The flags of the class joining ``a`` and ``b``: per flag, the later last event."""
        last: dict[str, FlagRecord | FlagOrder] = {}
        for side in (a, b):
            for flag_id, record in side.active.items():
                other = last.get(flag_id)
                if other is None or _order_of(other) < record.order:
                    last[flag_id] = record
            for flag_id, order in side.cleared.items():
                other = last.get(flag_id)
                if other is None or _order_of(other) < order:
                    last[flag_id] = order
        new = ReleaseFlags(owner)
        actives = [r for r in last.values() if isinstance(r, FlagRecord)]
        for record in sorted(actives, key=lambda f: f.order):
            new._index(record)
        for flag_id, entry in last.items():
            if not isinstance(entry, FlagRecord):
                new.add_tombstone(flag_id, entry)
        return new


def _order_of(entry: FlagRecord | FlagOrder) -> FlagOrder:
    return entry.order if isinstance(entry, FlagRecord) else entry


class ServiceState:
    """The summary state of one service."""

    __slots__ = ("_token", "envs", "flags", "names", "releases", "tombstones_kept")

    def __init__(self) -> None:
        self.envs: dict[str, EnvState] = {}
        self.flags: dict[str, ReleaseFlags] = {}  # class root -> its flags
        self.releases: dict[str, int] = {}  # release name -> time of its last succeeded deploy
        self.names = ReleaseNames()
        self._token = object()  # owner of the ReleaseFlags this state may change in place
        self.tombstones_kept = 0  # after the last pruning of tombstones

    # -- queries -------------------------------------------------------------

    def env(self, environment: str) -> EnvState:
        state = self.envs.get(environment)
        if state is None:
            state = self.envs[environment] = EnvState()
        return state

    def peek_env(self, environment: str) -> EnvState | None:
        return self.envs.get(environment)

    def same_release(self, a: str, b: str) -> bool:
        return a == b or self.names.same(a, b)

    def flags_of(self, release: str) -> ReleaseFlags | None:
        """The flags of ``release``'s class, ``None`` when it has no active flag."""
        flags = self.flags.get(self.names.find(release))
        return flags if flags is not None and flags.active else None

    def has_active_flag(self, release: str) -> bool:
        return self.flags_of(release) is not None

    def is_flag_active(self, release: str, flag_id: str) -> bool:
        flags = self.flags.get(self.names.find(release))
        return flags is not None and flag_id in flags.active

    def releases_most_recent_first(self, limit: int) -> list[str]:
        """The ``limit`` release names of the most recent succeeded deploys, newest first
        (``apply`` re-inserts a name on every deploy)."""
        out: list[str] = []
        for name in reversed(self.releases):
            if len(out) >= limit:
                break
            out.append(name)
        return out

    def display_name(self, release: str, limit: int) -> str:
        """SPEC §8: the name the newest deploy of ``release`` used, else ``release``.

        Deploys are looked for among the ``limit`` most recently deployed names (as the
        recommendation's candidates are), which pruning always keeps."""
        if not self.names.linked(release):
            return release
        for name in self.releases_most_recent_first(limit):
            if self.names.same(name, release):
                return name
        return release

    def other_names(self, release: str, shown: str, limit: int) -> tuple[str, ...]:
        """The other known names of ``release``'s class than ``shown``, sorted, at most
        ``limit``."""
        members = self.names.members(release)
        if len(members) < 2:
            return ()
        return tuple(sorted(m for m in members if m != shown)[:limit])

    # -- changes ---------------------------------------------------------------

    def own_flags(self, root: str) -> ReleaseFlags:
        """The flags of the class ``root``, safe to change in place (cloned if shared)."""
        flags = self.flags.get(root)
        if flags is None:
            flags = self.flags[root] = ReleaseFlags(self._token)
        elif flags.owner is not self._token:
            flags = self.flags[root] = flags.clone(self._token)
        return flags

    def drop_flags_if_empty(self, root: str) -> None:
        flags = self.flags.get(root)
        if flags is not None and flags.is_empty():
            del self.flags[root]

    def link(self, a: str, b: str, policy: ReleaseNamePolicy) -> None:
        """Link two release names (within the policy's caps); on a merge the two classes'
        flags are merged."""
        merged = self.names.union(a, b, policy.max_names_per_release, policy.max_linked_names)
        if merged is None:
            return
        kept, absorbed = merged
        gone = self.flags.pop(absorbed, None)
        if gone is None:
            return
        here = self.flags.get(kept)
        self.flags[kept] = gone if here is None else ReleaseFlags.merged(here, gone, self._token)

    # -- copying and pruning --------------------------------------------------

    def copy(self) -> ServiceState:
        new = ServiceState()
        new.envs = {name: env.copy() for name, env in self.envs.items()}
        new.flags = dict(self.flags)
        new.releases = dict(self.releases)
        new.names = self.names.copy()
        new.tombstones_kept = self.tombstones_kept
        self._token = object()  # both sides now clone a flag set before changing it
        return new

    def prune(self, frontier_ms: int, max_releases: int) -> None:
        """Drop what no evaluation at or after ``frontier_ms`` can need.

        * deploys older than the flip-flop window before the frontier, keeping the two
          before the first one in it (a reversal looks two deploys back however old);
        * incident-linked rollbacks older than 7 days before the frontier;
        * environments left with nothing;
        * tombstones of flags no class holds active (now and then, see
          :meth:`_prune_tombstones`);
        * recommendation candidates beyond the ``max_releases`` most recent.

        Release name links are never pruned (see :mod:`agents.engine.names`).
        """
        deploy_edge = frontier_ms - FLIP_FLOP_WINDOW_MS
        rollback_edge = frontier_ms - REDEPLOY_WINDOW_MS
        for name in list(self.envs):
            env = self.envs[name]
            deploys = env.deploys
            if len(deploys) > 2:
                first_in = 0
                while first_in < len(deploys) and deploys[first_in].ms <= deploy_edge:
                    first_in += 1
                if first_in > 2:
                    del deploys[: first_in - 2]
            if env.linked_rollbacks and env.linked_rollbacks[0].ms < rollback_edge:
                env.drop_rollbacks_before(rollback_edge)
            if env.is_empty():
                del self.envs[name]
        self._prune_tombstones()
        if len(self.releases) > max_releases:
            keep = list(self.releases)[-max_releases:]  # oldest first, as the dict keeps them
            self.releases = {r: self.releases[r] for r in keep}

    def _prune_tombstones(self) -> None:
        """Drop the tombstones of flags no class holds active: every later event of such a
        flag is newer, so the tombstone could never win a merge. Costs O(flags), so it
        runs only when the tombstones doubled since the last time (amortized O(1) per
        ended flag)."""
        tombstones = sum(len(f.cleared) for f in self.flags.values())
        if tombstones <= max(64, 2 * self.tombstones_kept):
            return
        active: set[str] = set()
        for flags in self.flags.values():
            active.update(flags.active)
        for root in [r for r, f in self.flags.items() if f.cleared]:
            stale = [fid for fid in self.flags[root].cleared if fid not in active]
            if stale:
                flags = self.own_flags(root)
                for fid in stale:
                    del flags.cleared[fid]
                self.drop_flags_if_empty(root)
        self.tombstones_kept = sum(len(f.cleared) for f in self.flags.values())

    # -- serialization ---------------------------------------------------------

    def to_obj(self) -> dict[str, Any]:
        """A compact JSON-able form: times that a record shares with its event reference
        are not repeated, and a flag whose only vulnerability is its own id stores none."""
        obj: dict[str, Any] = {
            "envs": {
                name: {
                    "running": env.running,
                    "running_ref": _ref_obj(env.running_ref),
                    "deploys": [[d.release, _ref_obj(d.ref)] for d in env.deploys],
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
            "flags": [
                [
                    root,
                    [
                        [
                            f.flag_id,
                            f.severity,
                            None if f.vulnerabilities == (f.flag_id,) else list(f.vulnerabilities),
                            f.fixed_in,
                            _ref_obj(f.ref),
                        ]
                        for f in flags.in_order()
                    ],
                    [[fid, ms, eid] for fid, (ms, eid) in flags.cleared.items()],
                ]
                for root, flags in self.flags.items()
            ],
            "releases": [[r, ms] for r, ms in self.releases.items()],
        }
        if len(self.names):
            obj["names"] = self.names.to_obj()
        return obj

    @staticmethod
    def from_obj(obj: Any, version: int = 2) -> ServiceState:
        """Read :meth:`to_obj` (``version`` 2) or the version 1 form (flags by release
        name, deploys with a reversal bit, no names)."""
        try:
            state = ServiceState()
            for name, e in obj["envs"].items():
                env = state.env(name)
                env.running = e["running"]
                env.running_ref = _ref_from(e["running_ref"])
                for record in e["deploys"]:
                    rel, ref = (record[0], record[2]) if version == 1 else record
                    r = _ref_req(ref)
                    env.deploys.append(DeployRecord(r.occurred_at_ms, rel, r))
                for iid, st, sev, ref in e["incidents"]:
                    env.open_incident(IncidentRecord(iid, st, sev, _ref_req(ref)))
                for rel, iid, ref in e["rollbacks"]:
                    r = _ref_req(ref)
                    env.add_rollback(RollbackRecord(r.occurred_at_ms, rel, iid, r))
            classes: list[Any]
            if version == 1:
                classes = [(release, records, []) for release, records in obj["flags"].items()]
            else:
                state.names = ReleaseNames.from_obj(obj.get("names", []))
                classes = obj["flags"]
            for root, records, cleared in classes:
                flags = state.own_flags(root)
                for fid, sev, vulns, fixed, ref in records:
                    flags.raise_flag(
                        FlagRecord(
                            fid,
                            sev,
                            (fid,) if vulns is None else tuple(vulns),
                            fixed,
                            _ref_req(ref),
                        )
                    )
                for fid, ms, eid in cleared:
                    flags.add_tombstone(fid, (int(ms), str(eid)))
                state.drop_flags_if_empty(root)
            state.releases = {r: int(ms) for r, ms in obj["releases"]}
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
