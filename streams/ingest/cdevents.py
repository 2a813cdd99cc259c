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

from streams.catalog.entities import IMAGE, NAME
from streams.catalog.images import ImageRef, normalize_digest, parse_image
from streams.ingest.common import (
    DEFAULT_INCIDENT_SEVERITY,
    Candidate,
    Conversion,
    IngestOptions,
    Lookup,
    Names,
    Reader,
    clip,
    finish,
    format_ms,
    purl_name,
    purl_qualifiers,
    purl_version,
    put_aliases,
    stable_id,
    with_unresolved,
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


def artifact_image(purl: str | None) -> ImageRef | None:
    """The image an OCI package URL names: ``repository_url`` (else none), ``tag``, digest.

    ``pkg:oci/checkout@sha256%3Aab..?repository_url=ghcr.io/acme/checkout&tag=2.7.0`` ->
    ``ghcr.io/acme/checkout:2.7.0@sha256:ab..``. Without ``repository_url`` the purl does not
    say where the image lives: the reference has the digest and tag on the purl's name.
    """
    if not purl or not purl.startswith("pkg:oci/"):
        return None
    qualifiers = purl_qualifiers(purl)
    version = purl_version(purl)
    digest = normalize_digest(version) if version else None
    tag = qualifiers.get("tag") or None
    repository = qualifiers.get("repository_url")
    ref = parse_image(repository) if repository else None
    if ref is not None and not ref.tag and not ref.digest:
        return ImageRef(ref.repository, tag, digest)
    name = purl_name(purl)
    base = parse_image(name) if name else None
    if base is None:
        return None
    return ImageRef(base.repository, tag, digest)


def _artifact_names(purl: str | None) -> tuple[str | None, ...]:
    """The release names of an artifact purl, for ``release_aliases``: a repository is only
    written when the purl gives ``repository_url`` (its bare name says no registry)."""
    ref = artifact_image(purl)
    if ref is None:
        return (purl_version(purl),) if purl else ()
    if "repository_url" not in purl_qualifiers(purl or ""):
        return (ref.digest, ref.tag)
    return tuple(ref.names())


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
    release_aliases: the purl's digest, ``tag`` and, with ``repository_url``, the image
    forms ``REPOSITORY@DIGEST`` and ``REPOSITORY:TAG`` (SPEC §8).
    Catalog lookups (service): the subject id (incidents: ``service.id``) as a name, the
    purl's ``repository_url`` as an image repository, ``subject.source`` as a name;
    environment targets: ``environment.id``.
    Named values: ``subject_id``, ``environment_id``, ``artifact_version``, ``artifact_tag``,
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
        "artifact_tag": Candidate(
            purl_qualifiers(artifact).get("tag") if artifact else None,
            p("$.subject.content.artifactId"),
        ),
    }
    image = artifact_image(artifact)
    purl_repository = purl_qualifiers(artifact).get("repository_url") if artifact else None
    image_key = Lookup(
        IMAGE,
        image.repository if image and purl_repository else None,
        p("$.subject.content.artifactId"),
    )
    source_key = Lookup(NAME, reader.opt_str("$.subject.source"), p("$.subject.source"))
    environment_targets = (reader.scalar_str("$.subject.content.environment.id"),)
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
            service_keys=(
                Lookup(NAME, reader.scalar_str("$.subject.id"), p("$.subject.id")),
                image_key,
                source_key,
            ),
            environment_targets=environment_targets,
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
        put_aliases(fields, "release", _artifact_names(artifact))
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
            service_keys=(
                Lookup(
                    NAME,
                    reader.scalar_str("$.subject.content.service.id"),
                    p("$.subject.content.service.id"),
                ),
                image_key,
                source_key,
            ),
            environment_targets=environment_targets,
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
        if fields["suspected_release"]:
            put_aliases(fields, "suspected_release", _artifact_names(artifact))
    else:
        return Conversion(
            skipped=(f"cdevents: {type_text} is not a deploy or incident event relsec reads",)
        )
    origins = {k: v for k, v in names.origins.items()}
    origins.update(
        occurred_at=p("$.context.timestamp"),
        title=p("$.subject.content.description"),
        release_aliases=p("$.subject.content.artifactId"),
    )
    return with_unresolved(
        Conversion(events=tuple(finish("cdevents", [(fields, origins)]))), names
    )


def _pick(names: Names, name: str, outer: Reader, base: str) -> str | None:
    """``names.pick`` with the error path re-rooted when the CDEvent sat in a CloudEvent."""
    try:
        return names.pick(name)
    except Exception as exc:
        path = getattr(exc, "path", None)
        if path is not None and base != "$" and path.startswith("$") and not path.startswith(base):
            raise outer.error(base + path[1:], exc.detail) from None  # type: ignore[attr-defined]
        raise
