"""CDEvents adapter: ``service.deployed`` / ``service.rolledback`` and ``incident.detected`` /
``incident.reported`` / ``incident.resolved``.

Reads the CDEvents JSON (structured) format of spec 0.4 (``context.version``) and
0.5 (``context.specversion``), and the same event wrapped in a structured
CloudEvent (``{"specversion": "1.0", "data": {<cdevent>}}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from streams.ingest.common import (
    DEFAULT_INCIDENT_SEVERITY,
    Candidate,
    Conversion,
    IngestOptions,
    Names,
    Reader,
    clip,
    finish,
    format_ms,
    purl_name,
    purl_version,
    stable_id,
)
from streams.ingest.incidents import severity_from_priority

_TYPE: Final = re.compile(r"^dev\.cdevents\.([a-z]+)\.([a-z]+)\.(\d+\.\d+\.\d+)(?:-.+)?$")
SUPPORTED_SPECS: Final = ("0.4", "0.5")
INCIDENT_STATUSES: Final[dict[str, str]] = {
    "detected": "opened",
    "reported": "opened",
    "resolved": "resolved",
}


def _unwrap(payload: Any) -> tuple[Any, str]:
    """The CDEvent and the JSON path prefix where it sits (``$`` or ``$.data``)."""
    if (
        isinstance(payload, Mapping)
        and "context" not in payload
        and isinstance(payload.get("data"), Mapping)
        and "context" in payload["data"]
    ):
        return payload["data"], "$.data"
    return payload, "$"


def cdevents(payload: Any, options: IngestOptions) -> Conversion:
    """CDEvents spec 0.4 / 0.5 events (``dev.cdevents.<subject>.<predicate>.<version>``).

    ``service.deployed`` -> deploy (action deploy), ``service.rolledback`` -> deploy
    (action rollback), status succeeded (CDEvents reports done deployments);
    ``incident.detected`` / ``incident.reported`` -> incident opened,
    ``incident.resolved`` -> resolved. Other types give no event.

    Defaults, deploys: service = ``subject.id``; environment =
    ``subject.content.environment.id``; release = the version of the purl in
    ``subject.content.artifactId`` (``pkg:oci/app@sha256%3A..`` -> ``sha256:..``).
    Incidents: incident_id = ``subject.id``; service = ``subject.content.service.id``;
    environment = ``subject.content.environment.id``; title =
    ``subject.content.description``; suspected_release = artifactId's version;
    severity = ``customData.severity`` / ``customData.priority`` (P1.., sev1..) else sev3.
    occurred_at = ``context.timestamp``; event_id = hash of (context.source, context.id,
    context.type): the id alone is only unique per source, and the spec's own
    conformance examples reuse one id for different types.
    Named values: ``subject_id``, ``environment_id``, ``artifact_version``,
    ``artifact_name``, ``service_id``, ``subject_source``, ``context_source``.
    """
    event, base = _unwrap(payload)
    reader = Reader("cdevents", event)
    outer = Reader("cdevents", payload)
    if not isinstance(event, Mapping):
        raise outer.error("$", "must be a JSON object")

    def p(path: str) -> str:
        return base + path[1:]

    def err(path: str, detail: str) -> Exception:
        return outer.error(p(path), detail)

    if not isinstance(event.get("context"), Mapping):
        raise err("$.context", "is missing (expected a CDEvents context object)")
    spec = reader.opt_str("$.context.specversion") or reader.opt_str("$.context.version")
    if spec is None:
        raise err(
            "$.context.specversion",
            "is missing (0.5 uses context.specversion, 0.4 context.version)",
        )
    if not spec.startswith(SUPPORTED_SPECS):
        raise err(
            "$.context.specversion" if "specversion" in event["context"] else "$.context.version",
            f"spec version {spec!r} is not supported (supported: {', '.join(SUPPORTED_SPECS)})",
        )
    type_text = reader.opt_str("$.context.type")
    m = _TYPE.match(type_text or "")
    if m is None:
        raise err(
            "$.context.type",
            f"{type_text!r} is not a CDEvents type (dev.cdevents.<subject>.<predicate>.<version>)",
        )
    subject_kind, predicate = m.group(1), m.group(2)
    ctx_id = reader.scalar_str("$.context.id")
    ctx_source = reader.opt_str("$.context.source")
    if ctx_id is None:
        raise err("$.context.id", "is missing")
    if not isinstance(event.get("subject"), Mapping):
        raise err("$.subject", "is missing (expected an object)")
    timestamp = reader.opt_str("$.context.timestamp")
    if timestamp is None:
        raise err("$.context.timestamp", "is missing")
    try:
        occurred_ms = reader.timestamp_ms("$.context.timestamp")
    except Exception as exc:
        raise err("$.context.timestamp", getattr(exc, "detail", str(exc))) from None
    artifact = reader.opt_str("$.subject.content.artifactId")
    candidates = {
        "subject_id": Candidate(reader.scalar_str("$.subject.id"), p("$.subject.id")),
        "subject_source": Candidate(reader.opt_str("$.subject.source"), p("$.subject.source")),
        "context_source": Candidate(ctx_source, p("$.context.source")),
        "environment_id": Candidate(
            reader.scalar_str("$.subject.content.environment.id"),
            p("$.subject.content.environment.id"),
        ),
        "service_id": Candidate(
            reader.scalar_str("$.subject.content.service.id"), p("$.subject.content.service.id")
        ),
        "artifact_version": Candidate(
            purl_version(artifact) if artifact else None, p("$.subject.content.artifactId")
        ),
        "artifact_name": Candidate(
            purl_name(artifact) if artifact else None, p("$.subject.content.artifactId")
        ),
    }
    event_id = stable_id("cdevents", ctx_source, ctx_id, type_text)
    if subject_kind == "service" and predicate in ("deployed", "rolledback"):
        names = Names(
            reader,
            options,
            candidates=candidates,
            defaults={
                "service": ("subject_id",),
                "environment": ("environment_id",),
                "release": ("artifact_version",),
            },
            overrides={
                "service": options.service,
                "environment": options.environment,
                "release": options.release,
            },
        )
        fields: dict[str, Any] = {
            "type": "deploy",
            "event_id": event_id,
            "occurred_at": format_ms(occurred_ms),
            "source": "cdevents",
            "service": _pick(names, "service", outer, base),
            "environment": _pick(names, "environment", outer, base),
            "release": _pick(names, "release", outer, base),
            "previous_release": None,
            "action": "rollback" if predicate == "rolledback" else "deploy",
            "status": "succeeded",
        }
    elif subject_kind == "incident" and predicate in INCIDENT_STATUSES:
        names = Names(
            reader,
            options,
            candidates=candidates,
            defaults={
                "service": ("service_id",),
                "environment": ("environment_id",),
                "suspected_release": ("artifact_version",),
            },
            overrides={
                "service": options.service,
                "environment": options.environment,
                "suspected_release": options.release,
            },
        )
        custom = reader.opt_obj("$.customData") or {}
        raw_severity = custom.get("severity") or custom.get("priority")
        severity = severity_from_priority(str(raw_severity)) if raw_severity is not None else None
        incident_id = reader.scalar_str("$.subject.id")
        if incident_id is None:
            raise err("$.subject.id", "is missing (the incident id)")
        fields = {
            "type": "incident",
            "event_id": event_id,
            "occurred_at": format_ms(occurred_ms),
            "source": "cdevents",
            "service": _pick(names, "service", outer, base),
            "environment": _pick(names, "environment", outer, base),
            "incident_id": incident_id,
            "status": INCIDENT_STATUSES[predicate],
            "severity": severity or DEFAULT_INCIDENT_SEVERITY,
            "title": clip(reader.opt_str("$.subject.content.description") or ""),
            "suspected_release": names.pick("suspected_release", required=False),
        }
    else:
        return Conversion(
            skipped=(f"cdevents: {type_text} is not a deploy or incident event relsec reads",)
        )
    origins = {k: v for k, v in names.origins.items()}
    origins.update(occurred_at=p("$.context.timestamp"), title=p("$.subject.content.description"))
    return Conversion(events=tuple(finish("cdevents", [(fields, origins)])))


def _pick(names: Names, name: str, outer: Reader, base: str) -> str | None:
    """``names.pick`` with the error path re-rooted when the CDEvent sat in a CloudEvent."""
    try:
        return names.pick(name)
    except Exception as exc:
        path = getattr(exc, "path", None)
        if path is not None and base != "$" and path.startswith("$") and not path.startswith(base):
            raise outer.error(base + path[1:], exc.detail) from None  # type: ignore[attr-defined]
        raise
