"""Alert groups without Kafka or HTTP: keys, membership, what each destination is told, commits.

The property tests hold the two guarantees a restart relies on: a group's
membership is a function of the alerts, not of the order records of different
alerts are read in; and rebuilding from a prefix of the records, then reading
on, ends where reading everything live ends.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from notify_helpers import build_alert

from agents.model.timefmt import format_rfc3339_ms, parse_rfc3339_ms
from streams.notify.config import GroupingPolicy, parse_config
from streams.notify.groups import (
    OPEN,
    RESOLVE,
    UPDATE,
    Grouper,
    RecordRef,
    group_key,
)

MakeAlert = Callable[..., dict[str, Any]]
T0 = parse_rfc3339_ms("2026-03-04T09:20:00Z")
HOUR = 3_600_000
CONFIG = """
[grouping]
window_ms = 3600000
settle_ms = 2000
max_delay_ms = 30000
update_interval_ms = 300000

[[destination]]
name = "pd"
type = "pagerduty"
audiences = ["sre"]
routing_key_env = "K"

[[destination]]
name = "pd-critical"
type = "pagerduty"
audiences = ["security"]
routing_key_env = "K"
min_severity = "critical"

[[destination]]
name = "slack"
type = "slack"
audiences = ["security"]
url = "https://hooks.example/relsec"

[[destination]]
name = "hook"
type = "webhook"
audiences = ["sre", "security"]
url = "https://soar.example/hook"
"""


def grouper(window_ms: int = HOUR) -> Grouper:
    text = CONFIG.replace("window_ms = 3600000", f"window_ms = {window_ms}")
    config = parse_config(text, env={"K": "routing-key"})
    return Grouper(config.grouping, config.destinations)


def flag_alert(flag: str, severity: str = "high", at_ms: int = T0, **kw: Any) -> dict[str, Any]:
    alert = build_alert(
        rule="flag-raised-on-running-release",
        trigger=flag,
        severity=severity,
        release="2.7.0",
        service="checkout",
        environment="prod",
        summary=f"Security flagged checkout 2.7.0 ({flag}; {severity}), running in prod.",
        **kw,
    )
    alert["occurred_at"] = format_rfc3339_ms(at_ms)
    return alert


def ref(partition: int, offset: int) -> RecordRef:
    return RecordRef(partition, offset)


def actions(g: Grouper, now_ms: int) -> dict[str, str]:
    """Plan every due group and mark it sent and settled; {destination: action}."""
    told: dict[str, str] = {}
    for group in g.due(now_ms):
        notices, deferred = g.plan(group, now_ms)
        for notice in notices:
            told[notice.destination.name] = notice.action
            g.mark_sent(group, notice, now_ms)
        g.settle(group, deferred)
    return told


def test_the_key_is_rule_service_environment_release_and_event_time_window() -> None:
    policy = GroupingPolicy(window_ms=HOUR)
    a = flag_alert("CVE-2026-0001")
    b = flag_alert("CVE-2026-0002", at_ms=T0 + 30 * 60_000)  # 10:50, same hour
    c = flag_alert("CVE-2026-0003", at_ms=T0 + 41 * 60_000)  # 10:01, next hour
    assert group_key(a, policy).group_id == group_key(b, policy).group_id
    assert group_key(a, policy).group_id != group_key(c, policy).group_id
    assert group_key(a, policy).window_start_ms == parse_rfc3339_ms("2026-03-04T09:00:00Z")
    retracted = dict(a, status="retracted", detected_at="2026-03-05T00:00:00Z")
    assert group_key(retracted, policy) == group_key(a, policy)
    other_release = flag_alert("CVE-2026-0001", release_aliases=["x"])
    other_release["release"] = "2.7.1"
    assert group_key(other_release, policy) != group_key(a, policy)
    off = GroupingPolicy(window_ms=0)
    assert group_key(a, off).group_id == a["alert_id"]
    assert group_key(b, off).group_id == b["alert_id"]


def test_a_burst_is_one_open_per_destination_after_it_settles() -> None:
    g = grouper()
    for i in range(3000):
        severity = "critical" if i % 100 == 0 else "high"
        g.apply(flag_alert(f"CVE-2026-{i:05d}", severity), ref(i % 3, i // 3), now_ms=i // 10)
    (group,) = g.groups.values()
    assert group.count == 3000
    assert g.due(now_ms=300) == []  # still settling: the last member came at 299 ms
    last_change = group.last_change_ms
    assert g.due(now_ms=last_change + 2000) == [group]
    notices, deferred = g.plan(group, last_change + 2000)
    assert deferred is None
    # pd serves sre; slack serves security; pd-critical serves security at critical (the peak)
    assert sorted((n.destination.name, n.action) for n in notices) == [
        ("pd", OPEN),
        ("pd-critical", OPEN),
        ("slack", OPEN),
    ]
    assert all(n.destination.grouped for n in notices)  # the webhook takes every alert


def test_updates_are_rate_limited_but_an_escalation_and_the_resolve_are_not() -> None:
    g = grouper()
    now = 0
    g.apply(flag_alert("CVE-2026-0001", "medium"), ref(0, 0), now)
    now += 2000
    assert actions(g, now) == {"pd": OPEN, "slack": OPEN}
    # a second member a minute later: changed count, inside the 5 min interval
    now += 60_000
    g.apply(flag_alert("CVE-2026-0002", "medium"), ref(1, 0), now)
    now += 2000
    assert actions(g, now) == {}  # deferred to 5 min after the open
    assert g.due(now) == []
    assert g.commit_floor(1) == 0  # and its record is not committed meanwhile
    assert g.next_due_ms() == 2000 + 300_000
    # a critical member escalates: told at once, and now pd-critical hears of it too
    g.apply(flag_alert("CVE-2026-0003", "critical"), ref(2, 0), now)
    now += 2000
    assert actions(g, now) == {"pd": UPDATE, "slack": UPDATE, "pd-critical": OPEN}
    assert g.commit_floor(1) is None and g.commit_floor(2) is None
    (group,) = g.groups.values()
    # every member retracted: one resolve to each destination that was told
    for i, flag in enumerate(["CVE-2026-0001", "CVE-2026-0002", "CVE-2026-0003"]):
        retracted = flag_alert(flag, "medium", status="retracted")
        g.apply(retracted, ref(i, 1), now)
    now += 2000
    assert actions(g, now) == {"pd": RESOLVE, "slack": RESOLVE, "pd-critical": RESOLVE}
    assert group.retracted == 3
    assert g.groups == {}  # forgotten once resolved everywhere


def test_a_group_retracted_before_it_was_told_sends_nothing() -> None:
    g = grouper()
    a = flag_alert("CVE-2026-0001")
    g.apply(a, ref(0, 0), 0)
    g.apply(dict(a, status="retracted"), ref(0, 1), 10)
    assert actions(g, 5000) == {}
    assert g.groups == {}


def test_an_orphan_retraction_resolves_in_pagerduty_only() -> None:
    """Its firing was read by an earlier life or compacted away: PagerDuty may hold it open."""
    g = grouper()
    a = flag_alert("CVE-2026-0001", notify=["sre", "security"])
    g.apply(dict(a, status="retracted"), ref(0, 7), 0)
    assert actions(g, 5000) == {"pd": RESOLVE}  # not slack, not pd-critical (never routed)


def test_windows_split_a_long_storm_and_the_commit_floor_follows_pending_groups() -> None:
    g = grouper()
    g.apply(flag_alert("CVE-2026-0001", at_ms=T0), ref(0, 0), 0)
    g.apply(flag_alert("CVE-2026-0002", at_ms=T0 + HOUR), ref(0, 1), 0)
    assert len(g.groups) == 2
    assert g.commit_floor(0) == 0 and g.commit_floor(1) is None
    first, second = g.due(5000)
    assert first.pending_seq < second.pending_seq  # told in the order they were read
    notices, deferred = g.plan(first, 5000)
    for n in notices:
        g.mark_sent(first, n, 5000)
    g.settle(first, deferred)
    assert g.commit_floor(0) == 1  # the second group's record holds the commit
    notices, deferred = g.plan(second, 5000)
    g.settle(second, deferred)
    assert g.commit_floor(0) is None


def test_grouping_off_makes_every_alert_its_own_group_told_at_once() -> None:
    g = grouper(window_ms=0)
    a, b = flag_alert("CVE-2026-0001"), flag_alert("CVE-2026-0002")
    g.apply(a, ref(0, 0), 0)
    g.apply(b, ref(0, 1), 0)
    assert set(g.groups) == {a["alert_id"], b["alert_id"]}
    assert len(g.due(0)) == 2  # no settle wait


def test_rebuild_counts_the_groups_as_told() -> None:
    g = grouper()
    for i in range(5):
        g.apply(flag_alert(f"CVE-2026-{i:04d}"), ref(0, i), 0, rebuilding=True)
    gone = flag_alert("CVE-2026-9999")
    g.apply(gone, ref(0, 5), 0, rebuilding=True)
    g.apply(dict(gone, status="retracted"), ref(0, 6), 0, rebuilding=True)
    g.finish_rebuild()
    (group,) = g.groups.values()
    assert group.count == 5 and not group.has_pending
    assert g.due(10**9, final=True) == []
    # a new member after the restart: an update (no second page), not rate-limited
    g.apply(flag_alert("CVE-2026-0100"), ref(0, 7), 100)
    assert actions(g, 100 + 2000) == {"pd": UPDATE, "slack": UPDATE}


# -- properties -------------------------------------------------------------------------

FLAGS = [f"CVE-2026-{i:04d}" for i in range(6)]
RELEASES = ["2.7.0", "2.8.0"]
SEVERITIES = ["low", "high", "critical"]

# one alert's history: its flag, release, hour, severity, and a firing/retracted sequence
alert_history = st.tuples(
    st.sampled_from(FLAGS),
    st.sampled_from(RELEASES),
    st.integers(0, 2),
    st.sampled_from(SEVERITIES),
    st.lists(st.booleans(), min_size=1, max_size=4),
)


def _records(histories: list[tuple[str, str, int, str, list[bool]]]) -> list[list[dict[str, Any]]]:
    per_alert: dict[str, list[dict[str, Any]]] = {}
    for flag, release, hour, severity, statuses in histories:
        base = flag_alert(flag, severity, at_ms=T0 + hour * HOUR)
        base["release"] = release
        key = f"{flag}/{release}/{hour}"
        if key in per_alert:
            continue
        # the alert_id is the identity's hash; give each history its own
        base["alert_id"] = hashlib.sha256(key.encode()).hexdigest()[:32]
        per_alert[key] = [
            dict(base, status="firing" if firing else "retracted") for firing in statuses
        ]
    return list(per_alert.values())


def _membership(g: Grouper) -> dict[str, frozenset[str]]:
    return {gid: frozenset(grp.members) for gid, grp in g.groups.items() if grp.members}


def _interleave(streams: list[list[dict[str, Any]]], choices: list[int]) -> list[dict[str, Any]]:
    """Merge per-alert record lists in an order driven by ``choices``, each list in order."""
    queues = [list(s) for s in streams if s]
    out: list[dict[str, Any]] = []
    pick = itertools.cycle(choices or [0])
    while queues:
        i = next(pick) % len(queues)
        out.append(queues[i].pop(0))
        if not queues[i]:
            queues.pop(i)
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(alert_history, min_size=1, max_size=12),
    st.lists(st.integers(0, 50), max_size=30),
    st.lists(st.integers(0, 50), max_size=30),
)
def test_membership_does_not_depend_on_how_alerts_interleave(
    histories: list[tuple[str, str, int, str, list[bool]]],
    order_a: list[int],
    order_b: list[int],
) -> None:
    streams = _records(histories)
    results = []
    for order in (order_a, order_b):
        g = grouper()
        for offset, alert in enumerate(_interleave(streams, order)):
            g.apply(alert, ref(0, offset), 0)
        results.append(_membership(g))
    assert results[0] == results[1]
    expected: dict[str, set[str]] = {}
    policy = GroupingPolicy(window_ms=HOUR)
    for stream in streams:
        last = stream[-1]
        if last["status"] == "firing":
            expected.setdefault(group_key(last, policy).group_id, set()).add(last["alert_id"])
    assert results[0] == {gid: frozenset(ids) for gid, ids in expected.items()}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(alert_history, min_size=1, max_size=12),
    st.lists(st.integers(0, 50), max_size=30),
    st.integers(0, 60),
)
def test_rebuilding_a_prefix_then_reading_on_ends_like_reading_it_all(
    histories: list[tuple[str, str, int, str, list[bool]]],
    order: list[int],
    cut: int,
) -> None:
    records = _interleave(_records(histories), order)
    cut = min(cut, len(records))
    live = grouper()
    for offset, alert in enumerate(records):
        live.apply(alert, ref(0, offset), 0)
    restarted = grouper()
    for offset, alert in enumerate(records[:cut]):
        restarted.apply(alert, ref(0, offset), 0, rebuilding=True)
    restarted.finish_rebuild()
    for offset, alert in enumerate(records[cut:], start=cut):
        restarted.apply(alert, ref(0, offset), 0)
    assert _membership(restarted) == _membership(live)
    # nothing below the cut holds the commit after a restart
    floor = restarted.commit_floor(0)
    assert floor is None or floor >= cut


def test_groups_a_week_behind_in_event_time_are_forgotten_unless_pending() -> None:
    g = grouper()
    old = flag_alert("CVE-2026-0001", at_ms=T0)
    g.apply(old, ref(0, 0), 0)
    assert actions(g, 5000) == {"pd": OPEN, "slack": OPEN}
    week = 7 * 24 * HOUR
    g.apply(flag_alert("CVE-2026-0002", at_ms=T0 + week + 2 * HOUR), ref(0, 1), 6000)
    # the new group is pending (not told yet) and is kept; the old one is done and goes
    assert g.forget_expired() == 1
    assert [grp.key.window_start_ms for grp in g.groups.values()] == [
        group_key(flag_alert("x", at_ms=T0 + week + 2 * HOUR), GroupingPolicy()).window_start_ms
    ]
    # a late retraction of the forgotten group's member: PagerDuty is asked to resolve
    actions(g, 20_000)
    g.apply(dict(old, status="retracted"), ref(0, 2), 30_000)
    assert actions(g, 40_000) == {"pd": RESOLVE}


def test_while_a_backlog_is_read_quiet_groups_wait_until_caught_up_or_max_delay() -> None:
    """A storm's members sit in every partition: one read first says nothing about the rest."""
    g = grouper()
    g.apply(flag_alert("CVE-2026-0001"), ref(5, 0), now_ms=0)
    assert g.due(5_000, caught_up=False) == []  # settled, but other partitions are unread
    (group,) = g.due(5_000, caught_up=True)
    assert g.due(30_000, caught_up=False) == [group]  # max_delay_ms bounds the wait
    assert g.due(1, final=True) == [group]


def test_an_alert_renamed_to_another_release_moves_between_groups_and_resolves_the_old() -> None:
    """A late link to an alias re-emits an alert (same alert_id) under the release's
    new name: it leaves its old group (which resolves) and is never in two groups, and
    its retraction, under either name, leaves the group it is in."""
    g = grouper()
    a = flag_alert("CVE-2026-0001", notify=["sre"])
    g.apply(a, ref(0, 0), 0)
    assert actions(g, 2000) == {"pd": OPEN}
    renamed = dict(a, release="v2.7.0", release_aliases=["2.7.0"])
    g.apply(renamed, ref(0, 1), 3000)
    memberships = [gid for gid, grp in g.groups.items() if a["alert_id"] in grp.members]
    assert len(memberships) == 1 and g.moved == 1
    (new_gid,) = memberships
    assert new_gid == group_key(renamed, g.policy).group_id
    told = []
    for group in g.due(5000):
        notices, deferred = g.plan(group, 5000)
        told += [(group.key.release, n.action) for n in notices]
        for notice in notices:
            g.mark_sent(group, notice, 5000)
        g.settle(group, deferred)
    assert sorted(told) == [("2.7.0", RESOLVE), ("v2.7.0", OPEN)]
    assert list(g.groups) == [new_gid]
    # the retraction names the old release (as first emitted): it still leaves v2.7.0
    g.apply(dict(a, status="retracted"), ref(0, 2), 6000)
    assert actions(g, 8000) == {"pd": RESOLVE}
    assert g.groups == {}


def test_a_renamed_alert_moves_the_same_way_while_rebuilding() -> None:
    g = grouper()
    a = flag_alert("CVE-2026-0001")
    g.apply(a, ref(0, 0), 0, rebuilding=True)
    g.apply(dict(a, release="v2.7.0"), ref(0, 1), 0, rebuilding=True)
    assert [grp.key.release for grp in g.groups.values()] == ["v2.7.0"]
