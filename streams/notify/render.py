"""Pure renderings of one alert for each destination type, and the webhook signature.

Input is the alert dict (``Alert.to_dict()`` shape, SPEC §4), or a group of
them (:class:`~streams.notify.groups.GroupSnapshot`). Nothing here does I/O, so
every message can be tested byte for byte.

* PagerDuty Events API v2: :func:`pagerduty_event` (one alert) and
  :func:`pagerduty_group_event` (a group: ``dedup_key`` is the ``group_id``;
  ``open`` and ``update`` trigger, ``resolve`` resolves). The whole event stays
  under PagerDuty's 512 KB: lists in ``custom_details`` are halved, and say so,
  until it fits.
* Slack incoming webhooks: :func:`slack_message` and :func:`slack_group_message`
  -- Block Kit sections with a plain ``text`` fallback. A section's text stays
  within Slack's 3,000 characters by listing whole entries (a flag and its
  advisory link, a finding) and saying how many are left out; a message has
  far fewer than Slack's 50 blocks.
* Generic webhook: :func:`webhook_body` (the alert JSON) and
  :func:`signature` (``sha256=<hex HMAC-SHA256 of the body>``).

Release aliases (SPEC §8) and the evidence count (when the alert lists fewer
evidence events than made it fire) are shown in every rendition.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from agents.model.timefmt import format_rfc3339_ms
from streams.notify.config import LINK_FIELDS, Link
from streams.notify.groups import OPEN, RESOLVE, UPDATE, GroupSnapshot, severity_rank

# relsec severity -> PagerDuty Events v2 severity (critical, error, warning, info).
PAGERDUTY_SEVERITY: Final[Mapping[str, str]] = {
    "info": "info",
    "low": "warning",
    "medium": "warning",
    "high": "error",
    "critical": "critical",
}
PAGERDUTY_SUMMARY_MAX: Final = 1024
PAGERDUTY_EVENT_MAX_BYTES: Final = 512 * 1024  # the Events API's limit for one whole event
# what relsec aims below: room for the routing key and a proxy's re-encoding
PAGERDUTY_EVENT_BUDGET_BYTES: Final = 500_000
PAGERDUTY_MAX_LINKS: Final = 20
SLACK_TEXT_MAX: Final = 3000  # a section's (and a text object's) limit
SLACK_MAX_BLOCKS: Final = 50
# how many of a group's members a notice lists by name (the count covers all)
GROUP_LISTED_MEMBERS: Final = 50
GROUP_SUMMARY_FINDINGS: Final = 3
MEMBER_SUMMARY_MAX: Final = 300

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
    """``text`` cut to ``limit`` characters, at a space when one is near, with ``…``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 3 // 4:
        cut = cut[:space]
    return cut + "…"


def join_bounded(
    entries: Sequence[str],
    limit: int,
    *,
    prefix: str = "",
    sep: str = ", ",
    more: str = " … and {n} more",
    total: int | None = None,
) -> str:
    """``prefix`` and as many whole ``entries`` as fit in ``limit`` characters.

    Entries are never cut (a Slack link cut in half shows its raw markup);
    when some do not fit, ``more`` (with ``{n}``, the number left out) ends the
    text. ``total`` is the number of entries there are, when ``entries`` lists
    only the first of them. A first entry longer than the whole budget is cut
    on its own, unless it holds a link.
    """
    total = len(entries) if total is None else max(total, len(entries))
    out, shown = prefix, 0
    for entry in entries:
        rest_after = total - shown - 1
        tail = more.format(n=rest_after) if rest_after > 0 else ""
        candidate = out + (sep if shown else "") + entry
        if len(candidate) + len(tail) <= limit:
            out, shown = candidate, shown + 1
            continue
        if shown == 0 and "<" not in entry:
            room = limit - len(out) - len(tail)
            if room > 20:
                return out + _truncate(entry, room) + tail
        break
    rest = total - shown
    return out + (more.format(n=rest) if rest > 0 else "")


def _link_fields(alert: Mapping[str, Any], url_quoted: bool) -> dict[str, str]:
    values = {key: str(alert.get(key) or "") for key in LINK_FIELDS}
    if url_quoted:
        values = {key: quote(value, safe="") for key, value in values.items()}
    return values


def _rendered_links(
    alert: Mapping[str, Any], links: tuple[Link, ...], ids: Sequence[str]
) -> list[dict[str, str]]:
    in_url, in_text = _link_fields(alert, url_quoted=True), _link_fields(alert, url_quoted=False)
    rendered = [
        {"href": link.href.format_map(in_url), "text": link.text.format_map(in_text)}
        for link in links
    ]
    for ident in ids:
        if len(rendered) >= PAGERDUTY_MAX_LINKS:
            break
        if url := advisory_url(ident):
            rendered.append({"href": url, "text": ident})
    return rendered


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def fit_pagerduty_event(body: dict[str, Any], budget: int = PAGERDUTY_EVENT_BUDGET_BYTES) -> None:
    """Shrink ``body`` in place until its JSON is at most ``budget`` bytes.

    The biggest list in ``payload.custom_details`` (evidence, flags, members, ...)
    loses its second half, and ``<name>_omitted`` counts what was dropped;
    when no list is left to halve, the longest string there is cut in half.
    The summary, severity and keys PagerDuty needs are never touched.
    """
    details = body.get("payload", {}).get("custom_details")
    if not isinstance(details, dict):
        return
    while _json_size(body) > budget:
        lists = [(k, v) for k, v in details.items() if isinstance(v, list) and len(v) > 1]
        if lists:
            name, values = max(lists, key=lambda kv: _json_size(kv[1]))
            keep = len(values) // 2
            details[name] = values[:keep]
            omitted = f"{name}_omitted"
            details[omitted] = int(details.get(omitted) or 0) + len(values) - keep
            continue
        strings = [(k, v) for k, v in details.items() if isinstance(v, str) and len(v) > 64]
        nested = [(k, v) for k, v in details.items() if isinstance(v, (dict, list)) and v]
        if strings:
            name, text = max(strings, key=lambda kv: len(kv[1]))
            details[name] = _truncate(text, len(text) // 2)
        elif nested:
            name, _ = max(nested, key=lambda kv: _json_size(kv[1]))
            details[name] = "(left out: the event would pass PagerDuty's 512 KB limit)"
        else:
            return


def _alert_details(alert: Mapping[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {
        "alert_id": str(alert["alert_id"]),
        "rule": alert.get("rule"),
        "relsec_severity": alert.get("severity"),
        "service": str(alert.get("service") or ""),
        "environment": str(alert.get("environment") or ""),
        "release": alert.get("release"),
        "notify": list(alert.get("notify") or []),
        "occurred_at": alert.get("occurred_at"),
        "detected_at": alert.get("detected_at"),
        "evidence": list(alert.get("evidence") or []),
        "recommendation": alert.get("recommendation"),
    }
    aliases = list(alert.get("release_aliases") or [])
    if aliases:
        details["release_aliases"] = aliases
    listed = len(details["evidence"])
    evidence_count = max(int(alert.get("evidence_count") or 0), listed)
    if evidence_count > listed:
        details["evidence_count"] = evidence_count
    flags = flag_refs(alert)
    if flags:
        details["flags"] = flags
    incidents = incident_refs(alert)
    if incidents:
        details["incidents"] = incidents
    return details


def pagerduty_event(
    alert: Mapping[str, Any],
    routing_key: str,
    links: tuple[Link, ...] = (),
    dedup_key: str | None = None,
) -> dict[str, Any]:
    """The Events API v2 body for ``POST /v2/enqueue`` about one alert.

    A firing alert is a ``trigger`` with a full payload; a retracted one is a
    ``resolve`` of the same ``dedup_key`` (PagerDuty needs nothing else to
    resolve, and ignores a payload there). ``dedup_key`` defaults to the
    ``alert_id``.
    """
    key = dedup_key or str(alert["alert_id"])
    if alert.get("status") == "retracted":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    service = str(alert.get("service") or "")
    environment = str(alert.get("environment") or "")
    summary = str(alert.get("summary") or f"{alert.get('rule')} on {service}/{environment}")
    payload: dict[str, Any] = {
        "summary": _truncate(summary, PAGERDUTY_SUMMARY_MAX),
        "source": f"{service}/{environment}" if environment else service,
        "severity": pagerduty_severity(str(alert.get("severity"))),
        "component": service,
        "group": environment,
        "class": alert.get("rule"),
        "custom_details": _alert_details(alert),
    }
    if alert.get("occurred_at"):
        payload["timestamp"] = alert["occurred_at"]
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "client": "relsec",
        "payload": payload,
    }
    rendered = _rendered_links(alert, links, advisory_ids(alert))
    if rendered:
        body["links"] = rendered
    fit_pagerduty_event(body)
    return body


def severity_counts(alerts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many alerts of each severity, most severe first (only those present)."""
    counts: dict[str, int] = {}
    for alert in alerts:
        sev = str(alert.get("severity"))
        counts[sev] = counts.get(sev, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -severity_rank(kv[0])))


def _breakdown(alerts: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{n} {sev}" for sev, n in severity_counts(alerts).items())


def member_finding(alert: Mapping[str, Any]) -> str:
    """What one group member is about, in a few words: its flag, else its trigger."""
    refs = flag_refs(alert)
    if refs:
        return refs[0] if len(refs) == 1 else f"{refs[0]} (+{len(refs) - 1})"
    return str(alert.get("trigger") or alert.get("alert_id"))


def _group_aliases(snapshot: GroupSnapshot) -> list[str]:
    seen: dict[str, None] = {}
    for alert in snapshot.alerts:
        for alias in alert.get("release_aliases") or []:
            if alias != snapshot.key.release:
                seen.setdefault(str(alias), None)
    return list(seen)


def _window(snapshot: GroupSnapshot) -> dict[str, str] | None:
    if snapshot.key.alert_id:
        return None
    start = snapshot.key.window_start_ms
    return {
        "start": format_rfc3339_ms(start),
        "end": format_rfc3339_ms(start + snapshot.window_ms),
    }


def _headline_key(snapshot: GroupSnapshot) -> str:
    k = snapshot.key
    return f"{k.rule} on {k.service}/{k.environment}, release {k.release}"


def group_summary(snapshot: GroupSnapshot) -> str:
    """One line for a group of several alerts: count, breakdown, the most severe findings."""
    alerts = snapshot.alerts
    top = [member_finding(a) for a in alerts[:GROUP_SUMMARY_FINDINGS]]
    more = len(alerts) - len(top)
    findings = ", ".join(top) + (f" and {more} more" if more > 0 else "")
    return (
        f"{len(alerts)} alerts {_headline_key(snapshot)} ({_breakdown(alerts)}); "
        f"most severe: {findings}"
    )


def pagerduty_group_event(
    snapshot: GroupSnapshot,
    action: str,
    routing_key: str,
    links: tuple[Link, ...] = (),
) -> dict[str, Any]:
    """The Events API v2 body telling PagerDuty about a group (``dedup_key`` = ``group_id``).

    ``resolve`` resolves the incident. ``open`` and ``update`` are triggers of
    the same key: PagerDuty keeps one alert (one page) and logs each update on
    it. A group of one member is shown as that alert.
    """
    key = snapshot.group_id
    if action == RESOLVE:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    lead = snapshot.lead
    if lead is None:
        raise ValueError(f"group {key}: nothing to trigger, it has no member")
    group_info: dict[str, Any] = {
        "group_id": key,
        "alerts": snapshot.count,
        "severity_counts": severity_counts(snapshot.alerts),
    }
    window = _window(snapshot)
    if window is not None:
        group_info["window"] = window
    if snapshot.retracted:
        group_info["retracted"] = snapshot.retracted
    if snapshot.count == 1:
        single = pagerduty_event(lead, routing_key, links, dedup_key=key)
        single["payload"]["custom_details"]["group"] = group_info
        fit_pagerduty_event(single)
        return single
    k = snapshot.key
    listed = snapshot.alerts[:GROUP_LISTED_MEMBERS]
    details: dict[str, Any] = {
        "group_id": key,
        "rule": k.rule,
        "service": k.service,
        "environment": k.environment,
        "release": k.release,
        "alerts": snapshot.count,
        "severity_counts": group_info["severity_counts"],
        "relsec_severity": snapshot.severity,
        "notify": list(snapshot.notify),
        "most_severe": [
            {
                "alert_id": a["alert_id"],
                "severity": a.get("severity"),
                "finding": member_finding(a),
                "occurred_at": a.get("occurred_at"),
                "summary": _truncate(str(a.get("summary") or ""), MEMBER_SUMMARY_MAX),
            }
            for a in listed
        ],
        "recommendation": lead.get("recommendation"),
    }
    if snapshot.count > len(listed):
        details["most_severe_omitted"] = snapshot.count - len(listed)
    if window is not None:
        details["window"] = window
    if snapshot.retracted:
        details["retracted"] = snapshot.retracted
    aliases = _group_aliases(snapshot)
    if aliases:
        details["release_aliases"] = aliases
    environment = k.environment
    payload: dict[str, Any] = {
        "summary": _truncate(group_summary(snapshot), PAGERDUTY_SUMMARY_MAX),
        "source": f"{k.service}/{environment}" if environment else k.service,
        "severity": pagerduty_severity(snapshot.severity),
        "component": k.service,
        "group": environment,
        "class": k.rule,
        "custom_details": details,
    }
    if lead.get("occurred_at"):
        payload["timestamp"] = lead["occurred_at"]
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "client": "relsec",
        "payload": payload,
    }
    ids: list[str] = []
    for alert in listed:
        ids.extend(advisory_ids(alert))
    rendered = _rendered_links(lead, links, list(dict.fromkeys(ids)))
    if rendered:
        body["links"] = rendered
    fit_pagerduty_event(body)
    return body


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_flag(ref: str) -> str:
    url = advisory_url(ref)
    return f"<{url}|{slack_escape(ref)}>" if url else slack_escape(ref)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(text, SLACK_TEXT_MAX)}}


def _release_line(release: str, aliases: Sequence[str]) -> str:
    line = f"*Release:* `{slack_escape(release)}`"
    others = [a for a in aliases if a != release]
    if not others:
        return line
    return (
        join_bounded(
            [f"`{slack_escape(a)}`" for a in others],
            SLACK_TEXT_MAX // 3,
            prefix=line + " (also ",
            more=" … and {n} more",
        )
        + ")"
    )


def slack_message(alert: Mapping[str, Any], context_extra: str = "") -> dict[str, Any]:
    """A Slack incoming-webhook body about one alert: Block Kit blocks plus a ``text`` fallback."""
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
        _release_line(release, [str(a) for a in alert.get("release_aliases") or []]),
    ]
    incidents = incident_refs(alert)
    if incidents:
        detail.append("*Incident:* " + esc(", ".join(incidents)))
    listed = len(alert.get("evidence") or [])
    evidence_count = max(int(alert.get("evidence_count") or 0), listed)
    if evidence_count > listed:
        detail.append(f"*Evidence:* {evidence_count} events ({listed} listed in the alert)")
    flags = flag_refs(alert)
    text_so_far = "\n".join(detail)
    if flags:
        # the flags go last: they are what a long list is cut from, entry by entry
        detail.append(
            join_bounded(
                [_slack_flag(f) for f in flags],
                SLACK_TEXT_MAX - len(text_so_far) - 1,
                prefix="*Flags:* ",
                more=" … and {n} more",
            )
        )
    rec = _recommendation_text(alert)

    blocks: list[dict[str, Any]] = [_section("\n".join(lines)), _section("\n".join(detail))]
    if rec and not retracted:
        blocks.append(_section(f"*Recommendation:* {esc(rec)}"))
    context = f"alert `{esc(str(alert.get('alert_id')))}`"
    if alert.get("occurred_at"):
        context += f" · occurred {esc(str(alert['occurred_at']))}"
    notify = alert.get("notify") or []
    if notify:
        context += f" · for {esc(', '.join(str(n) for n in notify))}"
    context += context_extra
    blocks.append(_context(context))

    fallback = headline + (f" — {summary}" if summary else "")
    return {"text": _truncate(esc(fallback), SLACK_TEXT_MAX), "blocks": blocks}


def _context(text: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": _truncate(text, SLACK_TEXT_MAX)}],
    }


def _group_context(snapshot: GroupSnapshot) -> str:
    text = f"group `{snapshot.group_id}`"
    window = _window(snapshot)
    if window is not None:
        text += f" · alerts that occurred {window['start']} to {window['end']}"
    if snapshot.notify:
        text += f" · for {slack_escape(', '.join(snapshot.notify))}"
    return text


def slack_group_message(
    snapshot: GroupSnapshot, action: str, previous_count: int = 0
) -> dict[str, Any]:
    """A Slack incoming-webhook body about a group.

    ``open``: the first message (a group of one is shown as that alert, with the
    group named in its context line). ``update``: a new, self-contained message
    with the count now and before (an incoming webhook cannot edit a message).
    ``resolve``: every member was retracted.
    """
    esc = slack_escape
    k = snapshot.key
    where = f"{k.service}/{k.environment}"
    if action == RESOLVE:
        was = f"the {previous_count} alert(s)" if previous_count else "its alerts"
        headline = f"Resolved: {k.rule} on {where}, release {k.release}"
        text = (
            f":white_check_mark: *{esc(headline)}*\n"
            f"Later events invalidated {esc(was)} of this group; no action is needed for them."
        )
        return {
            "text": _truncate(esc(headline), SLACK_TEXT_MAX),
            "blocks": [_section(text), _context(_group_context(snapshot))],
        }
    lead = snapshot.lead
    if lead is None:
        raise ValueError(f"group {snapshot.group_id}: nothing to announce, it has no member")
    if snapshot.count == 1 and action == OPEN:
        return slack_message(lead, context_extra=f" · group `{snapshot.group_id}`")

    severity = snapshot.severity
    icon = _SEVERITY_EMOJI.get(severity, ":warning:")
    if action == UPDATE:
        headline = f"UPDATE {severity.upper()}: {snapshot.count} alerts, {_headline_key(snapshot)}"
        change = f"now {snapshot.count} active (was {previous_count})"
    else:
        headline = f"{severity.upper()}: {snapshot.count} alerts, {_headline_key(snapshot)}"
        change = f"{snapshot.count} active"
    lines = [
        f"{icon} *{esc(headline)}*",
        esc(f"{change}: {_breakdown(snapshot.alerts)}")
        + (f"; {snapshot.retracted} retracted" if snapshot.retracted else ""),
    ]
    detail = [
        f"*Rule:* `{esc(k.rule)}`",
        f"*Severity:* {esc(severity)} (most severe member)",
        f"*Service:* {esc(k.service)}",
        f"*Environment:* {esc(k.environment)}",
        _release_line(k.release, _group_aliases(snapshot)),
    ]
    entries = []
    for alert in snapshot.alerts[:GROUP_LISTED_MEMBERS]:
        member_icon = _SEVERITY_EMOJI.get(str(alert.get("severity")), ":warning:")
        refs = flag_refs(alert)
        finding = _slack_flag(refs[0]) if refs else esc(member_finding(alert))
        summary = esc(_truncate(str(alert.get("summary") or ""), 120))
        entries.append(f"{member_icon} {finding} — {summary}")
    findings = join_bounded(
        entries,
        SLACK_TEXT_MAX,
        prefix="*Most severe:*\n",
        sep="\n",
        more="\n… and {n} more",
        total=snapshot.count,
    )
    blocks = [_section("\n".join(lines)), _section("\n".join(detail)), _section(findings)]
    rec = _recommendation_text(lead)
    if rec:
        blocks.append(_section(f"*Recommendation (most severe alert):* {esc(rec)}"))
    blocks.append(_context(_group_context(snapshot)))
    fallback = f"{headline} — {group_summary(snapshot)}"
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
