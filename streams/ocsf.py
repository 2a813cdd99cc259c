"""The SIEM rendition of a relsec alert: an OCSF Detection Finding (class_uid 2004).

``alert_to_ocsf(alert)`` takes the ``Alert.to_dict()`` shape and returns a plain
JSON-ready dict following OCSF 1.5.0 (the schema version py-ocsf-models 0.10
models; the tests validate against it). ``alert_value_to_ocsf(alert)`` returns the
same dict from an :class:`~agents.model.alerts.Alert` value, without the dict in
between (the worker's path: one per alert it emits). Mapping decisions
(docs/schemas.md):

* activity: a firing alert is ``Create`` (1), a retraction is ``Close`` (3);
  ``type_uid`` = 2004 * 100 + activity_id.
* status: firing -> ``New`` (1); retracted -> ``Other`` (99) with status
  ``Retracted``: the pipeline withdrew the alert because a late event made its
  condition false, which is neither a human review (Suppressed) nor a fix
  (Resolved).
* severity: info/low/medium/high/critical -> 1/2/3/4/5.
* time: ``detected_at`` (when relsec decided); ``finding_info.first_seen_time``
  / ``last_seen_time`` span the evidence's event times.
* ``finding_info.uid`` is the ``alert_id``, so a SIEM correlates a firing and
  its retraction; ``metadata.uid`` is unique per alert event (id + status).
* resources: the service, with environment and release; the release's other
  names (SPEC §8 ``release_aliases``) as the resource's ``tags`` entry
  ``release_aliases`` (a key/value object with ``values``) and in its ``data``;
  evidences: one per evidence event (in ``data``); remediation: the
  recommendation's text; vulnerabilities: CVE ids named in the summary.
* ``finding_info.related_events_count``: how many events made the rule fire
  (``evidence_count``, which may exceed the evidence listed).
* ``unmapped.relsec`` keeps what OCSF has no attribute for: the rule, the
  trigger, the audiences, the aliases and the evidence count as relsec names them.

The output validates against OCSF 1.5.0's JSON Schema (``ocsf-json-schema``)
and py-ocsf-models (tests/test_ocsf.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from typing import Any, Final

from agents.model.alerts import Alert
from agents.model.timefmt import format_rfc3339_ms, parse_rfc3339_ms

OCSF_VERSION: Final = "1.5.0"
CLASS_UID: Final = 2004
CATEGORY_UID: Final = 2

ACTIVITY_CREATE: Final = 1
ACTIVITY_CLOSE: Final = 3
_ACTIVITY_NAMES: Final = {ACTIVITY_CREATE: "Create", ACTIVITY_CLOSE: "Close"}

STATUS_NEW: Final = 1
STATUS_OTHER: Final = 99
_RETRACTED_DETAIL: Final = "retracted by relsec: a late event made the condition false"

SEVERITY_IDS: Final = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_SEVERITY_NAMES: Final = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

RULE_TITLES: Final = {
    "rollback-to-flagged-release": "Rollback to a release with an active security flag",
    "flagged-release-deployed": "Deploy of a release with an active security flag",
    "redeploy-of-rolled-back-release": "Redeploy of a release rolled back during an incident",
    "flag-raised-on-running-release": "Security flag raised on a running release",
    "rollback-performed": "Rollback performed",
    "release-flip-flop": "Release flip-flop",
    "incident-on-flagged-release": "Incident on a release with an active security flag",
    "security-change-during-incident": "Security team change during an open incident",
}

_CVE: Final = re.compile(r"\bCVE-\d{4}-\d{4,}\b")


@cache
def relsec_version() -> str:
    """The installed relsec version (package metadata)."""
    try:
        return metadata.version("relsec")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _ms(value: Any) -> int:
    return parse_rfc3339_ms(value) if isinstance(value, str) else int(value)


def alert_to_ocsf(alert: Mapping[str, Any], value: Alert | None = None) -> dict[str, Any]:
    """The OCSF Detection Finding of one alert event (``Alert.to_dict()`` shape).

    ``value``: the :class:`Alert` the dict was made from, when at hand (the worker):
    its instants are taken from it instead of being parsed back from the text.
    """
    evidence = list(alert.get("evidence") or ())
    if value is not None:
        detected_ms = value.detected_at_ms
        evidence_ms = [e.occurred_at_ms for e in value.evidence]
    else:
        detected_ms = (
            _ms(alert["detected_at"]) if alert.get("detected_at") else _ms(alert["occurred_at"])
        )
        evidence_ms = [_ms(e["occurred_at"]) for e in evidence]
    rec = alert.get("recommendation")
    return _detection_finding(
        alert_id=alert["alert_id"],
        rule=alert["rule"],
        status=alert["status"],
        severity=alert["severity"],
        summary=alert["summary"],
        service=alert["service"],
        environment=alert["environment"],
        release=alert["release"],
        trigger=alert.get("trigger", ""),
        occurred_at=alert["occurred_at"],
        occurred_ms=value.occurred_at_ms if value is not None else _ms(alert["occurred_at"]),
        detected_ms=detected_ms,
        evidence=[
            (e["event_id"], e["type"], e["occurred_at"], ms)
            for e, ms in zip(evidence, evidence_ms, strict=True)
        ],
        evidence_count=max(int(alert.get("evidence_count") or 0), len(evidence)),
        aliases=[str(a) for a in alert.get("release_aliases") or ()],
        notify=list(alert.get("notify") or ()),
        recommendation=(rec["text"], rec.get("release")) if rec else None,
    )


_INSTANT_TEXT: dict[int, str] = {}
_INSTANT_TEXT_LIMIT: Final = 65_536


def _instant_text(ms: int) -> str:
    """``format_rfc3339_ms(ms)``, remembered: an event is evidence of many alerts, and the
    worker renders an alert event for each firing and each retraction."""
    text = _INSTANT_TEXT.get(ms)
    if text is None:
        if len(_INSTANT_TEXT) >= _INSTANT_TEXT_LIMIT:
            _INSTANT_TEXT.clear()
        text = _INSTANT_TEXT[ms] = format_rfc3339_ms(ms)
    return text


def alert_value_to_ocsf(alert: Alert) -> dict[str, Any]:
    """``alert_to_ocsf(alert.to_dict())``, built from the value (equal, key order too; a
    test holds the two together). Instants come from the value; only the two that OCSF
    carries as relsec's text (the evidence's and the alert's ``occurred_at``) are
    formatted."""
    rec = alert.recommendation
    return _detection_finding(
        alert_id=alert.alert_id,
        rule=alert.rule,
        status=alert.status,
        severity=alert.severity,
        summary=alert.summary,
        service=alert.service,
        environment=alert.environment,
        release=alert.release,
        trigger=alert.trigger,
        occurred_at=_instant_text(alert.occurred_at_ms),
        occurred_ms=alert.occurred_at_ms,
        detected_ms=alert.detected_at_ms,
        evidence=[
            (e.event_id, e.type, _instant_text(e.occurred_at_ms), e.occurred_at_ms)
            for e in alert.evidence
        ],
        evidence_count=max(alert.evidence_count, len(alert.evidence)),
        aliases=list(alert.release_aliases),
        notify=list(alert.notify),
        recommendation=(rec.text, rec.release) if rec is not None else None,
    )


def _detection_finding(
    *,
    alert_id: str,
    rule: str,
    status: str,
    severity: str,
    summary: str,
    service: str,
    environment: str,
    release: str,
    trigger: str,
    occurred_at: str,
    occurred_ms: int,
    detected_ms: int,
    evidence: list[tuple[str, str, str, int]],
    evidence_count: int,
    aliases: list[str],
    notify: list[str],
    recommendation: tuple[str, str | None] | None,
) -> dict[str, Any]:
    """The Detection Finding of an alert event, from its parts (both entry points above
    take them from their own shape); ``evidence``: (event_id, type, occurred_at text,
    occurred_at ms) of each entry; ``recommendation``: (text, release)."""
    retracted = status == "retracted"
    activity_id = ACTIVITY_CLOSE if retracted else ACTIVITY_CREATE
    activity_name = _ACTIVITY_NAMES[activity_id]
    severity_id = SEVERITY_IDS.get(severity, 0)
    # One pass over the evidence for the four places it appears (one alert per
    # firing and per retraction: this runs for every alert the worker emits).
    first_seen = last_seen = occurred_ms if not evidence else evidence[0][3]
    related_events = []
    evidences = []
    kinds = set()
    for event_id, kind, text, ms in evidence:
        if ms < first_seen:
            first_seen = ms
        elif ms > last_seen:
            last_seen = ms
        related_events.append({"uid": event_id, "type": kind})
        evidences.append(
            {"name": kind, "data": {"event_id": event_id, "type": kind, "occurred_at": text}}
        )
        kinds.add(kind)
    finding_info: dict[str, Any] = {
        "uid": alert_id,
        "title": RULE_TITLES.get(rule, rule),
        "desc": summary,
        "types": [rule],
        "analytic": {"name": rule, "uid": rule, "type_id": 1, "type": "Rule"},
        "created_time": detected_ms,
        "first_seen_time": first_seen,
        "last_seen_time": last_seen,
        "related_events": related_events,
        "related_events_count": evidence_count,
        "data_sources": sorted(kinds),
    }
    resource: dict[str, Any] = {
        "type": "service",
        "name": service,
        "uid": f"{service}/{environment}",
        "version": release,
        "labels": [f"environment:{environment}", f"release:{release}"],
        "data": {"service": service, "environment": environment, "release": release},
    }
    if aliases:
        resource["tags"] = [{"name": "release_aliases", "values": aliases}]
        resource["data"]["release_aliases"] = aliases
    relsec: dict[str, Any] = {
        "rule": rule,
        "status": status,
        "trigger": trigger,
        "occurred_at": occurred_at,
        "notify": notify,
        "evidence_count": evidence_count,
    }
    out: dict[str, Any] = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Detection Finding: {activity_name}",
        "severity_id": severity_id,
        "severity": _SEVERITY_NAMES.get(severity_id, "Unknown"),
        "status_id": STATUS_OTHER if retracted else STATUS_NEW,
        "status": "Retracted" if retracted else "New",
        "time": detected_ms,
        "message": summary,
        "finding_info": finding_info,
        "evidences": evidences,
        "resources": [resource],
        "metadata": {
            "version": OCSF_VERSION,
            "uid": f"{alert_id}:{status}",
            "correlation_uid": alert_id,
            "product": {"name": "relsec", "vendor_name": "relsec", "version": relsec_version()},
            "labels": [f"notify:{n}" for n in notify],
        },
        "unmapped": {"relsec": relsec},
    }
    if aliases:
        relsec["release_aliases"] = aliases
    if retracted:
        out["status_detail"] = _RETRACTED_DETAIL
    if recommendation is not None:
        text, recommended = recommendation
        out["remediation"] = {"desc": text}
        relsec["recommended_release"] = recommended
    if "CVE-" in summary:
        cves = list(dict.fromkeys(_CVE.findall(summary)))
        if cves:
            out["vulnerabilities"] = [{"cve": {"uid": c}} for c in cves]
    return out
