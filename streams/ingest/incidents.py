"""Incident adapters: PagerDuty webhooks v3 and Opsgenie alert webhooks.

Neither tool knows relsec's environment; both default to
``IngestOptions.default_environment`` (``production``) unless a mapping or
``--environment`` says otherwise. See docs/ingest.md for the tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from streams.catalog.entities import NAME, OPSGENIE_DETAIL, OPSGENIE_ENTITY, OPSGENIE_TAG, PAGERDUTY
from streams.ingest.common import (
    DEFAULT_INCIDENT_SEVERITY,
    Candidate,
    Conversion,
    IngestOptions,
    Lookup,
    Names,
    Reader,
    checked_ms,
    clip,
    finish,
    format_ms,
    readable_id,
    stable_id,
    with_unresolved,
)

PAGERDUTY_STATUSES: Final[dict[str, str]] = {
    "incident.triggered": "opened",
    "incident.reopened": "opened",
    "incident.unacknowledged": "opened",
    "incident.acknowledged": "acknowledged",
    "incident.resolved": "resolved",
}
PAGERDUTY_URGENCY_SEVERITY: Final[dict[str, str]] = {"high": "sev2", "low": "sev4"}
_PRIORITY: Final = re.compile(r"^\s*(?:P|SEV|SEV-|SEV\s)?([1-5])\b", re.IGNORECASE)


def severity_from_priority(text: str | None) -> str | None:
    """``P1``/``SEV1``/``sev-2``/``3`` -> ``sev1``.. ``sev5``; None when not recognized."""
    if not text:
        return None
    m = _PRIORITY.match(text)
    return f"sev{m.group(1)}" if m else None


def pagerduty(payload: Any, options: IngestOptions) -> Conversion:
    """PagerDuty webhook v3 delivery (``{"event": {...}}`` with ``resource_type: incident``).

    event_type ``incident.triggered`` / ``incident.reopened`` / ``incident.unacknowledged``
    -> opened, ``incident.acknowledged`` -> acknowledged, ``incident.resolved`` -> resolved;
    other event types (priority_updated, annotated, ...) give no event, with a reason.
    Defaults: incident_id = ``event.data.id``; service = ``event.data.service.summary``
    (the PagerDuty service name); environment = ``--environment`` or ``production``;
    severity = priority ``P1``..``P5`` -> sev1..sev5 (``event.data.priority.summary``),
    else urgency high -> sev2, low -> sev4, else sev3; title = ``event.data.title``;
    suspected_release = ``--release`` or a mapping (none by default);
    occurred_at = ``event.occurred_at``; event_id = ``pagerduty:<event.id>``.
    Catalog lookups (service): ``event.data.service.id`` (``pagerduty.com/service-id``),
    then the service name; environment target: the service id.
    Named values: ``service_name``, ``service_id``, ``team`` (first team summary),
    ``incident_key``, ``escalation_policy``.
    """
    reader = Reader("pagerduty", payload)
    if not isinstance(payload, Mapping):
        raise reader.error("$", "must be a JSON object")
    reader.obj("$.event")
    event_type = reader.text("$.event.event_type")
    if event_type == "pagey.ping":
        return Conversion(skipped=("pagerduty: ping delivery, nothing to convert",))
    status = PAGERDUTY_STATUSES.get(event_type)
    if status is None:
        return Conversion(
            skipped=(
                f"pagerduty: {event_type!r} does not change an incident's status; not converted",
            )
        )
    resource = reader.opt_str("$.event.resource_type")
    if resource not in (None, "incident"):
        raise reader.error("$.event.resource_type", f"is {resource!r}, expected 'incident'")
    event_uid = reader.text("$.event.id")
    reader.obj("$.event.data")
    incident_id = reader.text("$.event.data.id")
    names = Names(
        reader,
        options,
        candidates={
            "service_name": Candidate(
                reader.opt_str("$.event.data.service.summary"), "$.event.data.service.summary"
            ),
            "service_id": Candidate(
                reader.opt_str("$.event.data.service.id"), "$.event.data.service.id"
            ),
            "team": Candidate(
                reader.opt_str("$.event.data.teams[0].summary"), "$.event.data.teams[0].summary"
            ),
            "incident_key": Candidate(
                reader.opt_str("$.event.data.incident_key"), "$.event.data.incident_key"
            ),
            "escalation_policy": Candidate(
                reader.opt_str("$.event.data.escalation_policy.summary"),
                "$.event.data.escalation_policy.summary",
            ),
            "default_environment": Candidate(options.default_environment, "(default environment)"),
        },
        defaults={
            "service": ("service_name", "service_id"),
            "environment": ("default_environment",),
            "suspected_release": (),
            "severity": (),
        },
        overrides={
            "service": options.service,
            "environment": options.environment,
            "suspected_release": options.release,
        },
        service_keys=(
            Lookup(PAGERDUTY, reader.opt_str("$.event.data.service.id"), "$.event.data.service.id"),
            Lookup(
                NAME, reader.opt_str("$.event.data.service.summary"), "$.event.data.service.summary"
            ),
        ),
        environment_targets=(reader.opt_str("$.event.data.service.id"),),
    )
    severity_path = "$.event.data.priority.summary"
    mapped_severity = names.pick("severity", required=False)
    severity = severity_from_priority(mapped_severity) if mapped_severity else None
    if severity is None:
        severity = severity_from_priority(reader.opt_str(severity_path))
    if severity is None:
        urgency = reader.opt_str("$.event.data.urgency")
        severity = PAGERDUTY_URGENCY_SEVERITY.get(urgency or "", DEFAULT_INCIDENT_SEVERITY)
        severity_path = "$.event.data.urgency"
    fields: dict[str, Any] = {
        "type": "incident",
        "event_id": readable_id("pagerduty", event_uid),
        "occurred_at": format_ms(reader.timestamp_ms("$.event.occurred_at")),
        "source": "pagerduty",
        "service": names.pick("service"),
        "environment": names.pick("environment"),
        "incident_id": incident_id,
        "status": status,
        "severity": severity,
        "title": clip(reader.opt_str("$.event.data.title") or ""),
        "suspected_release": names.pick("suspected_release", required=False),
    }
    origins = dict(names.origins)
    origins.update(
        occurred_at="$.event.occurred_at",
        incident_id="$.event.data.id",
        event_id="$.event.id",
        title="$.event.data.title",
        severity=severity_path,
    )
    return with_unresolved(
        Conversion(events=tuple(finish("pagerduty", [(fields, origins)]))), names
    )


OPSGENIE_STATUSES: Final[dict[str, str]] = {
    "Create": "opened",
    "UnAcknowledge": "opened",
    "Acknowledge": "acknowledged",
    "Close": "resolved",
}


def _tag_value(tags: Any, prefixes: tuple[str, ...]) -> tuple[str | None, str]:
    if not isinstance(tags, list):
        return None, "$.alert.tags"
    for i, tag in enumerate(tags):
        if not isinstance(tag, str):
            continue
        key, sep, value = tag.partition(":")
        if sep and key.strip().lower() in prefixes and value.strip():
            return value.strip(), f"$.alert.tags[{i}]"
    return None, "$.alert.tags"


def _epoch_to_ms(reader: Reader, path: str) -> int | None:
    """Opsgenie sends ``createdAt`` in milliseconds and ``updatedAt`` in nanoseconds.

    None when the field is absent or null; an AdapterError at ``path`` when it is there
    but is not a positive finite number of epoch seconds, ms, µs or ns that names an
    instant of years 0001..9999 (a string, a boolean, ``-1``, ``1.5e308``).
    """
    value = reader.get(path)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise reader.error(path, f"must be a number of epoch milliseconds, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise reader.error(path, f"must be a finite number, got {value!r}")
    if value <= 0:
        raise reader.error(path, f"must be a positive epoch time, got {value!r}")
    number = int(value)
    if number >= 10**17:  # nanoseconds
        ms = number // 1_000_000
    elif number >= 10**14:  # microseconds
        ms = number // 1_000
    elif number >= 10**11:  # milliseconds
        ms = number
    else:  # seconds
        ms = number * 1000
    return checked_ms(reader.source, path, ms)


def opsgenie(payload: Any, options: IngestOptions) -> Conversion:
    """Opsgenie alert webhook (Webhook integration, "Add Alert Description/Details" payload).

    action ``Create`` / ``UnAcknowledge`` -> opened, ``Acknowledge`` -> acknowledged,
    ``Close`` -> resolved; other actions (AddNote, AssignOwnership, ...) give no event.
    Defaults: incident_id = ``alert.alertId``; service = the tag ``service:<name>``,
    else ``alert.details.service``, else ``alert.entity`` (Opsgenie has no service field;
    with none of them, ``--service`` is needed); environment = tag ``env:`` /
    ``environment:``, else ``alert.details.environment``, else ``production``;
    severity = ``alert.priority`` P1..P5 -> sev1..sev5, else sev3; suspected_release =
    tag ``release:``, else ``alert.details.release``; title = ``alert.message``;
    occurred_at = ``alert.createdAt`` for Create, else ``alert.updatedAt`` (ns);
    event_id = hash of (alertId, action, updatedAt) since Opsgenie sends no delivery id.
    Catalog lookups (service), matching ``opsgenie.com/component-selector``: each tag,
    each ``alert.details`` pair, ``alert.entity``; then the service names above.
    Environment targets: the environment tag and detail.
    Named values: ``tag:service``, ``details:service``, ``entity``, ``alias``, ``source``,
    ``tag:env``, ``details:environment``, ``tag:release``, ``details:release``, ``team``.
    """
    reader = Reader("opsgenie", payload)
    if not isinstance(payload, Mapping):
        raise reader.error("$", "must be a JSON object")
    action = reader.text("$.action")
    status = OPSGENIE_STATUSES.get(action)
    if status is None:
        return Conversion(
            skipped=(f"opsgenie: action {action!r} does not change an alert's status",)
        )
    reader.obj("$.alert")
    alert_id = reader.text("$.alert.alertId")
    tags = reader.get("$.alert.tags")
    details = reader.opt_obj("$.alert.details") or {}

    def detail(key: str) -> Candidate:
        value = details.get(key)
        return Candidate(
            value if isinstance(value, str) and value else None, f"$.alert.details.{key}"
        )

    def tag(*prefixes: str) -> Candidate:
        value, path = _tag_value(tags, prefixes)
        return Candidate(value, path)

    teams = reader.get("$.alert.teams")
    first_team = (
        teams[0] if isinstance(teams, list) and teams and isinstance(teams[0], str) else None
    )
    names = Names(
        reader,
        options,
        candidates={
            "tag:service": tag("service", "svc"),
            "details:service": detail("service"),
            "entity": Candidate(reader.opt_str("$.alert.entity"), "$.alert.entity"),
            "alias": Candidate(reader.opt_str("$.alert.alias"), "$.alert.alias"),
            "source": Candidate(reader.opt_str("$.alert.source"), "$.alert.source"),
            "team": Candidate(first_team, "$.alert.teams[0]"),
            "tag:env": tag("env", "environment"),
            "details:environment": detail("environment"),
            "tag:release": tag("release", "version"),
            "details:release": detail("release"),
            "default_environment": Candidate(options.default_environment, "(default environment)"),
        },
        defaults={
            "service": ("tag:service", "details:service", "entity"),
            "environment": ("tag:env", "details:environment", "default_environment"),
            "suspected_release": ("tag:release", "details:release"),
        },
        overrides={
            "service": options.service,
            "environment": options.environment,
            "suspected_release": options.release,
        },
        service_keys=(
            *(
                Lookup(OPSGENIE_TAG, t, f"$.alert.tags[{i}]")
                for i, t in enumerate(tags if isinstance(tags, list) else ())
                if isinstance(t, str)
            ),
            *(
                Lookup(OPSGENIE_DETAIL, f"{k}:{v}", f"$.alert.details.{k}")
                for k, v in details.items()
                if isinstance(v, str)
            ),
            Lookup(OPSGENIE_ENTITY, reader.opt_str("$.alert.entity"), "$.alert.entity"),
        ),
        environment_targets=(
            _tag_value(tags, ("env", "environment"))[0],
            detail("environment").value,
        ),
    )
    when_key = "createdAt" if action == "Create" else "updatedAt"
    when_path = f"$.alert.{when_key}"
    occurred = _epoch_to_ms(reader, when_path)
    if occurred is None and when_key != "createdAt":
        when_path = "$.alert.createdAt"
        occurred = _epoch_to_ms(reader, when_path)
    if occurred is None:
        if options.received_at_ms is None:
            raise reader.error(f"$.alert.{when_key}", "is missing (expected epoch milliseconds)")
        occurred = options.received_at_ms
    priority_path = "$.alert.priority"
    severity = severity_from_priority(reader.scalar_str(priority_path)) or DEFAULT_INCIDENT_SEVERITY
    fields: dict[str, Any] = {
        "type": "incident",
        "event_id": stable_id("opsgenie", alert_id, action, reader.get("$.alert.updatedAt")),
        "occurred_at": format_ms(occurred),
        "source": "opsgenie",
        "service": names.pick("service"),
        "environment": names.pick("environment"),
        "incident_id": alert_id,
        "status": status,
        "severity": severity,
        "title": clip(reader.opt_str("$.alert.message") or ""),
        "suspected_release": names.pick("suspected_release", required=False),
    }
    origins = dict(names.origins)
    origins.update(
        occurred_at=when_path,
        incident_id="$.alert.alertId",
        title="$.alert.message",
        severity=priority_path,
    )
    return with_unresolved(
        Conversion(events=tuple(finish("opsgenie", [(fields, origins)]))), names
    )
