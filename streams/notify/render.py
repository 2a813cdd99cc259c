"""Pure renderings of one alert for each destination type, and the webhook signature.

Input is the alert dict (``Alert.to_dict()`` shape, SPEC §4). Nothing here does
I/O, so every message can be tested byte for byte.

* PagerDuty Events API v2: :func:`pagerduty_event` -- ``dedup_key`` is the
  ``alert_id``, a firing alert triggers, a retracted one resolves.
* Slack incoming webhooks: :func:`slack_message` -- Block Kit blocks with a
  plain ``text`` fallback (shown in notifications and by clients without blocks).
* Generic webhook: :func:`webhook_body` (the alert JSON) and
  :func:`signature` (``sha256=<hex HMAC-SHA256 of the body>``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from streams.notify.config import LINK_FIELDS, Link

# relsec severity -> PagerDuty Events v2 severity (critical, error, warning, info).
PAGERDUTY_SEVERITY: Final[Mapping[str, str]] = {
    "info": "info",
    "low": "warning",
    "medium": "warning",
    "high": "error",
    "critical": "critical",
}
PAGERDUTY_SUMMARY_MAX: Final = 1024
SLACK_TEXT_MAX: Final = 2900  # a section's text may hold 3000 characters

_ADVISORY_ID = re.compile(r"\b(CVE-\d{4}-\d{4,}|GHSA(?:-[23456789cfghjmpqrvwx]{4}){3})\b", re.I)
_SEVERITY_EMOJI: Final[Mapping[str, str]] = {
    "critical": ":red_circle:",
    "high": ":large_orange_circle:",
    "medium": ":large_yellow_circle:",
    "low": ":large_blue_circle:",
    "info": ":white_circle:",
}


def pagerduty_severity(severity: str) -> str:
    """The PagerDuty severity of a relsec severity (unknown ones map to ``error``)."""
    return PAGERDUTY_SEVERITY.get(severity, "error")


def advisory_ids(alert: Mapping[str, Any]) -> list[str]:
    """CVE / GHSA ids the alert names (summary, trigger, any ``flags`` list), in order, unique."""
    texts = [str(alert.get("summary") or ""), str(alert.get("trigger") or "")]
    for key in ("flags", "vulnerabilities"):
        extra = alert.get(key)
        if isinstance(extra, list):
            texts.extend(str(x) for x in extra)
    seen: dict[str, None] = {}
    for text in texts:
        for m in _ADVISORY_ID.finditer(text):
            ident = m.group(1)
            ident = ident.upper() if ident.upper().startswith("CVE") else "GHSA" + ident[4:].lower()
            seen.setdefault(ident, None)
    return list(seen)


def flag_refs(alert: Mapping[str, Any]) -> list[str]:
    """The flags an alert is about: the ``flag_id`` that triggered it, then CVE / GHSA ids."""
    refs: list[str] = []
    if alert.get("rule") == "flag-raised-on-running-release" and alert.get("trigger"):
        refs.append(str(alert["trigger"]))
    extra = alert.get("flags")
    if isinstance(extra, list):
        refs.extend(str(x) for x in extra)
    refs.extend(advisory_ids(alert))
    return list(dict.fromkeys(refs))


def advisory_url(ident: str) -> str | None:
    """A public page for a CVE (NVD) or GHSA (GitHub Advisory Database) id; else ``None``."""
    if _ADVISORY_ID.fullmatch(ident) is None:
        return None
    if ident.upper().startswith("CVE-"):
        return f"https://nvd.nist.gov/vuln/detail/{ident.upper()}"
    return f"https://github.com/advisories/{ident}"


_INCIDENT_IN_TEXT = re.compile(r"\b[Ii]ncident ([A-Za-z0-9][^\s,;()]*)")


def incident_refs(alert: Mapping[str, Any]) -> list[str]:
    """The incident(s) an alert involves.

    ``incident-on-flagged-release`` is triggered by an incident: its trigger is
    the ``incident_id``. The engine's summaries name incidents as
    ``incident <id>``; an ``incident_id`` field is used when present. When none
    of these names one, the incident events among the evidence are given by
    event id.
    """
    refs: list[str] = []
    if alert.get("incident_id"):
        refs.append(str(alert["incident_id"]))
    if alert.get("rule") == "incident-on-flagged-release" and alert.get("trigger"):
        refs.append(str(alert["trigger"]))
    for m in _INCIDENT_IN_TEXT.finditer(str(alert.get("summary") or "")):
        refs.append(m.group(1).rstrip("."))
    if not refs:
        for ev in alert.get("evidence") or []:
            if isinstance(ev, Mapping) and ev.get("type") == "incident":
                refs.append(f"event {ev.get('event_id')}")
    return list(dict.fromkeys(refs))


def _recommendation_text(alert: Mapping[str, Any]) -> str | None:
    rec = alert.get("recommendation")
    if not isinstance(rec, Mapping):
        return None
    text = str(rec.get("text") or "")
    release = rec.get("release")
    if release and str(release) not in text:
        return f"{text} (recommended release: {release})" if text else f"move to {release}"
    return text or None


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link_fields(alert: Mapping[str, Any], url_quoted: bool) -> dict[str, str]:
    values = {key: str(alert.get(key) or "") for key in LINK_FIELDS}
    if url_quoted:
        values = {key: quote(value, safe="") for key, value in values.items()}
    return values


def pagerduty_event(
    alert: Mapping[str, Any], routing_key: str, links: tuple[Link, ...] = ()
) -> dict[str, Any]:
    """The Events API v2 body for ``POST /v2/enqueue``.

    A firing alert is a ``trigger`` with a full payload; a retracted one is a
    ``resolve`` of the same ``dedup_key`` (PagerDuty needs nothing else to
    resolve, and ignores a payload there).
    """
    alert_id = str(alert["alert_id"])
    if alert.get("status") == "retracted":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert_id}
    service = str(alert.get("service") or "")
    environment = str(alert.get("environment") or "")
    summary = str(alert.get("summary") or f"{alert.get('rule')} on {service}/{environment}")
    custom: dict[str, Any] = {
        "alert_id": alert_id,
        "rule": alert.get("rule"),
        "relsec_severity": alert.get("severity"),
        "service": service,
        "environment": environment,
        "release": alert.get("release"),
        "notify": list(alert.get("notify") or []),
        "occurred_at": alert.get("occurred_at"),
        "detected_at": alert.get("detected_at"),
        "evidence": list(alert.get("evidence") or []),
        "recommendation": alert.get("recommendation"),
    }
    ids = advisory_ids(alert)
    flags = flag_refs(alert)
    if flags:
        custom["flags"] = flags
    incidents = incident_refs(alert)
    if incidents:
        custom["incidents"] = incidents
    payload: dict[str, Any] = {
        "summary": _truncate(summary, PAGERDUTY_SUMMARY_MAX),
        "source": f"{service}/{environment}" if environment else service,
        "severity": pagerduty_severity(str(alert.get("severity"))),
        "component": service,
        "group": environment,
        "class": alert.get("rule"),
        "custom_details": custom,
    }
    if alert.get("occurred_at"):
        payload["timestamp"] = alert["occurred_at"]
    in_url, in_text = _link_fields(alert, url_quoted=True), _link_fields(alert, url_quoted=False)
    rendered = [
        {"href": link.href.format_map(in_url), "text": link.text.format_map(in_text)}
        for link in links
    ]
    rendered += [{"href": url, "text": i} for i in ids if (url := advisory_url(i))]
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert_id,
        "client": "relsec",
        "payload": payload,
    }
    if rendered:
        body["links"] = rendered
    return body


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_flag(ref: str) -> str:
    url = advisory_url(ref)
    return f"<{url}|{slack_escape(ref)}>" if url else slack_escape(ref)


def slack_message(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body: Block Kit blocks plus a ``text`` fallback."""
    esc = slack_escape
    rule = str(alert.get("rule") or "")
    severity = str(alert.get("severity") or "")
    retracted = alert.get("status") == "retracted"
    service = str(alert.get("service") or "")
    environment = str(alert.get("environment") or "")
    release = str(alert.get("release") or "")
    summary = str(alert.get("summary") or "")

    if retracted:
        headline = f"Retracted: {rule} ({severity}) on {service}/{environment}"
        icon = ":white_check_mark:"
    else:
        headline = f"{severity.upper()}: {rule} on {service}/{environment}"
        icon = _SEVERITY_EMOJI.get(severity, ":warning:")

    lines = [f"{icon} *{esc(headline)}*"]
    if summary:
        lines.append(esc(summary))
    if retracted:
        lines.append("_A later event invalidated this alert; no action is needed for it._")
    detail = [
        f"*Rule:* `{esc(rule)}`",
        f"*Severity:* {esc(severity)}",
        f"*Service:* {esc(service)}",
        f"*Environment:* {esc(environment)}",
        f"*Release:* `{esc(release)}`",
    ]
    flags = flag_refs(alert)
    if flags:
        detail.append("*Flags:* " + ", ".join(_slack_flag(f) for f in flags))
    incidents = incident_refs(alert)
    if incidents:
        detail.append("*Incident:* " + esc(", ".join(incidents)))
    rec = _recommendation_text(alert)

    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _truncate("\n".join(lines), SLACK_TEXT_MAX)},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _truncate("\n".join(detail), SLACK_TEXT_MAX)},
        },
    ]
    if rec and not retracted:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _truncate(f"*Recommendation:* {esc(rec)}", SLACK_TEXT_MAX),
                },
            }
        )
    context = f"alert `{esc(str(alert.get('alert_id')))}`"
    if alert.get("occurred_at"):
        context += f" · occurred {esc(str(alert['occurred_at']))}"
    notify = alert.get("notify") or []
    if notify:
        context += f" · for {esc(', '.join(str(n) for n in notify))}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})

    fallback = headline + (f" — {summary}" if summary else "")
    return {"text": _truncate(esc(fallback), SLACK_TEXT_MAX), "blocks": blocks}


def webhook_body(alert: Mapping[str, Any]) -> bytes:
    """The alert as JSON (UTF-8, compact), the body of a generic webhook delivery."""
    return json.dumps(alert, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signature(body: bytes, secret: str) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``body`` under ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(body: bytes, secret: str, header_value: str) -> bool:
    """Constant-time check of a signature header (what a receiver does)."""
    return hmac.compare_digest(signature(body, secret), header_value)
