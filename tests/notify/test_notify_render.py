"""Message rendering per destination type, severity mapping and the webhook signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from agents.model.alerts import SEVERITIES, Recommendation
from streams.notify.config import Link
from streams.notify.render import (
    PAGERDUTY_SUMMARY_MAX,
    advisory_ids,
    flag_refs,
    incident_refs,
    pagerduty_event,
    pagerduty_severity,
    signature,
    slack_escape,
    slack_message,
    verify_signature,
    webhook_body,
)

MakeAlert = Callable[..., dict[str, Any]]
PD_SEVERITIES = {"critical", "error", "warning", "info"}


def test_severity_mapping_covers_every_relsec_severity_monotonically() -> None:
    assert {s: pagerduty_severity(s) for s in SEVERITIES} == {
        "info": "info",
        "low": "warning",
        "medium": "warning",
        "high": "error",
        "critical": "critical",
    }
    order = ["info", "warning", "error", "critical"]
    ranks = [order.index(pagerduty_severity(s)) for s in SEVERITIES]
    assert ranks == sorted(ranks)
    assert all(pagerduty_severity(s) in PD_SEVERITIES for s in SEVERITIES)


def test_pagerduty_trigger_carries_dedup_key_summary_source_details(make_alert: MakeAlert) -> None:
    alert = make_alert(severity="high")
    body = pagerduty_event(alert, "R0UTINGKEY")
    assert body["routing_key"] == "R0UTINGKEY"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == alert["alert_id"]
    payload = body["payload"]
    assert payload["summary"] == alert["summary"]
    assert payload["source"] == "payments-api/production"
    assert payload["severity"] == "error"
    assert payload["component"] == "payments-api"
    assert payload["group"] == "production"
    assert payload["class"] == "rollback-to-flagged-release"
    assert payload["timestamp"] == alert["occurred_at"]
    details = payload["custom_details"]
    assert details["evidence"] == alert["evidence"]
    assert details["recommendation"] == alert["recommendation"]
    assert details["relsec_severity"] == "high"
    assert details["flags"] == ["CVE-2026-11111", "GHSA-jfh8-c2jp-5v3q"]
    assert details["incidents"] == ["INC-1"]
    hrefs = [link["href"] for link in body["links"]]
    assert "https://nvd.nist.gov/vuln/detail/CVE-2026-11111" in hrefs
    assert "https://github.com/advisories/GHSA-jfh8-c2jp-5v3q" in hrefs
    json.dumps(body)  # serializable as is


def test_pagerduty_retracted_resolves_the_same_dedup_key(make_alert: MakeAlert) -> None:
    firing = make_alert()
    retracted = make_alert(status="retracted")
    trig = pagerduty_event(firing, "k")
    res = pagerduty_event(retracted, "k")
    assert res == {"routing_key": "k", "event_action": "resolve", "dedup_key": trig["dedup_key"]}


def test_pagerduty_links_are_templated_from_alert_fields(make_alert: MakeAlert) -> None:
    alert = make_alert()
    links = (Link("https://runbooks.example/{rule}?svc={service}&a={alert_id}", "Runbook {rule}"),)
    body = pagerduty_event(alert, "k", links)
    first = body["links"][0]
    assert first["href"] == (
        f"https://runbooks.example/rollback-to-flagged-release?svc=payments-api&a={alert['alert_id']}"
    )
    assert first["text"] == "Runbook rollback-to-flagged-release"


def test_pagerduty_summary_is_cut_to_the_api_limit(make_alert: MakeAlert) -> None:
    body = pagerduty_event(make_alert(summary="x" * 5000), "k")
    assert len(body["payload"]["summary"]) == PAGERDUTY_SUMMARY_MAX
    assert "links" not in body  # no advisory ids, no configured links


def _slack_text(message: dict[str, Any]) -> str:
    parts = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            parts.append(element["text"])
    return "\n".join(parts)


def test_slack_message_names_rule_release_flags_incident_recommendation(
    make_alert: MakeAlert,
) -> None:
    alert = make_alert()
    message = slack_message(alert)
    text = _slack_text(message)
    for expected in (
        "rollback-to-flagged-release",
        "CRITICAL",
        "*Service:* payments-api",
        "*Environment:* production",
        "*Release:* `1.4.0`",
        "<https://nvd.nist.gov/vuln/detail/CVE-2026-11111|CVE-2026-11111>",
        "*Incident:* INC-1",
        "*Recommendation:* Move payments-api production to 1.5.0",
        alert["alert_id"],
    ):
        assert expected in text, expected
    assert all(b["type"] in ("section", "context") for b in message["blocks"])


def test_slack_retracted_message_says_so_and_drops_the_recommendation(
    make_alert: MakeAlert,
) -> None:
    text = _slack_text(slack_message(make_alert(status="retracted")))
    assert text.startswith("Retracted: rollback-to-flagged-release")
    assert "no action is needed" in text
    assert "Recommendation" not in text


def test_slack_recommendation_without_release_and_null_recommendation(
    make_alert: MakeAlert,
) -> None:
    coordinate = "SRE and security must coordinate a roll-forward fix."
    text = _slack_text(slack_message(make_alert(recommendation=Recommendation(None, coordinate))))
    assert f"*Recommendation:* {coordinate}" in text
    text = _slack_text(slack_message(make_alert(rule="rollback-performed", recommendation=None)))
    assert "Recommendation" not in text


def test_slack_escapes_control_characters(make_alert: MakeAlert) -> None:
    alert = make_alert(summary="deploy <!channel> & <https://evil.example|click>")
    text = _slack_text(slack_message(alert))
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in text
    assert slack_escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_flag_and_incident_references(make_alert: MakeAlert) -> None:
    raised = make_alert(
        rule="flag-raised-on-running-release",
        trigger="TRIVY-42",
        summary="Security flagged 1.4.0 (TRIVY-42, cve-2026-2222; high), the release running.",
    )
    assert flag_refs(raised) == ["TRIVY-42", "CVE-2026-2222"]
    assert advisory_ids(raised) == ["CVE-2026-2222"]
    opened = make_alert(
        rule="incident-on-flagged-release", trigger="INC-9", summary="Incident INC-9 (sev2: x)."
    )
    assert incident_refs(opened) == ["INC-9"]
    quiet = make_alert(
        summary="nothing here",
        evidence=[{"event_id": "pd-1", "type": "incident", "occurred_at": "2026-03-04T09:00:00Z"}],
    )
    assert incident_refs(quiet) == ["event pd-1"]


def test_webhook_body_is_the_alert_json(make_alert: MakeAlert) -> None:
    alert = make_alert(summary="café → 1.5.0")
    body = webhook_body(alert)
    assert json.loads(body) == alert
    assert "café".encode() in body


def test_signature_matches_rfc4231_vector_and_detects_changes() -> None:
    # RFC 4231 test case 2 (HMAC-SHA-256).
    assert signature(b"what do ya want for nothing?", "Jefe") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    body = b'{"alert_id":"a1"}'
    header = signature(body, "s3cret")
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert header == f"sha256={expected}"
    assert verify_signature(body, "s3cret", header)
    assert not verify_signature(body.replace(b"a1", b"a2"), "s3cret", header)
    assert not verify_signature(body, "other", header)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_every_severity_renders_everywhere(make_alert: MakeAlert, severity: str) -> None:
    alert = make_alert(severity=severity)
    assert pagerduty_event(alert, "k")["payload"]["severity"] in PD_SEVERITIES
    assert severity.upper() in slack_message(alert)["text"]


def test_link_placeholders_are_url_quoted_in_href_only(make_alert: MakeAlert) -> None:
    alert = make_alert(service="pay ments&co")
    links = (Link("https://dash.example/?svc={service}", "Dashboard of {service}"),)
    first = pagerduty_event(alert, "k", links)["links"][0]
    assert first["href"] == "https://dash.example/?svc=pay%20ments%26co"
    assert first["text"] == "Dashboard of pay ments&co"
