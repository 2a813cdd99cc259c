"""Alert groups: one PagerDuty incident and one Slack conversation per alert storm.

The alerts topic keeps every alert (SPEC §3): a scanner report of 3,000
findings on a running release is 3,000 ``flag-raised-on-running-release``
alerts. People are told once per **group**: the alerts of one (rule, service,
environment, release) whose ``occurred_at`` falls into one tumbling window of
event time (:class:`~streams.notify.config.GroupingPolicy`, 1 h by default,
aligned to the epoch).

Why event time, tumbling: an alert's group is then a pure function of the
alert itself -- not of arrival order, of which process read it, or of where a
restart began -- so a re-read of the topic (after a crash, or a first start
from its beginning) puts every alert in the same group under the same
``group_id`` (the PagerDuty ``dedup_key``). A retraction carries its firing's
``occurred_at`` and lands in the same group. A storm that goes on past its
window's end opens a new group: at most one page per (rule, service,
environment, release) per window.

:class:`Grouper` holds the groups and decides, per destination, what to send:
``open`` (the first notice), ``update`` (the count or severity changed; at most
one per ``update_interval_ms``, a severity rise at once) and ``resolve`` (the
last member was retracted). It also knows, per partition, the first record
whose group change is not sent yet: the sink commits no further, so the
committed offsets always mean "everything before was told", and the groups
are rebuilt after a restart by re-reading the topic up to them
(:meth:`Grouper.apply` with ``rebuilding=True``, then
:meth:`Grouper.finish_rebuild`). Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agents.model.alerts import SEVERITIES
from agents.model.timefmt import parse_rfc3339_ms
from streams.notify.config import PAGERDUTY, Destination, GroupingPolicy

OPEN: Final = "open"
UPDATE: Final = "update"
RESOLVE: Final = "resolve"

# A member keeps this much of its evidence list (``evidence_count`` keeps the total).
MEMBER_EVIDENCE_KEPT: Final = 50
# How often (in records applied) groups past ``forget_after_ms`` are looked for.
EXPIRY_SCAN_EVERY: Final = 1024


def severity_rank(severity: str) -> int:
    """0 (info) .. 4 (critical); an unknown severity ranks above critical (shown, never hidden)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


@dataclass(frozen=True, slots=True)
class GroupKey:
    """What makes alerts one group. ``alert_id`` is set only when grouping is off."""

    rule: str
    service: str
    environment: str
    release: str
    window_start_ms: int
    alert_id: str = ""
    group_id: str = field(default="", compare=False, repr=False)
    """32 hex chars of SHA-256 over the key; the ``alert_id`` itself when grouping is off."""

    def __post_init__(self) -> None:
        if self.group_id:
            return
        if self.alert_id:
            object.__setattr__(self, "group_id", self.alert_id)
            return
        parts = ("group", self.rule, self.service, self.environment, self.release)
        material = "\x1f".join((*parts, str(self.window_start_ms))).encode("utf-8")
        object.__setattr__(self, "group_id", hashlib.sha256(material).hexdigest()[:32])


def group_key(
    alert: Mapping[str, Any], policy: GroupingPolicy, occurred_ms: int | None = None
) -> GroupKey:
    """The group of an alert (firing or retracted) under ``policy``.

    ``occurred_ms``: the alert's ``occurred_at`` when the caller parsed it already.
    """
    if occurred_ms is None:
        occurred_ms = parse_rfc3339_ms(str(alert["occurred_at"]))
    parts = (
        str(alert["rule"]),
        str(alert["service"]),
        str(alert["environment"]),
        str(alert["release"]),
    )
    if not policy.enabled:
        return GroupKey(*parts, window_start_ms=occurred_ms, alert_id=str(alert["alert_id"]))
    return GroupKey(*parts, window_start_ms=occurred_ms - occurred_ms % policy.window_ms)


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Where an alert record was read, and its bytes (for a dead letter about its group)."""

    partition: int
    offset: int
    key: bytes | None = field(default=None, repr=False)
    value: bytes = field(default=b"", repr=False)


@dataclass(slots=True)
class Sent:
    """What one destination was last told about one group."""

    open: bool
    count: int
    severity_rank: int
    at_ms: int | None
    """Wall-clock time of that notice; ``None`` when it was rebuilt after a restart."""


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """A group as one notice shows it; members most severe first."""

    group_id: str
    key: GroupKey
    window_ms: int
    alerts: tuple[Mapping[str, Any], ...]
    severity: str
    notify: tuple[str, ...]
    retracted: int

    @property
    def count(self) -> int:
        return len(self.alerts)

    @property
    def lead(self) -> Mapping[str, Any] | None:
        """The most severe member (ties: the earliest, then by trigger)."""
        return self.alerts[0] if self.alerts else None


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to tell one destination about one group."""

    destination: Destination
    action: str
    previous_count: int


def _member_order(alert: Mapping[str, Any]) -> tuple[int, str, str, str]:
    """Most severe first; then the earliest; then by trigger (a flag id reads in order)."""
    return (
        -severity_rank(str(alert["severity"])),
        str(alert["occurred_at"]),
        str(alert.get("trigger") or ""),
        str(alert["alert_id"]),
    )


def _trimmed(alert: Mapping[str, Any]) -> dict[str, Any]:
    evidence = alert.get("evidence") or []
    if len(evidence) <= MEMBER_EVIDENCE_KEPT:
        return dict(alert)
    out = dict(alert)
    out["evidence"] = list(evidence[:MEMBER_EVIDENCE_KEPT])
    out["evidence_count"] = max(int(alert.get("evidence_count") or 0), len(evidence))
    return out


@dataclass(slots=True)
class Group:
    """The live state of one group."""

    key: GroupKey
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    notify: set[str] = field(default_factory=set)
    peak_rank: int = -1
    retracted: int = 0
    orphan_retraction: bool = False
    sent: dict[str, Sent] = field(default_factory=dict)
    # partition -> offset of the first record whose change is not told yet
    pending: dict[int, int] = field(default_factory=dict)
    pending_seq: int = -1
    first_pending_ms: int = 0
    last_change_ms: int = 0
    rate_limited_until_ms: int | None = None
    last_record: RecordRef | None = None

    @property
    def group_id(self) -> str:
        return self.key.group_id

    @property
    def count(self) -> int:
        return len(self.members)

    @property
    def severity_rank(self) -> int:
        """The rank of the most severe active member; the peak when none is left."""
        if not self.members:
            return self.peak_rank
        return max(severity_rank(str(a["severity"])) for a in self.members.values())

    @property
    def has_pending(self) -> bool:
        return bool(self.pending)

    def snapshot(self, window_ms: int) -> GroupSnapshot:
        alerts = tuple(sorted(self.members.values(), key=_member_order))
        rank = self.severity_rank
        severity = SEVERITIES[rank] if 0 <= rank < len(SEVERITIES) else "critical"
        if alerts:
            severity = str(alerts[0]["severity"])
        return GroupSnapshot(
            group_id=self.group_id,
            key=self.key,
            window_ms=window_ms,
            alerts=alerts,
            severity=severity,
            notify=tuple(sorted(self.notify)),
            retracted=self.retracted,
        )


class Grouper:
    """All groups of one notify process, and what to tell each destination."""

    def __init__(self, policy: GroupingPolicy, destinations: Iterable[Destination]) -> None:
        self.policy = policy
        self.destinations = tuple(d for d in destinations if d.grouped)
        self.groups: dict[str, Group] = {}
        self._pending: dict[str, Group] = {}
        self._seq = 0
        self._applied = 0
        self.watermark_ms: int | None = None
        """The newest ``occurred_at`` applied: event time, as far as notify has read."""
        self.forgotten = 0
        self._group_of: dict[str, str] = {}
        """alert_id -> the group it is a member of. An alert's record can come again
        with another group key (a release linked to an alias later renames it), and its
        retraction must leave the group it is in, not the one its new key names."""
        self.moved = 0

    def wants(self, alert: Mapping[str, Any]) -> bool:
        """Whether a grouped destination serves one of the alert's audiences."""
        audiences = {str(a) for a in alert.get("notify") or []}
        return any(d.audiences & audiences for d in self.destinations)

    # -- membership ----------------------------------------------------------
    def apply(
        self,
        alert: Mapping[str, Any],
        record: RecordRef,
        now_ms: int,
        *,
        rebuilding: bool = False,
    ) -> Group:
        """Add a firing alert to its group, or take a retracted one out."""
        occurred_ms = parse_rfc3339_ms(str(alert["occurred_at"]))
        alert_id = str(alert["alert_id"])
        retraction = alert.get("status") == "retracted"
        key = group_key(alert, self.policy, occurred_ms)
        gid = key.group_id
        member_of = self._group_of.get(alert_id)
        if member_of is not None and member_of != gid and member_of in self.groups:
            if retraction:
                gid = member_of  # it leaves the group it is in
            else:
                self._move_out(self.groups[member_of], alert_id, record, now_ms, rebuilding)
        group = self.groups.get(gid)
        if group is None:
            group = self.groups[gid] = Group(key=key)
        if self.watermark_ms is None or occurred_ms > self.watermark_ms:
            self.watermark_ms = occurred_ms
        self._applied += 1
        if self._applied % EXPIRY_SCAN_EVERY == 0:
            self.forget_expired()
        group.notify.update(str(a) for a in alert.get("notify") or [])
        rank = severity_rank(str(alert["severity"]))
        # a retraction carries its firing's severity: it routes as the firing did
        group.peak_rank = max(group.peak_rank, rank)
        if retraction:
            if group.members.pop(alert_id, None) is not None:
                group.retracted += 1
                self._group_of.pop(alert_id, None)
            elif not rebuilding:
                # its firing was read before this process started reading (--start-at
                # latest), or compacted away: the group may be open in PagerDuty
                group.orphan_retraction = True
        else:
            group.members[alert_id] = _trimmed(alert)
            self._group_of[alert_id] = gid
            if any(rank > s.severity_rank for s in group.sent.values() if s.open):
                group.rate_limited_until_ms = None  # an escalation is told at once
        if rebuilding:
            if not group.members:
                del self.groups[gid]
            return group
        self._changed(group, record, now_ms)
        return group

    def _move_out(
        self, group: Group, alert_id: str, record: RecordRef, now_ms: int, rebuilding: bool
    ) -> None:
        """Take a member out of ``group`` because its alert now belongs to another: for
        the old group it is as if retracted (its incident resolves when it empties), so
        it is never told in two groups, nor holds the old one open for ever."""
        if group.members.pop(alert_id, None) is None:
            return
        group.retracted += 1
        self.moved += 1
        if rebuilding:
            if not group.members:
                del self.groups[group.group_id]
            return
        self._changed(group, record, now_ms)

    def _changed(self, group: Group, record: RecordRef, now_ms: int) -> None:
        """``group`` has a change to tell, read from ``record``."""
        self._seq += 1
        if not group.pending:
            group.pending_seq = self._seq
            group.first_pending_ms = now_ms
            self._pending[group.group_id] = group
        group.pending.setdefault(record.partition, record.offset)
        group.last_change_ms = now_ms
        group.last_record = record

    def finish_rebuild(self) -> None:
        """After re-reading up to the committed offsets: every group there was told as it is."""
        for group in self.groups.values():
            for dest in self.targets(group):
                group.sent[dest.name] = Sent(
                    open=bool(group.members),
                    count=group.count,
                    severity_rank=group.severity_rank,
                    at_ms=None,
                )

    # -- what to send ----------------------------------------------------------
    def targets(self, group: Group) -> list[Destination]:
        """Grouped destinations serving the group's audiences at its peak severity,
        and any destination already told about it (it hears the rest, resolve included)."""
        out: list[Destination] = []
        for dest in self.destinations:
            sent = group.sent.get(dest.name)
            routed = bool(dest.audiences & group.notify) and group.peak_rank >= severity_rank(
                dest.min_severity
            )
            if routed or (sent is not None and sent.open):
                out.append(dest)
        return out

    def due_at_ms(self, group: Group) -> int | None:
        """When the group's pending change may be sent (``None``: nothing pending)."""
        if not group.pending:
            return None
        at = min(
            group.last_change_ms + self.policy.settle_ms,
            group.first_pending_ms + self.policy.max_delay_ms,
        )
        if not self.policy.enabled:
            at = group.last_change_ms
        if group.rate_limited_until_ms is not None:
            at = max(at, group.rate_limited_until_ms)
        return at

    def due(self, now_ms: int, final: bool = False, caught_up: bool = True) -> list[Group]:
        """Groups whose change may go out now, in the order their first change was read.

        A change goes out once the group settled (``settle_ms`` without a change)
        **and** the reader has caught up with every partition: while a backlog
        is read, quiet means nothing (the rest of a storm may sit in another
        partition), so only ``max_delay_ms`` lets a change out then. ``final``:
        nothing more is coming (``--once`` at the end of the topic): no wait.
        A rate-limited update waits for its time in every case.
        """
        ready: list[Group] = []
        policy = self.policy
        for group in self._pending.values():
            limited = group.rate_limited_until_ms
            if limited is not None and now_ms < limited:
                continue
            if (
                final
                or not policy.enabled
                or now_ms >= group.first_pending_ms + policy.max_delay_ms
                or (caught_up and now_ms >= group.last_change_ms + policy.settle_ms)
            ):
                ready.append(group)
        ready.sort(key=lambda g: g.pending_seq)
        return ready

    def next_due_ms(self) -> int | None:
        times = [t for g in self._pending.values() if (t := self.due_at_ms(g)) is not None]
        return min(times) if times else None

    def plan(self, group: Group, now_ms: int) -> tuple[list[Notice], int | None]:
        """The notices due for ``group`` now, and when a rate-limited update may go out."""
        notices: list[Notice] = []
        deferred: int | None = None
        count, rank = group.count, group.severity_rank
        for dest in self.targets(group):
            sent = group.sent.get(dest.name)
            previous = sent.count if sent is not None else 0
            if group.members:
                if sent is None or not sent.open:
                    notices.append(Notice(dest, OPEN, previous))
                elif sent.count == count and sent.severity_rank == rank:
                    continue
                elif (
                    rank > sent.severity_rank
                    or sent.at_ms is None
                    or now_ms >= sent.at_ms + self.policy.update_interval_ms
                ):
                    notices.append(Notice(dest, UPDATE, previous))
                else:
                    until = sent.at_ms + self.policy.update_interval_ms
                    deferred = until if deferred is None else min(deferred, until)
            elif sent is not None and sent.open:
                notices.append(Notice(dest, RESOLVE, previous))
            elif group.orphan_retraction and sent is None and dest.type == PAGERDUTY:
                notices.append(Notice(dest, RESOLVE, 0))
        return notices, deferred

    def mark_sent(self, group: Group, notice: Notice, now_ms: int) -> None:
        """Record that ``notice`` was accepted by its destination."""
        group.sent[notice.destination.name] = Sent(
            open=notice.action != RESOLVE,
            count=group.count,
            severity_rank=group.severity_rank,
            at_ms=now_ms,
        )

    def settle(self, group: Group, deferred_until_ms: int | None) -> None:
        """After a group's notices went out (or were dead-lettered).

        Without a deferred update the group's records are done (the commit may
        pass them); a group with no member that no destination has open is
        forgotten.
        """
        group.rate_limited_until_ms = deferred_until_ms
        if deferred_until_ms is None:
            group.pending.clear()
            self._pending.pop(group.group_id, None)
            group.orphan_retraction = False
            if not group.members and not any(s.open for s in group.sent.values()):
                self.groups.pop(group.group_id, None)

    def commit_floor(self, partition: int) -> int | None:
        """The first offset of ``partition`` whose group change is not told yet."""
        offsets = [g.pending[partition] for g in self._pending.values() if partition in g.pending]
        return min(offsets) if offsets else None

    def forget_expired(self) -> int:
        """Stop tracking groups whose window ended ``forget_after_ms`` of event time ago.

        Most alerts are never retracted, so without this the groups of every
        alert still on the topic would be held forever. A forgotten group's
        PagerDuty incident stays as it is (people resolve it); a retraction of
        one of its members later is an orphan (a PagerDuty resolve only). Only
        groups with nothing left to tell are forgotten. Event time keeps it
        deterministic: a rebuild forgets the same groups.
        """
        if self.watermark_ms is None:
            return 0
        horizon = self.watermark_ms - self.policy.forget_after_ms
        width = self.policy.window_ms
        old = [
            gid
            for gid, g in self.groups.items()
            if not g.pending and g.key.window_start_ms + width < horizon
        ]
        for gid in old:
            for alert_id in self.groups.pop(gid).members:
                if self._group_of.get(alert_id) == gid:
                    del self._group_of[alert_id]
        self.forgotten += len(old)
        return len(old)
