"""Every message relsec sends stays within the receiver's limits, at real sizes.

A release can carry thousands of flags (one alert naming 5,000 CVEs), and a
scanner report makes a group of thousands of alerts. Slack: a section's text
holds 3,000 characters and a message 50 blocks; lists are cut at a whole
entry and say how many were left out. PagerDuty: a whole event stays under
512 KB. Each shape (one alert; a group's open, update and resolve) is held
against the receiver's own definition (tests/notify/notify_schemas.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from notify_helpers import build_alert
from notify_schemas import pagerduty_errors, slack_errors, slack_texts

from agents.model.alerts import Recommendation
from agents.model.timefmt import format_rfc3339_ms, parse_rfc3339_ms
from streams.notify.config import parse_config
from streams.notify.groups import OPEN, RESOLVE, UPDATE, Grouper, GroupSnapshot, RecordRef
from streams.notify.render import (
    PAGERDUTY_SUMMARY_MAX,
    SLACK_TEXT_MAX,
    join_bounded,
    pagerduty_event,
    pagerduty_group_event,
    slack_group_message,
    slack_message,
)

N_FLAGS = 5000
CVES = [f"CVE-2026-{10000 + i}" for i in range(N_FLAGS)]
NVD_LINK = re.compile(r"<https://nvd\.nist\.gov/vuln/detail/(CVE-\d{4}-\d+)\|\1>")
ALIASES = ["ghcr.io/acme/checkout:2.7.0", "ghcr.io/acme/checkout@sha256:" + "0f" * 32]


def many_flags_alert() -> dict[str, Any]:
    """A rollback to a release with 5,000 active flags, all listed (the worst case)."""
    alert = build_alert(
        rule="rollback-to-flagged-release",
        service="checkout",
        environment="prod",
        release="2.7.0",
        summary="checkout prod was rolled back to 2.7.0, a release security has flagged ("
        + ", ".join(CVES)
        + "; critical).",
        evidence=[
            {
                "event_id": f"trivy-{i}",
                "type": "security_flag",
                "occurred_at": "2026-03-03T10:00:00Z",
            }
            for i in range(N_FLAGS)
        ],
        release_aliases=ALIASES,
        evidence_count=N_FLAGS + 1,
    )
    return alert


def burst(n: int, members_severity: str = "high") -> GroupSnapshot:
    config = parse_config(
        '[[destination]]\nname = "pd"\ntype = "pagerduty"\naudiences = ["sre"]\n'
        'routing_key_env = "K"\n',
        env={"K": "k"},
    )
    grouper = Grouper(config.grouping, config.destinations)
    at = format_rfc3339_ms(parse_rfc3339_ms("2026-03-04T09:20:00Z"))
    for i in range(n):
        severity = "critical" if i % 250 == 7 else members_severity
        alert = build_alert(
            rule="flag-raised-on-running-release",
            service="checkout",
            environment="prod",
            release="2.7.0",
            trigger=CVES[i % N_FLAGS],
            severity=severity,
            summary=f"Security flagged checkout 2.7.0 ({CVES[i % N_FLAGS]}; {severity}), "
            "the release running in prod.",
            release_aliases=ALIASES,
        )
        alert["occurred_at"] = at
        grouper.apply(alert, RecordRef(i % 3, i // 3), 0)
    (group,) = grouper.groups.values()
    return group.snapshot(config.grouping.window_ms)


def assert_links_whole(text: str) -> None:
    """Every ``<`` opens a whole ``<url|label>`` link: nothing was cut inside one."""
    rest = re.sub(r"<https?://[^<>|]+\|[^<>]+>", "", text)
    assert "<" not in rest and ">" not in rest, rest[-200:]


def test_join_bounded_cuts_at_whole_entries_and_counts_the_rest() -> None:
    entries = [f"entry-{i}" for i in range(100)]
    text = join_bounded(entries, 80, prefix="*Flags:* ")
    assert len(text) <= 80
    shown = text.removeprefix("*Flags:* ").split(" … and ")[0].split(", ")
    assert shown == entries[: len(shown)]
    left = int(re.search(r"and (\d+) more$", text).group(1))  # type: ignore[union-attr]
    assert len(shown) + left == 100
    assert join_bounded(entries[:3], 80) == "entry-0, entry-1, entry-2"
    assert join_bounded(entries[:3], 80, total=10) == "entry-0, entry-1, entry-2 … and 7 more"


def test_slack_alert_with_5000_flags_lists_whole_links_and_says_how_many_are_left_out() -> None:
    message = slack_message(many_flags_alert())
    assert slack_errors(message) == []
    texts = slack_texts(message)
    assert all(len(t) <= SLACK_TEXT_MAX for t in texts)
    (detail,) = [t for t in texts if "*Flags:*" in t]
    flags_line = detail[detail.index("*Flags:*") :]
    assert_links_whole(flags_line)
    shown = NVD_LINK.findall(flags_line)
    assert shown == CVES[: len(shown)] and len(shown) > 20
    left = int(re.search(r"… and (\d+) more$", flags_line).group(1))  # type: ignore[union-attr]
    assert len(shown) + left == N_FLAGS
    assert "(also `ghcr.io/acme/checkout:2.7.0`, `ghcr.io/acme/checkout@sha256:" in detail
    assert f"*Evidence:* {N_FLAGS + 1} events ({N_FLAGS} listed in the alert)" in detail


def test_pagerduty_alert_with_5000_flags_fits_under_512_kb_and_says_what_it_left_out() -> None:
    alert = many_flags_alert()
    body = pagerduty_event(alert, "routing-key")
    assert pagerduty_errors(body) == []
    details = body["payload"]["custom_details"]
    assert len(details["evidence"]) + details.get("evidence_omitted", 0) == N_FLAGS
    assert len(details["flags"]) + details.get("flags_omitted", 0) == N_FLAGS
    assert details["evidence"] == alert["evidence"][: len(details["evidence"])]
    assert details["release_aliases"] == ALIASES
    assert details["evidence_count"] == N_FLAGS + 1
    assert len(body["payload"]["summary"]) <= PAGERDUTY_SUMMARY_MAX
    assert len(body["links"]) <= 20


def test_a_small_alert_is_not_trimmed() -> None:
    alert = build_alert(release_aliases=ALIASES)
    details = pagerduty_event(alert, "k")["payload"]["custom_details"]
    assert details["evidence"] == alert["evidence"]
    assert not [k for k in details if k.endswith("_omitted")]
    assert details["release_aliases"] == ALIASES
    assert "evidence_count" not in details  # the list is complete


@pytest.mark.parametrize("action", [OPEN, UPDATE])
def test_a_group_of_5000_alerts_is_one_bounded_pagerduty_event(action: str) -> None:
    snapshot = burst(N_FLAGS)
    body = pagerduty_group_event(snapshot, action, "routing-key")
    assert pagerduty_errors(body) == []
    assert body["event_action"] == "trigger" and body["dedup_key"] == snapshot.group_id
    payload = body["payload"]
    assert payload["severity"] == "critical"  # the most severe member
    assert payload["summary"].startswith(
        "5000 alerts flag-raised-on-running-release on checkout/prod, release 2.7.0 "
        "(20 critical, 4980 high); most severe: CVE-2026-10007"
    )
    details = payload["custom_details"]
    assert details["alerts"] == N_FLAGS
    assert details["severity_counts"] == {"critical": 20, "high": 4980}
    listed = details["most_severe"]
    assert len(listed) + details["most_severe_omitted"] == N_FLAGS
    assert [m["severity"] for m in listed[:20]] == ["critical"] * 20
    assert details["release_aliases"] == ALIASES
    assert details["window"] == {"start": "2026-03-04T09:00:00Z", "end": "2026-03-04T10:00:00Z"}


def test_a_group_of_5000_alerts_is_one_bounded_slack_message() -> None:
    snapshot = burst(N_FLAGS)
    message = slack_group_message(snapshot, OPEN)
    assert slack_errors(message) == []
    texts = slack_texts(message)
    assert all(len(t) <= SLACK_TEXT_MAX for t in texts)
    assert "CRITICAL: 5000 alerts, flag-raised-on-running-release on checkout/prod" in texts[0]
    assert "5000 active: 20 critical, 4980 high" in message["blocks"][0]["text"]["text"]
    (findings,) = [t for t in texts if t.startswith("*Most severe:*")]
    assert_links_whole(findings)
    shown = NVD_LINK.findall(findings)
    left = int(re.search(r"… and (\d+) more$", findings).group(1))  # type: ignore[union-attr]
    assert len(shown) + left == N_FLAGS
    assert shown[0] == "CVE-2026-10007"  # critical ones first
    assert snapshot.group_id in texts[-1]

    update = slack_group_message(snapshot, UPDATE, previous_count=3000)
    assert slack_errors(update) == []
    assert "now 5000 active (was 3000)" in update["blocks"][0]["text"]["text"]
    assert update["text"].startswith("UPDATE CRITICAL: 5000 alerts")


def test_resolve_notices_are_valid_and_say_how_many_were_retracted() -> None:
    snapshot = burst(3)
    empty = GroupSnapshot(
        group_id=snapshot.group_id,
        key=snapshot.key,
        window_ms=snapshot.window_ms,
        alerts=(),
        severity="high",
        notify=snapshot.notify,
        retracted=3,
    )
    body = pagerduty_group_event(empty, RESOLVE, "routing-key")
    assert body == {
        "routing_key": "routing-key",
        "event_action": "resolve",
        "dedup_key": snapshot.group_id,
    }
    assert pagerduty_errors(body) == []
    message = slack_group_message(empty, RESOLVE, previous_count=3)
    assert slack_errors(message) == []
    assert message["text"].startswith("Resolved: flag-raised-on-running-release on checkout/prod")
    assert "the 3 alert(s) of this group" in message["blocks"][0]["text"]["text"]


def test_a_group_of_one_is_shown_as_its_alert_under_the_group_key() -> None:
    snapshot = burst(1)
    (alert,) = snapshot.alerts
    body = pagerduty_group_event(snapshot, OPEN, "k")
    assert pagerduty_errors(body) == []
    assert body["dedup_key"] == snapshot.group_id
    assert body["payload"]["summary"] == alert["summary"]
    assert body["payload"]["custom_details"]["alert_id"] == alert["alert_id"]
    assert body["payload"]["custom_details"]["group"]["alerts"] == 1
    message = slack_group_message(snapshot, OPEN)
    assert slack_errors(message) == []
    assert message == slack_message(alert, context_extra=f" · group `{snapshot.group_id}`")


def test_a_long_recommendation_and_summary_stay_within_limits() -> None:
    alert = build_alert(
        summary="word " * 2000,
        recommendation=Recommendation("1.5.0", "coordinate " * 1000),
    )
    message = slack_message(alert)
    assert slack_errors(message) == []
    body = pagerduty_event(alert, "k")
    assert pagerduty_errors(body) == []
    assert body["payload"]["summary"].endswith("…")
