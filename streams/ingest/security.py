"""Security adapters: Trivy JSON, Grype JSON, Dependency-Track notifications.

One ``security_flag`` per distinct vulnerability id of a report at or above the
minimum severity (``IngestOptions.min_severity``, default ``low``):
``flag_id`` = the vulnerability id, severity lower-cased onto critical / high /
medium / low. ``unknown`` and ``negligible`` rank below ``low``: they are
skipped (and counted in the reasons) unless the minimum is ``unknown``, in which
case they are flagged as ``low`` with the original word in the title. The same id
found in several packages gives one flag with the highest severity and all
packages in the title. ``fixed_in`` stays null: a scanner knows the package
version that fixes a finding, not the release of the service that will; the
package fix goes into the title.

Clearing: given the previous report of the same tool for the same service and
release (``IngestOptions.previous``), every id that was flagged there and is no
longer at or above the minimum in the new report gets a ``cleared`` event.
Dependency-Track notifications are incremental (no "gone" notification), so
they only raise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

import orjson

from streams.catalog.entities import DTRACK_PROJECT, IMAGE, NAME
from streams.catalog.images import ImageRef, is_mutable_tag, normalize_digest
from streams.ingest.common import (
    SEVERITY_RANK,
    Candidate,
    Conversion,
    IngestOptions,
    Lookup,
    Names,
    Reader,
    Unresolved,
    clip,
    finish,
    format_ms,
    normalize_severity,
    parse_image_ref,
    parse_time_ms,
    release_aliases,
    stable_id,
)
from streams.ingest.errors import AdapterError

MAX_PACKAGES_IN_TITLE: Final = 5
MAX_VULNERABILITY_IDS: Final = 50


@dataclass(slots=True)
class Finding:
    """One vulnerability id of a report, merged over the packages it was found in.

    Aliases, packages and fixes are insertion-ordered sets (dict keys): a report with
    one id in 40,000 packages merges in linear time.
    """

    vuln_id: str
    severity: str
    path: str
    aliases: dict[str, None] = field(default_factory=dict)
    packages: dict[str, None] = field(default_factory=dict)
    fixes: dict[str, None] = field(default_factory=dict)
    summary: str | None = None

    def merge(self, other: Finding) -> None:
        if SEVERITY_RANK[other.severity] > SEVERITY_RANK[self.severity]:
            self.severity = other.severity
        self.aliases.update(other.aliases)
        self.packages.update(other.packages)
        self.fixes.update(other.fixes)
        self.summary = self.summary or other.summary

    def copy(self) -> Finding:
        return Finding(
            self.vuln_id,
            self.severity,
            self.path,
            dict(self.aliases),
            dict(self.packages),
            dict(self.fixes),
            self.summary,
        )


def _set(*items: str | None) -> dict[str, None]:
    return {item: None for item in items if item}


@dataclass(slots=True)
class Report:
    """What a scanner report says about one (service, release)."""

    service: str
    release: str
    occurred_ms: int
    identity: str
    findings: dict[str, Finding]
    origins: dict[str, str]
    aliases: tuple[str, ...] = ()
    unresolved: tuple[Unresolved, ...] = ()


def _add(findings: dict[str, Finding], finding: Finding) -> None:
    existing = findings.get(finding.vuln_id)
    if existing is None:
        findings[finding.vuln_id] = finding
    else:
        existing.merge(finding)


def _payload_hash(payload: Any) -> str:
    return stable_id("payload", orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode())


def _passes(severity: str, options: IngestOptions) -> bool:
    return (
        SEVERITY_RANK[severity] >= SEVERITY_RANK[options.min_severity]
        if options.min_severity != "unknown"
        else True
    )


def _flag_severity(severity: str) -> str:
    return severity if severity in ("critical", "high", "medium", "low") else "low"


def _first(items: dict[str, None], n: int) -> list[str]:
    return list(islice(items, n))


def _title(source: str, f: Finding) -> str:
    pkgs = _first(f.packages, MAX_PACKAGES_IN_TITLE)
    more = len(f.packages) - len(pkgs)
    where = ", ".join(pkgs) + (f" and {more} more" if more > 0 else "")
    text = f.vuln_id + (f" in {where}" if where else "")
    if f.fixes:
        text += f" (package fix: {', '.join(_first(f.fixes, MAX_PACKAGES_IN_TITLE))})"
    else:
        text += " (no package fix known)"
    if f.severity in ("unknown", "negligible"):
        text += f" [{source} severity {f.severity}]"
    if f.summary:
        text += f": {f.summary}"
    return clip(text)


def _vulnerability_ids(f: Finding) -> list[str]:
    ids = dict.fromkeys((f.vuln_id, *f.aliases))
    return [i for i in ids if 1 <= len(i) <= 200][:MAX_VULNERABILITY_IDS]


def _flags(
    source: str,
    report: Report,
    options: IngestOptions,
    previous: Report | None,
) -> Conversion:
    drafts: list[tuple[dict[str, Any], dict[str, str]]] = []
    skipped: list[str] = []
    below: list[str] = []
    for vuln_id in sorted(report.findings):
        f = report.findings[vuln_id]
        if not _passes(f.severity, options):
            below.append(f"{vuln_id} ({f.severity})")
            continue
        fields: dict[str, Any] = {
            "type": "security_flag",
            "event_id": stable_id(
                source, report.service, report.release, vuln_id, "raised", report.identity
            ),
            "occurred_at": format_ms(report.occurred_ms),
            "source": source,
            "service": report.service,
            "flag_id": vuln_id,
            "release": report.release,
            "status": "raised",
            "severity": _flag_severity(f.severity),
            "vulnerabilities": _vulnerability_ids(f),
            "title": _title(source, f),
            "fixed_in": None,
        }
        if report.aliases:
            fields["release_aliases"] = list(report.aliases)
        origins = dict(report.origins)
        origins.update(flag_id=f.path, severity=f.path, title=f.path, vulnerabilities=f.path)
        drafts.append((fields, origins))
    if below:
        skipped.append(
            f"{source}: {len(below)} finding(s) below minimum severity {options.min_severity!r}: "
            + ", ".join(below[:20])
            + (" ..." if len(below) > 20 else "")
        )
    if previous is not None:
        if (previous.service, previous.release) != (report.service, report.release):
            skipped.append(
                f"{source}: previous report is for {previous.service}@{previous.release}, not "
                f"{report.service}@{report.release}; nothing cleared"
            )
        else:
            still = {v for v, f in report.findings.items() if _passes(f.severity, options)}
            for vuln_id in sorted(previous.findings):
                old = previous.findings[vuln_id]
                if not _passes(old.severity, options) or vuln_id in still:
                    continue
                fields = {
                    "type": "security_flag",
                    "event_id": stable_id(
                        source, report.service, report.release, vuln_id, "cleared", report.identity
                    ),
                    "occurred_at": format_ms(report.occurred_ms),
                    "source": source,
                    "service": report.service,
                    "flag_id": vuln_id,
                    "release": report.release,
                    "status": "cleared",
                    "severity": _flag_severity(old.severity),
                    "vulnerabilities": _vulnerability_ids(old),
                    "title": clip(
                        f"{vuln_id} no longer reported by {source} for {report.service} "
                        f"{report.release}"
                    ),
                    "fixed_in": None,
                }
                if report.aliases:
                    fields["release_aliases"] = list(report.aliases)
                drafts.append((fields, dict(report.origins)))
    return Conversion(
        events=tuple(finish(source, drafts)),
        skipped=tuple(skipped),
        unresolved=report.unresolved,
    )


def _with_previous(
    source: str,
    payload: Any,
    options: IngestOptions,
    read: Callable[[Any, IngestOptions], Report],
) -> Conversion:
    report = read(payload, options)
    previous = None
    if options.previous is not None:
        try:
            previous = read(options.previous, options)
        except AdapterError as exc:
            raise AdapterError(source, f"(previous report) {exc.path}", exc.detail) from None
    return _flags(source, report, options, previous)


# --- Trivy -------------------------------------------------------------------------


def _refs(reader: Reader, path: str) -> list[tuple[ImageRef, str]]:
    """The image references of the string array at ``path``, with their paths."""
    out: list[tuple[ImageRef, str]] = []
    for i, text in enumerate(reader.array(path, required=False)):
        if isinstance(text, str) and (ref := parse_image_ref(text)) is not None:
            out.append((ref, f"{path}[{i}]"))
    return out


def _image_names(
    reader: Reader,
    options: IngestOptions,
    tag_refs: list[tuple[ImageRef, str]],
    digest_refs: list[tuple[ImageRef, str]],
    extra: dict[str, Candidate],
) -> tuple[Names, tuple[str | None, ...]]:
    """Names of a scanned image (Trivy, Grype) and every name of its release.

    service = the last path segment of the first repository (the catalog: the
    repositories' ``relsec.io/images``); release = the first tag that is not mutable,
    else the digest, else a mutable tag.
    """
    tagged = [(r, p) for r, p in tag_refs if r.tag]
    pinned = [(r, p) for r, p in digest_refs if r.digest]
    found = tagged or pinned
    first: tuple[ImageRef | None, str] = found[0] if found else (None, "$.Metadata.RepoTags")
    immutable = next(((r, p) for r, p in tagged if r.tag and not is_mutable_tag(r.tag)), None)
    tag_path = tagged[0][1] if tagged else "(no tag)"
    digest_path = pinned[0][1] if pinned else "(no digest)"
    candidates = {
        "image_name": Candidate(first[0].name if first[0] else None, first[1]),
        "image_repository": Candidate(first[0].repository if first[0] else None, first[1]),
        "image_tag": Candidate(tagged[0][0].tag if tagged else None, tag_path),
        "immutable_tag": Candidate(
            immutable[0].tag if immutable else None, immutable[1] if immutable else tag_path
        ),
        "image_digest": Candidate(pinned[0][0].digest if pinned else None, digest_path),
        **extra,
    }
    names = Names(
        reader,
        options,
        candidates=candidates,
        defaults={
            "service": ("image_name",),
            "release": ("immutable_tag", "image_digest", "image_tag"),
        },
        overrides={"service": options.service, "release": options.release},
        service_keys=tuple(
            Lookup(IMAGE, r.repository, p) for r, p in dict.fromkeys([*tagged, *pinned])
        ),
    )
    every: list[str | None] = []
    for ref, _ in pinned:
        every.extend((ref.pinned, ref.digest))
    for ref, _ in tagged:
        if ref.tag and not is_mutable_tag(ref.tag):  # a floating tag names no release
            every.extend((ref.tagged, ref.tag))
    return names, tuple(every)


def _str_field(reader: Reader, obj: Mapping[str, Any], key: str, path: str) -> str | None:
    """``obj[key]`` as a non-empty string, None when absent/null/empty (hot loop: no path parse)."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise reader.error(f"{path}.{key}", f"must be a string, got {type(value).__name__}")
    return value


def _trivy_report(payload: Any, options: IngestOptions) -> Report:
    reader = Reader("trivy", payload)
    if not isinstance(payload, Mapping):
        raise reader.error("$", "must be a JSON object (trivy --format json, SchemaVersion 2)")
    schema = reader.get("$.SchemaVersion")
    if schema != 2:
        raise reader.error("$.SchemaVersion", f"is {schema!r}, expected 2 (Trivy 0.20 or later)")
    tag_refs = _refs(reader, "$.Metadata.RepoTags")
    digest_refs = _refs(reader, "$.Metadata.RepoDigests")
    artifact_name = reader.opt_str("$.ArtifactName")
    if reader.opt_str("$.ArtifactType") == "container_image" and artifact_name:
        ref = parse_image_ref(artifact_name)
        if ref is not None and ref.tag:
            tag_refs.append((ref, "$.ArtifactName"))
        if ref is not None and ref.digest:
            digest_refs.append((ref, "$.ArtifactName"))
    names, every = _image_names(
        reader,
        options,
        tag_refs,
        digest_refs,
        {
            "artifact_name": Candidate(artifact_name, "$.ArtifactName"),
            "image_id": Candidate(reader.opt_str("$.Metadata.ImageID"), "$.Metadata.ImageID"),
        },
    )
    service = names.need("service")
    release = names.need("release")
    created = reader.opt_str("$.CreatedAt")
    occurred_ms = (
        reader.timestamp_ms("$.CreatedAt") if created else _received(reader, "$.CreatedAt", options)
    )
    findings: dict[str, Finding] = {}
    for r_i, result in enumerate(reader.array("$.Results", required=False)):
        base = f"$.Results[{r_i}]"
        if not isinstance(result, Mapping):
            raise reader.error(base, "must be an object")
        vulns = result.get("Vulnerabilities")
        if vulns is None:
            continue
        if not isinstance(vulns, list):
            raise reader.error(f"{base}.Vulnerabilities", "must be an array")
        for v_i, vuln in enumerate(vulns):
            path = f"{base}.Vulnerabilities[{v_i}]"
            if not isinstance(vuln, Mapping):
                raise reader.error(path, "must be an object")
            vuln_id = _str_field(reader, vuln, "VulnerabilityID", path)
            if vuln_id is None:
                raise reader.error(f"{path}.VulnerabilityID", "is missing (expected a string)")
            pkg = (
                _str_field(reader, vuln, "PkgName", path)
                or _str_field(reader, vuln, "PkgID", path)
                or ""
            )
            installed = _str_field(reader, vuln, "InstalledVersion", path)
            fixed = _str_field(reader, vuln, "FixedVersion", path)
            _add(
                findings,
                Finding(
                    vuln_id=vuln_id,
                    severity=normalize_severity(_str_field(reader, vuln, "Severity", path)),
                    path=path,
                    packages=_set(f"{pkg} {installed}".strip() if pkg else None),
                    fixes=_set(f"{pkg} {fixed}".strip() if fixed else None),
                    summary=_str_field(reader, vuln, "Title", path),
                ),
            )
    identity = reader.opt_str("$.ReportID") or created or _payload_hash(payload)
    return Report(
        service,
        release,
        occurred_ms,
        identity,
        findings,
        {**names.origins, "release_aliases": "$.Metadata"},
        tuple(release_aliases(release, every)),
        tuple(names.unresolved),
    )


def _received(reader: Reader, path: str, options: IngestOptions) -> int:
    if options.received_at_ms is None:
        raise reader.error(path, "is missing and no receive time was given")
    return options.received_at_ms


def trivy(payload: Any, options: IngestOptions) -> Conversion:
    """Trivy JSON report (``trivy image --format json``, ``SchemaVersion: 2``).

    Reads ``Results[].Vulnerabilities[]``.

    Defaults: service = the last path segment of the image repository (from
    ``Metadata.RepoTags[0]``, else ``Metadata.RepoDigests[0]``, else ``ArtifactName`` of a
    container image); with a catalog, the component whose ``relsec.io/images`` lists one
    of these repositories; release = the image tag (``latest`` only when there is no
    digest), else the digest (``sha256:..``); release_aliases = every RepoDigests and
    RepoTags name in canonical form (SPEC §8); filesystem / repository scans need
    ``--service`` and ``--release``. occurred_at = ``CreatedAt``; event ids hash
    (service, release, id, status, ``ReportID`` or ``CreatedAt``). Severity ``UNKNOWN``
    ranks below low (see module docs).
    Named values: ``image_name``, ``image_repository``, ``image_tag``, ``immutable_tag``,
    ``image_digest``, ``artifact_name``, ``image_id``.
    """
    return _with_previous("trivy", payload, options, _trivy_report)


# --- Grype -----------------------------------------------------------------------


def _grype_report(payload: Any, options: IngestOptions) -> Report:
    reader = Reader("grype", payload)
    if not isinstance(payload, Mapping):
        raise reader.error("$", "must be a JSON object (grype -o json)")
    matches = reader.array("$.matches")
    user_input = reader.opt_str("$.source.target.userInput")
    is_image = reader.opt_str("$.source.type") == "image"
    tag_refs: list[tuple[ImageRef, str]] = []
    digest_refs: list[tuple[ImageRef, str]] = []
    manifest: str | None = None
    if is_image:
        tag_refs = _refs(reader, "$.source.target.tags")
        digest_refs = _refs(reader, "$.source.target.repoDigests")
        user_ref = parse_image_ref(user_input) if user_input else None
        if user_ref is not None:
            tag_refs.append((user_ref, "$.source.target.userInput"))
            if user_ref.digest:
                digest_refs.append((user_ref, "$.source.target.userInput"))
        manifest_text = reader.opt_str("$.source.target.manifestDigest")
        manifest = normalize_digest(manifest_text) if manifest_text else None
        base = tag_refs[0][0] if tag_refs else user_ref
        if not digest_refs and manifest and base is not None:
            # the manifest pulled for the scanned reference: REPOSITORY@DIGEST names it
            digest_refs.append(
                (ImageRef(base.repository, None, manifest), "$.source.target.manifestDigest")
            )
    first_digest = digest_refs[0][0].digest if digest_refs else manifest
    names, every = _image_names(
        reader,
        options,
        tag_refs,
        digest_refs,
        {
            "user_input": Candidate(user_input, "$.source.target.userInput"),
            "image_id": Candidate(
                reader.opt_str("$.source.target.imageID"), "$.source.target.imageID"
            ),
        },
    )
    if is_image and not tag_refs and not digest_refs:
        names.candidates["image_name"] = Candidate(user_input, "$.source.target.userInput")
    if first_digest and not names.candidates["image_digest"].value:
        names.candidates["image_digest"] = Candidate(
            first_digest, "$.source.target.manifestDigest"
        )
    service = names.need("service")
    release = names.need("release")
    stamp = reader.opt_str("$.descriptor.timestamp")
    occurred_ms = (
        parse_time_ms("grype", "$.descriptor.timestamp", stamp)
        if stamp
        else _received(reader, "$.descriptor.timestamp", options)
    )
    findings: dict[str, Finding] = {}
    for i, match in enumerate(matches):
        path = f"$.matches[{i}]"
        if not isinstance(match, Mapping):
            raise reader.error(path, "must be an object")
        vpath = f"{path}.vulnerability"
        vuln = match.get("vulnerability")
        if not isinstance(vuln, Mapping):
            raise reader.error(vpath, "is missing (expected an object)")
        vuln_id = _str_field(reader, vuln, "id", vpath)
        if vuln_id is None:
            raise reader.error(f"{vpath}.id", "is missing (expected a string)")
        artifact = match.get("artifact")
        artifact = artifact if isinstance(artifact, Mapping) else {}
        pkg = _str_field(reader, artifact, "name", f"{path}.artifact") or ""
        version = _str_field(reader, artifact, "version", f"{path}.artifact")
        fix = vuln.get("fix")
        fix_versions = fix.get("versions") if isinstance(fix, Mapping) else None
        fixes = [x for x in fix_versions or () if isinstance(x, str)]
        related = match.get("relatedVulnerabilities")
        aliases = [
            r["id"]
            for r in (related if isinstance(related, list) else ())
            if isinstance(r, Mapping) and isinstance(r.get("id"), str) and r["id"] != vuln_id
        ]
        description = _str_field(reader, vuln, "description", vpath)
        _add(
            findings,
            Finding(
                vuln_id=vuln_id,
                severity=normalize_severity(_str_field(reader, vuln, "severity", vpath)),
                path=vpath,
                aliases=_set(*aliases),
                packages=_set(f"{pkg} {version}".strip() if pkg else None),
                fixes=_set(f"{pkg} {' / '.join(fixes)}".strip() if fixes else None),
                summary=clip(description, 300) if description else None,
            ),
        )
    identity = stamp or _payload_hash(payload)
    return Report(
        service,
        release,
        occurred_ms,
        identity,
        findings,
        {**names.origins, "release_aliases": "$.source.target"},
        tuple(release_aliases(release, (*every, manifest))),
        tuple(names.unresolved),
    )


def grype(payload: Any, options: IngestOptions) -> Conversion:
    """Grype JSON output (``grype -o json``: ``matches[]``, ``source``, ``descriptor``).

    Severity words are title case (``Critical`` .. ``Negligible``, ``Unknown``) and
    are lower-cased; ``Negligible`` / ``Unknown`` rank below low. Aliases from
    ``relatedVulnerabilities[].id`` join ``vulnerabilities``. Defaults: service = the
    last path segment of the image (``source.target.tags[0]``, else
    ``source.target.userInput``); release = the image tag, else the digest
    (``repoDigests[0]``, else ``manifestDigest``); directory / SBOM scans need
    ``--service`` / ``--release``. occurred_at = ``descriptor.timestamp``, else the
    receive time. release_aliases = the tags, repo digests and the manifest digest in
    canonical form (SPEC §8). Named values: ``image_name``, ``image_repository``,
    ``image_tag``, ``immutable_tag``, ``image_digest``, ``user_input``, ``image_id``.
    """
    return _with_previous("grype", payload, options, _grype_report)


# --- Dependency-Track ----------------------------------------------------------

DT_GROUPS: Final = frozenset({"NEW_VULNERABILITY", "NEW_VULNERABLE_DEPENDENCY"})


def _dt_aliases(reader: Reader, path: str) -> list[str]:
    out: list[str] = []
    for alias in reader.array(path, required=False):
        if isinstance(alias, Mapping):
            for key, value in alias.items():
                if (
                    isinstance(value, str)
                    and value
                    and key.lower().endswith("id")
                    and value not in out
                ):
                    out.append(value)
    return out


def _dt_finding(reader: Reader, path: str, component: str) -> Finding:
    reader.obj(path)
    vuln_id = reader.text(f"{path}.vulnId")
    summary = reader.opt_str(f"{path}.title") or reader.opt_str(f"{path}.description")
    if summary:
        summary = clip(summary.split("\n", 1)[0], 300)
    return Finding(
        vuln_id=vuln_id,
        severity=normalize_severity(reader.opt_str(f"{path}.severity")),
        path=path,
        aliases=_set(*(a for a in _dt_aliases(reader, f"{path}.aliases") if a != vuln_id)),
        packages=_set(component),
        summary=summary,
    )


def dependency_track(payload: Any, options: IngestOptions) -> Conversion:
    """Dependency-Track webhook notification, v4 (``group: NEW_VULNERABILITY``) and v5 / Hyades
    (``group: GROUP_NEW_VULNERABILITY``, ``level: LEVEL_...``, subject with ``project``).

    ``NEW_VULNERABILITY``: ``subject.vulnerability`` against each project of
    ``subject.affectedProjects`` (v4), else ``subject.project`` (v5);
    ``NEW_VULNERABLE_DEPENDENCY``: each of ``subject.vulnerabilities`` against
    ``subject.project``. Other groups give no event. Defaults per project: service =
    ``name``, release = ``version`` (``$`` mappings are read from the project object).
    occurred_at = ``notification.timestamp`` (v4 sends it without an offset: read as
    UTC). Aliases (``aliases[].vulnId``, ``cveId``, ``ghsaId``) join ``vulnerabilities``.
    Catalog lookups (service): the project ``uuid`` (``dependencytrack/project-id``), then
    its name (``dependencytrack/project-name``, ``relsec.io/names``).
    These notifications are incremental, so they only raise flags.
    Named values: ``project_name``, ``project_version``, ``project_uuid``.
    """
    reader = Reader("dependency-track", payload)
    if not isinstance(payload, Mapping):
        raise reader.error("$", "must be a JSON object")
    reader.obj("$.notification")
    group = reader.text("$.notification.group")
    plain = group.removeprefix("GROUP_")
    if plain not in DT_GROUPS:
        return Conversion(skipped=(f"dependency-track: notification group {group!r} is not read",))
    reader.obj("$.notification.subject")
    occurred_ms = reader.timestamp_ms("$.notification.timestamp", assume_utc=True)
    comp_name = reader.opt_str("$.notification.subject.component.name") or ""
    comp_group = reader.opt_str("$.notification.subject.component.group")
    comp_version = reader.opt_str("$.notification.subject.component.version")
    component = " ".join(
        x for x in (f"{comp_group}/{comp_name}" if comp_group else comp_name, comp_version) if x
    )
    if plain == "NEW_VULNERABILITY":
        vulns = [_dt_finding(reader, "$.notification.subject.vulnerability", component)]
    else:
        vulns = [
            _dt_finding(reader, f"$.notification.subject.vulnerabilities[{i}]", component)
            for i in range(len(reader.array("$.notification.subject.vulnerabilities")))
        ]
    projects: list[tuple[Mapping[str, Any], str]] = []
    affected = reader.array("$.notification.subject.affectedProjects", required=False)
    if plain == "NEW_VULNERABILITY" and affected:
        projects = [
            (p, f"$.notification.subject.affectedProjects[{i}]") for i, p in enumerate(affected)
        ]
    elif reader.opt_obj("$.notification.subject.project") is not None:
        projects = [
            (reader.obj("$.notification.subject.project"), "$.notification.subject.project")
        ]
    else:
        raise reader.error("$.notification.subject.project", "is missing (no project to flag)")
    seen: set[tuple[str, str]] = set()
    events: list[dict[str, Any]] = []
    skipped: list[str] = []
    unresolved: list[Unresolved] = []
    if options.previous is not None:
        skipped.append("dependency-track: notifications are incremental; --previous is ignored")
    for project, ppath in projects:
        if not isinstance(project, Mapping):
            raise reader.error(ppath, "must be an object")
        names = Names(
            reader,
            options,
            candidates={
                "project_name": Candidate(_s(project.get("name")), f"{ppath}.name"),
                "project_version": Candidate(_s(project.get("version")), f"{ppath}.version"),
                "project_uuid": Candidate(_s(project.get("uuid")), f"{ppath}.uuid"),
            },
            defaults={"service": ("project_name",), "release": ("project_version",)},
            overrides={"service": options.service, "release": options.release},
            service_keys=(
                Lookup(DTRACK_PROJECT, _s(project.get("uuid")), f"{ppath}.uuid"),
                Lookup(NAME, _s(project.get("name")), f"{ppath}.name"),
            ),
        )
        service = names.need("service", root=project)
        release = names.need("release", root=project)
        if (service, release) in seen:
            continue
        seen.add((service, release))
        findings: dict[str, Finding] = {}
        for f in vulns:
            _add(
                findings,
                f.copy(),
            )
        identity = stable_id(
            "dt",
            group,
            reader.get("$.notification.timestamp"),
            reader.get("$.notification.subject.component.uuid"),
            project.get("uuid"),
        )
        report = Report(
            service,
            release,
            occurred_ms,
            identity,
            findings,
            dict(names.origins),
            unresolved=tuple(names.unresolved),
        )
        part = _flags(
            "dependency-track", report, IngestOptions(min_severity=options.min_severity), None
        )
        events.extend(part.events)
        skipped.extend(part.skipped)
        unresolved.extend(part.unresolved)
    return Conversion(events=tuple(events), skipped=tuple(skipped), unresolved=tuple(unresolved))


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


ADAPTERS: Final[dict[str, Callable[[Any, IngestOptions], Conversion]]] = {
    "trivy": trivy,
    "grype": grype,
    "dependency-track": dependency_track,
}
__all__: Sequence[str] = ["ADAPTERS", "dependency_track", "grype", "trivy"]
