"""Sample relsec records for the codec tests: every event kind, alerts, dead letters."""

from __future__ import annotations

from typing import Any

from agents.model.alerts import Alert, Evidence, Recommendation, alert_id_for
from agents.model.timefmt import parse_rfc3339_ms

DEPLOY_FULL: dict[str, Any] = {
    "type": "deploy",
    "event_id": "argo-7781",
    "occurred_at": "2026-03-04T10:20:00.250+01:00",
    "source": "argocd",
    "service": "payments",
    "environment": "prod",
    "release": "v1.4.2",
    "previous_release": "v1.5.0",
    "action": "rollback",
    "status": "succeeded",
    "team": "sre",
    "actor": "Zoë Ångström",
    "reason": "error budget burn — rolling back ✓",
    "incident_id": "INC-42",
    "release_aliases": [
        "ghcr.io/acme/payments@sha256:" + "ab" * 32,
        "sha256:" + "ab" * 32,
        "ghcr.io/acme/payments:v1.4.2",
    ],
}
DEPLOY_MINIMAL: dict[str, Any] = {
    "type": "deploy",
    "event_id": "d-min",
    "occurred_at": "2026-03-04T09:20:00Z",
    "source": "manual",
    "service": "payments",
    "environment": "staging",
    "release": "v2",
    "action": "deploy",
}
INCIDENT_FULL: dict[str, Any] = {
    "type": "incident",
    "event_id": "pd-1",
    "occurred_at": "2026-03-04T09:19:59.999Z",
    "source": "pagerduty",
    "service": "payments",
    "environment": "prod",
    "incident_id": "INC-42",
    "status": "acknowledged",
    "severity": "sev2",
    "title": "5xx spike on /charge",
    "suspected_release": "v1.5.0",
    "release_aliases": ["3f786850e387550fdab836ed7e6dc881de23001b"],
}
INCIDENT_MINIMAL: dict[str, Any] = {
    "type": "incident",
    "event_id": "pd-2",
    "occurred_at": "2026-03-04T09:25:00-05:30",
    "source": "pagerduty",
    "service": "payments",
    "environment": "prod",
    "incident_id": "INC-43",
    "status": "opened",
    "severity": "sev5",
    "title": "",
}
FLAG_FULL: dict[str, Any] = {
    "type": "security_flag",
    "event_id": "trivy-9",
    "occurred_at": "2026-03-04T08:00:00Z",
    "source": "trivy",
    "service": "payments",
    "flag_id": "CVE-2026-1111",
    "release": "v1.4.2",
    "status": "raised",
    "severity": "critical",
    "vulnerabilities": ["CVE-2026-1111", "GHSA-abcd-efgh-ijkl"],
    "title": "RCE in libfoo",
    "fixed_in": "v1.4.3",
    "release_aliases": ["ghcr.io/acme/payments:v1.4.2", "sha256:" + "ab" * 32],
}
FLAG_MINIMAL: dict[str, Any] = {
    "type": "security_flag",
    "event_id": "trivy-10",
    "occurred_at": "2026-03-04T08:00:00.123456789Z",
    "source": "trivy",
    "service": "payments",
    "flag_id": "CVE-2026-2222",
    "release": "v1.4.2",
    "status": "cleared",
    "severity": "low",
    "title": "fixed",
}
EVENTS: dict[str, dict[str, Any]] = {
    "deploy_full": DEPLOY_FULL,
    "deploy_minimal": DEPLOY_MINIMAL,
    "incident_full": INCIDENT_FULL,
    "incident_minimal": INCIDENT_MINIMAL,
    "flag_full": FLAG_FULL,
    "flag_minimal": FLAG_MINIMAL,
}


def make_alert(status: str = "firing", release_rec: str | None = "v1.4.3") -> Alert:
    """A realistic alert with evidence and (unless ``release_rec`` is ...) a recommendation."""
    trigger = "argo-7781"
    return Alert(
        alert_id=alert_id_for("rollback-to-flagged-release", "payments", "prod", "v1.4.2", trigger),
        rule="rollback-to-flagged-release",
        status=status,
        severity="critical",
        service="payments",
        environment="prod",
        release="v1.4.2",
        trigger=trigger,
        occurred_at_ms=parse_rfc3339_ms("2026-03-04T09:20:00.250Z"),
        summary="payments/prod rolled back to v1.4.2, flagged by CVE-2026-1111 (INC-42)",
        notify=("sre", "security"),
        evidence=(
            Evidence("argo-7781", "deploy", parse_rfc3339_ms("2026-03-04T09:20:00.250Z")),
            Evidence("trivy-9", "security_flag", parse_rfc3339_ms("2026-03-04T08:00:00Z")),
        ),
        recommendation=Recommendation(release_rec, "move to v1.4.3, which fixes CVE-2026-1111"),
        detected_at_ms=parse_rfc3339_ms("2026-03-04T09:20:01.007Z"),
        release_aliases=("ghcr.io/acme/payments:v1.4.2", "sha256:" + "ab" * 32),
        evidence_count=7,
    )


def make_dead_letter(**overrides: Any) -> dict[str, Any]:
    dl: dict[str, Any] = {
        "reason": "validation",
        "detail": "field 'action': 'rollout' is not one of deploy, rollback",
        "topic": "relsec.deploys",
        "partition": 3,
        "offset": 2**40 + 17,
        "key": b"payments",
        "value": b"\xc3\x01\x00\xffnot really avro",
        "detected_at": "2026-03-04T09:20:01.007Z",
    }
    dl.update(overrides)
    return dl
