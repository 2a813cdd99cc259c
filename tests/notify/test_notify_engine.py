"""Alerts the real engine emits, delivered to Slack and PagerDuty receivers (local server).

The events are a short rollback story: release 1.4.0 runs, security flags it
(CVE), an incident opens and SRE rolls back to 1.4.0, the flagged release.
"""

from __future__ import annotations

from typing import Any

from notify_helpers import Recorder

from agents.engine import Engine, EngineConfig
from agents.model.events import parse_event
from agents.model.timefmt import parse_rfc3339_ms
from streams.notify.config import parse_config
from streams.notify.deliver import Notifier

EVENTS: list[dict[str, Any]] = [
    {
        "type": "deploy",
        "event_id": "d1",
        "occurred_at": "2026-03-02T09:00:00Z",
        "source": "argocd",
        "service": "checkout",
        "environment": "prod",
        "release": "1.4.0",
        "previous_release": "1.3.0",
        "action": "deploy",
        "status": "succeeded",
        "team": "dev",
    },
    {
        "type": "deploy",
        "event_id": "d2",
        "occurred_at": "2026-03-03T09:00:00Z",
        "source": "argocd",
        "service": "checkout",
        "environment": "prod",
        "release": "1.5.0",
        "previous_release": "1.4.0",
        "action": "deploy",
        "status": "succeeded",
        "team": "dev",
    },
    {
        "type": "security_flag",
        "event_id": "f1",
        "occurred_at": "2026-03-03T10:00:00Z",
        "source": "trivy",
        "service": "checkout",
        "flag_id": "CVE-2026-4242",
        "release": "1.4.0",
        "status": "raised",
        "severity": "critical",
        "vulnerabilities": ["CVE-2026-4242"],
        "title": "RCE in parser",
        "fixed_in": "1.5.1",
    },
    {
        "type": "incident",
        "event_id": "i1",
        "occurred_at": "2026-03-04T09:00:00Z",
        "source": "pagerduty",
        "service": "checkout",
        "environment": "prod",
        "incident_id": "INC-77",
        "status": "opened",
        "severity": "sev2",
        "title": "Checkout errors",
        "suspected_release": "1.5.0",
    },
    {
        "type": "deploy",
        "event_id": "d3",
        "occurred_at": "2026-03-04T09:20:00Z",
        "source": "argocd",
        "service": "checkout",
        "environment": "prod",
        "release": "1.4.0",
        "previous_release": "1.5.0",
        "action": "rollback",
        "status": "succeeded",
        "team": "sre",
        "incident_id": "INC-77",
    },
]


def engine_alerts() -> list[dict[str, Any]]:
    engine = Engine(EngineConfig())
    out: list[dict[str, Any]] = []
    for raw in EVENTS:
        event = parse_event(raw)
        outcome = engine.process(event, now_ms=parse_rfc3339_ms(raw["occurred_at"]))
        out.extend(a.to_dict() for a in outcome.alerts)
    return out


def test_engine_alerts_reach_slack_and_pagerduty_readably(recorder: Recorder) -> None:
    alerts = engine_alerts()
    rollback = [a for a in alerts if a["rule"] == "rollback-to-flagged-release"]
    assert len(rollback) == 1, [a["rule"] for a in alerts]
    text = f"""
[[destination]]
name = "pd"
type = "pagerduty"
audiences = ["sre"]
url = "{recorder.base_url}/pd"
routing_key_env = "K"

[[destination]]
name = "slack"
type = "slack"
audiences = ["security"]
url = "{recorder.url("/slack")}"
"""
    notifier = Notifier(parse_config(text, env={"K": "key"}))
    try:
        for alert in rollback:
            results = notifier.deliver(alert)
            assert [r.outcome.ok for r in results] == [True, True]
    finally:
        notifier.close()
    (slack,) = recorder.on("/slack")
    message = slack.json()
    shown = message["text"] + "\n".join(b["text"]["text"] for b in message["blocks"] if "text" in b)
    for expected in (
        "rollback-to-flagged-release",
        "checkout",
        "prod",
        "`1.4.0`",
        "CVE-2026-4242",
        "INC-77",
        "*Recommendation:*",
    ):
        assert expected in shown, expected
    (pd,) = recorder.on("/pd/v2/enqueue")
    event = pd.json()
    assert event["dedup_key"] == rollback[0]["alert_id"]
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["custom_details"]["flags"] == ["CVE-2026-4242"]
    assert event["payload"]["custom_details"]["incidents"] == ["INC-77"]
