"""Deploy adapters: GitHub ``deployment_status``, Argo CD notifications, Flux events.

Each turns one delivery into at most one ``deploy`` event (SPEC §1). The name
mappings and their defaults are listed in each function's docstring and in
docs/ingest.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from streams.catalog.entities import ARGOCD_APP, ARGOCD_LABEL, FLUX, GITHUB, IMAGE, KUBERNETES
from streams.catalog.images import is_mutable_tag
from streams.ingest.common import (
    Candidate,
    Conversion,
    ImageRef,
    IngestOptions,
    Lookup,
    Names,
    Reader,
    clip,
    finish,
    format_ms,
    parse_image_ref,
    put_aliases,
    readable_id,
    stable_id,
    version_ref,
    with_unresolved,
)

TEAMS: Final = frozenset({"sre", "security", "dev"})

# --- GitHub ------------------------------------------------------------------------

GITHUB_STATES: Final[dict[str, str]] = {
    "success": "succeeded",
    "failure": "failed",
    "error": "failed",
}


def _github_deploy_payload(reader: Reader) -> Mapping[str, Any]:
    """``deployment.payload`` is an object, or a JSON string of one (the REST API allows both)."""
    raw = reader.get("$.deployment.payload")
    if isinstance(raw, str) and raw.strip():
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
    return raw if isinstance(raw, Mapping) else {}


def github(payload: Any, options: IngestOptions) -> Conversion:
    """GitHub webhook ``deployment_status`` event (REST v3 webhook payload, ``action: created``).

    States: ``success`` -> succeeded, ``failure`` / ``error`` -> failed; ``pending``,
    ``queued``, ``in_progress`` and ``inactive`` give no event (reason stated). A
    ``deployment`` event (the request, not its outcome) and ``ping`` give none either.

    Defaults: service = ``repository.name``; environment = ``deployment.environment``;
    release = ``deployment.payload.release``, else ``deployment.sha``; previous_release =
    ``deployment.payload.previous_release``; action = ``rollback`` when
    ``deployment.task`` is ``rollback`` or starts with ``rollback`` / ``deploy:rollback``,
    or ``deployment.payload.action == "rollback"`` or ``deployment.payload.rollback`` is
    true, else ``deploy``; team / incident_id / reason from ``deployment.payload.team`` /
    ``incident_id`` / ``reason`` (reason falls back to ``deployment.description``);
    actor = ``deployment_status.creator.login``; occurred_at =
    ``deployment_status.updated_at`` (else ``created_at``); event_id =
    ``github:deployment_status:<deployment_status.id>``, so a redelivery is a duplicate.
    Named values for ``--map``: ``repo_name``, ``repo_full_name``, ``environment``,
    ``original_environment``, ``sha``, ``short_sha``, ``ref``, ``payload_release``.
    """
    reader = Reader("github", payload)
    if not isinstance(payload, Mapping):
        raise reader.error("$", "must be a JSON object")
    event = options.event_name
    if event == "ping" or (event is None and "zen" in payload and "hook_id" in payload):
        return Conversion(skipped=("github: ping delivery, nothing to convert",))
    if event not in (None, "deployment_status"):
        if event == "deployment":
            return Conversion(skipped=(_DEPLOYMENT_REQUEST,))
        return Conversion(
            skipped=(f"github: {event!r} events are not read; subscribe to deployment_status",)
        )
    if "deployment_status" not in payload:
        if "deployment" in payload:
            return Conversion(skipped=(_DEPLOYMENT_REQUEST,))
        raise reader.error("$.deployment_status", "is missing (not a deployment_status delivery)")
    state = reader.text("$.deployment_status.state")
    status = GITHUB_STATES.get(state)
    status_id = reader.scalar_str("$.deployment_status.id")
    if status_id is None:
        raise reader.error("$.deployment_status.id", "is missing")
    if status is None:
        return Conversion(
            skipped=(
                f"github: deployment_status {status_id} state {state!r} is not an outcome "
                "(only success, failure and error become deploy events)",
            )
        )
    reader.obj("$.deployment")
    extra = _github_deploy_payload(reader)
    sha = reader.opt_str("$.deployment.sha")
    names = Names(
        reader,
        options,
        candidates={
            "repo_name": Candidate(reader.opt_str("$.repository.name"), "$.repository.name"),
            "repo_full_name": Candidate(
                reader.opt_str("$.repository.full_name"), "$.repository.full_name"
            ),
            "environment": Candidate(
                reader.opt_str("$.deployment.environment"), "$.deployment.environment"
            ),
            "status_environment": Candidate(
                reader.opt_str("$.deployment_status.environment"), "$.deployment_status.environment"
            ),
            "original_environment": Candidate(
                reader.opt_str("$.deployment.original_environment"),
                "$.deployment.original_environment",
            ),
            "sha": Candidate(sha, "$.deployment.sha"),
            "short_sha": Candidate(sha[:12] if sha else None, "$.deployment.sha"),
            "ref": Candidate(reader.opt_str("$.deployment.ref"), "$.deployment.ref"),
            "payload_release": Candidate(
                _opt_text(extra.get("release")), "$.deployment.payload.release"
            ),
        },
        defaults={
            "service": ("repo_name",),
            "environment": ("environment", "status_environment"),
            "release": ("payload_release", "sha"),
        },
        overrides={
            "service": options.service,
            "environment": options.environment,
            "release": options.release,
        },
        service_keys=(
            Lookup(GITHUB, reader.opt_str("$.repository.full_name"), "$.repository.full_name"),
        ),
        environment_targets=(
            reader.opt_str("$.deployment.environment"),
            reader.opt_str("$.deployment_status.environment"),
        ),
    )
    task = (reader.opt_str("$.deployment.task") or "").lower()
    rollback = (
        task == "rollback"
        or task.startswith(("rollback:", "deploy:rollback"))
        or str(extra.get("action", "")).lower() == "rollback"
        or extra.get("rollback") is True
    )
    team = _opt_text(extra.get("team"))
    when_path = "$.deployment_status.updated_at"
    if reader.opt_str(when_path) is None:
        when_path = "$.deployment_status.created_at"
    occurred_ms = reader.timestamp_ms(when_path)
    fields: dict[str, Any] = {
        "type": "deploy",
        "event_id": f"github:deployment_status:{status_id}",
        "occurred_at": format_ms(occurred_ms),
        "source": "github",
        "service": names.pick("service"),
        "environment": names.pick("environment"),
        "release": names.pick("release"),
        "previous_release": _opt_text(extra.get("previous_release")),
        "action": "rollback" if rollback else "deploy",
        "status": status,
        "team": team.lower() if team and team.lower() in TEAMS else None,
        "actor": reader.opt_str("$.deployment_status.creator.login")
        or reader.opt_str("$.deployment.creator.login"),
        "reason": _opt_text(extra.get("reason")) or reader.opt_str("$.deployment.description"),
        "incident_id": _opt_text(extra.get("incident_id")),
    }
    put_aliases(
        fields,
        "release",
        (sha, _opt_text(extra.get("release")), version_ref(reader.opt_str("$.deployment.ref"))),
    )
    origins = dict(names.origins)
    origins.update(
        occurred_at=when_path,
        previous_release="$.deployment.payload.previous_release",
        incident_id="$.deployment.payload.incident_id",
        actor="$.deployment_status.creator.login",
        reason="$.deployment.description",
        release_aliases="$.deployment",
    )
    return with_unresolved(Conversion(events=tuple(finish("github", [(fields, origins)]))), names)


_DEPLOYMENT_REQUEST: Final = (
    "github: a deployment event is the request to deploy, not its outcome; "
    "relsec reads deployment_status"
)


def _opt_text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# --- Argo CD -------------------------------------------------------------------------

ARGOCD_SCHEMA: Final = "relsec.argocd/v1"
#: The fields of relsec's Argo CD template body, all of which the adapter reads.
ARGOCD_BODY_FIELDS: Final = frozenset(
    {
        "schema",
        "application",
        "project",
        "namespace",
        "server",
        "labels",
        "phase",
        "message",
        "started_at",
        "finished_at",
        "revision",
        "sync_revision",
        "images",
        "initiated_by",
        "history",
    }
)
ARGOCD_PHASES: Final[dict[str, str]] = {
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Error": "failed",
}


def _argocd_image(
    images: list[Any], app: str | None, claimed: frozenset[str] = frozenset()
) -> tuple[ImageRef | None, str]:
    """The image of the application and its path: the first whose repository the catalog
    gives the service (``claimed``), else the one named like the application, else the
    first. Only this image names the release: a sidecar's tags are another release's."""
    refs: list[tuple[int, ImageRef]] = []
    for i, text in enumerate(images):
        ref = parse_image_ref(text) if isinstance(text, str) else None
        if ref is not None:
            refs.append((i, ref))
    if not refs:
        return None, "$.images"
    chosen = next(
        ((i, r) for i, r in refs if r.repository in claimed),
        next(((i, r) for i, r in refs if app and r.name == app), refs[0]),
    )
    i, ref = chosen
    return ref, f"$.images[{i}]"


def argocd(payload: Any, options: IngestOptions) -> Conversion:
    """Argo CD notifications webhook body rendered by relsec's template ``relsec.argocd/v1``.

    Install ``deploy/argocd/relsec-notifications-cm.yaml``: its template renders
    from ``.app`` the fields read here (``schema``, ``application``, ``project``,
    ``namespace``, ``server``, ``labels``, ``phase``, ``started_at``, ``finished_at``,
    ``revision``, ``sync_revision``, ``images``, ``initiated_by``, ``history``).

    Phase ``Succeeded`` -> succeeded, ``Failed`` / ``Error`` -> failed, others (Running,
    Terminating) give no event. Defaults: service = ``application``; environment =
    ``namespace`` (the destination namespace); release = the tag (else digest) of the
    image whose name equals the application, else of the first image, else the sync
    ``revision``; previous_release = the revision of the history entry before this sync
    when release comes from the revision; action = ``rollback`` when the label
    ``relsec.io/action`` says so, or when the synced revision equals the revision of a
    history entry older than the one running before (a return to an earlier release),
    else ``deploy``. occurred_at = ``finished_at``; event_id = hash of
    (application, finished_at, revision, phase). Named values for ``--map``:
    ``application``, ``project``, ``namespace``, ``server``, ``image_tag``,
    ``image_digest``, ``revision``, ``short_revision``, ``label:<key>``.
    """
    reader = Reader("argocd", payload)
    if not isinstance(payload, Mapping):
        raise reader.error("$", "must be a JSON object rendered by relsec's Argo CD template")
    schema = reader.get("$.schema")
    if schema != ARGOCD_SCHEMA:
        raise reader.error(
            "$.schema",
            f"is {schema!r}, expected {ARGOCD_SCHEMA!r}: install the template in deploy/argocd/ "
            "(Argo CD's own webhook bodies do not name the application)",
        )
    app = reader.text("$.application")
    phase = reader.text("$.phase")
    status = ARGOCD_PHASES.get(phase)
    if status is None:
        return Conversion(skipped=(f"argocd: {app} operation phase {phase!r} is not finished",))
    images = list(reader.array("$.images", required=False))
    revision = reader.opt_str("$.revision") or reader.opt_str("$.sync_revision")
    labels = reader.opt_obj("$.labels") or {}
    candidates = {
        "application": Candidate(app, "$.application"),
        "project": Candidate(reader.opt_str("$.project"), "$.project"),
        "namespace": Candidate(reader.opt_str("$.namespace"), "$.namespace"),
        "server": Candidate(reader.opt_str("$.server"), "$.server"),
        "revision": Candidate(revision, "$.revision"),
        "short_revision": Candidate(revision[:12] if revision else None, "$.revision"),
    }
    for key, value in labels.items():
        if isinstance(value, str):
            candidates[f"label:{key}"] = Candidate(value, f"$.labels['{key}']")
    names = Names(
        reader,
        options,
        candidates=candidates,
        defaults={
            "service": ("application",),
            "environment": ("namespace",),
            "release": ("immutable_tag", "image_digest", "image_tag", "revision"),
        },
        overrides={
            "service": options.service,
            "environment": options.environment,
            "release": options.release,
        },
        service_keys=(
            Lookup(ARGOCD_APP, app, "$.application"),
            Lookup(KUBERNETES, app, "$.application"),
            *(
                Lookup(ARGOCD_LABEL, f"{k}={v}", f"$.labels['{k}']")
                for k, v in labels.items()
                if isinstance(v, str)
            ),
            *(
                Lookup(IMAGE, text, f"$.images[{i}]")
                for i, text in enumerate(images)
                if isinstance(text, str)
            ),
        ),
        environment_targets=(app, reader.opt_str("$.namespace")),
    )
    claimed: frozenset[str] = frozenset()
    if options.catalog is not None:
        names.pick("service")  # first: the component says which image is the service's
        if names.component is not None:
            claimed = frozenset(c.key for c in names.component.claims if c.kind == IMAGE)
    image, image_path = _argocd_image(images, app, claimed)
    tag = image.tag if image else None
    candidates["image_tag"] = Candidate(tag or (image.digest if image else None), image_path)
    candidates["image_digest"] = Candidate(image.digest if image else None, image_path)
    candidates["immutable_tag"] = Candidate(
        tag if tag and not is_mutable_tag(tag) else None, image_path
    )
    release = names.pick("release")
    history = [h for h in reader.array("$.history", required=False) if isinstance(h, Mapping)]
    # Argo CD appends a successful sync to the history before notifying; a failed one is not there
    if history and status == "succeeded" and history[-1].get("revision") == revision:
        history = history[:-1]
    earlier = [h.get("revision") for h in history[:-1]]
    previous_revision = history[-1].get("revision") if history else None
    label_action = str(labels.get("relsec.io/action", "")).lower()
    rollback = label_action == "rollback" or (
        label_action != "deploy"
        and revision is not None
        and revision in earlier
        and revision != previous_revision
    )
    from_revision = names.origins.get("release") == "$.revision"
    finished = reader.opt_str("$.finished_at")
    when_path = "$.finished_at" if finished else "$.started_at"
    occurred_ms = reader.timestamp_ms(when_path)
    initiated = reader.opt_obj("$.initiated_by") or {}
    actor = initiated.get("username") if isinstance(initiated.get("username"), str) else None
    if actor is None and initiated.get("automated") is True:
        actor = "argocd (automated sync)"
    team = str(labels.get("relsec.io/team", "")).lower() or None
    fields: dict[str, Any] = {
        "type": "deploy",
        "event_id": stable_id(
            "argocd", app, finished or reader.get("$.started_at"), revision, phase
        ),
        "occurred_at": format_ms(occurred_ms),
        "source": "argocd",
        "service": names.pick("service"),
        "environment": names.pick("environment"),
        "release": release,
        "previous_release": previous_revision
        if from_revision and isinstance(previous_revision, str)
        else None,
        "action": "rollback" if rollback else "deploy",
        "status": status,
        "team": team if team in TEAMS else None,
        "actor": actor,
        "reason": reader.opt_str("$.message"),
        "incident_id": labels.get("relsec.io/incident")
        if isinstance(labels.get("relsec.io/incident"), str)
        else None,
    }
    link_revision = str(labels.get("relsec.io/link-revision", "")).lower() != "false"
    put_aliases(
        fields,
        "release",
        (*(image.names() if image else ()), revision if link_revision else None),
    )
    origins = dict(names.origins)
    origins.update(
        occurred_at=when_path,
        previous_release="$.history",
        reason="$.message",
        release_aliases=image_path,
    )
    return with_unresolved(Conversion(events=tuple(finish("argocd", [(fields, origins)]))), names)


# --- Flux ------------------------------------------------------------------------

FLUX_SUCCESS_REASONS: Final = frozenset(
    {
        "ReconciliationSucceeded",
        "InstallSucceeded",
        "UpgradeSucceeded",
        "RollbackSucceeded",
        # kustomize-controller before v0.20 (Flux 0.2x): the revision only in the message
        "ApplySucceed",
    }
)
#: ``Applied revision: main/abc`` (old kustomize-controller), ``revision main@sha1:abc``.
_REVISION_IN_MESSAGE: Final = re.compile(r"\brevision:?\s+'?([^\s',]+)", re.IGNORECASE)
FLUX_DEPLOY_KINDS: Final = frozenset({"Kustomization", "HelmRelease"})
FLUX_ROLLBACK_REASONS: Final = frozenset({"RollbackSucceeded", "RollbackFailed"})
FLUX_NOT_A_DEPLOY: Final = frozenset(
    {
        "DependencyNotReady",
        "Progressing",
        "ArtifactUpToDate",
        "NewArtifact",
        "GitOperationSucceeded",
        "UninstallSucceeded",
        "UninstallFailed",
        "TestSucceeded",
        "TestFailed",
        "Suspended",
    }
)
_SHA_AFTER_REF: Final = re.compile(r"^[^@]*/([0-9a-f]{7,64})$")


def flux_release(revision: str) -> str:
    """``main@sha1:abc`` / ``main/abc`` -> ``abc``; ``1.2.3`` (a chart version) unchanged."""
    if "@" in revision:
        tail = revision.rsplit("@", 1)[1]
        return tail.split(":", 1)[1] if tail.startswith("sha1:") else tail
    m = _SHA_AFTER_REF.match(revision)
    return m.group(1) if m else revision


def flux(payload: Any, options: IngestOptions) -> Conversion:
    """Flux notification-controller event (``event.toolkit.fluxcd.io`` v1beta3, generic webhook).

    Only Kustomization and HelmRelease events are deploys (source-controller events such
    as a GitRepository fetch failure give no event). Read: ``involvedObject`` (kind,
    name, namespace, apiVersion), ``severity``,
    ``reason``, ``message``, ``timestamp``, and the revision in ``metadata`` under
    ``<api group>/revision`` (``kustomize.toolkit.fluxcd.io/revision``,
    ``helm.toolkit.fluxcd.io/revision``), else any key ending in ``/revision``.

    ``severity: error`` -> a failed deploy; ``severity: info`` with reason
    ReconciliationSucceeded / InstallSucceeded / UpgradeSucceeded / RollbackSucceeded
    -> succeeded; other info events (Progressing, DependencyNotReady, ...) give no
    event. action = ``rollback`` for RollbackSucceeded / RollbackFailed (Helm).
    Defaults: service = ``involvedObject.name``; environment =
    ``involvedObject.namespace``; release = the commit SHA of the revision
    (``main@sha1:<sha>`` and ``main/<sha>`` -> ``<sha>``), or the revision as is (a
    chart version). event_id = hash of (uid, name, revision, reason, timestamp).
    Named values: ``name``, ``namespace``, ``kind``, ``revision``, ``raw_revision``,
    ``short_revision``, ``metadata:<key>``.
    """
    reader = Reader("flux", payload)
    if not isinstance(payload, Mapping):
        raise reader.error("$", "must be a JSON object")
    reader.obj("$.involvedObject")
    name = reader.text("$.involvedObject.name")
    kind = reader.opt_str("$.involvedObject.kind") or "object"
    if kind not in FLUX_DEPLOY_KINDS:
        return Conversion(
            skipped=(f"flux: {kind}/{name} is not a deploy (only Kustomization and HelmRelease)",)
        )
    severity = reader.text("$.severity")
    reason = reader.opt_str("$.reason") or ""
    if severity == "error":
        if reason in FLUX_NOT_A_DEPLOY:
            return Conversion(skipped=(f"flux: {kind}/{name} {reason} is not a deploy outcome",))
        status = "failed"
    elif severity == "info":
        if reason not in FLUX_SUCCESS_REASONS:
            return Conversion(
                skipped=(f"flux: {kind}/{name} info event {reason!r} is not a finished deploy",)
            )
        status = "succeeded"
    else:
        raise reader.error("$.severity", f"is {severity!r}, expected 'info' or 'error'")
    metadata = reader.opt_obj("$.metadata") or {}
    api_version = reader.opt_str("$.involvedObject.apiVersion") or ""
    group = api_version.split("/", 1)[0]
    rev_key = (
        f"{group}/revision"
        if f"{group}/revision" in metadata
        else next((k for k in metadata if isinstance(k, str) and k.endswith("/revision")), None)
    )
    raw_rev = metadata.get(rev_key) if rev_key else None
    raw_rev = raw_rev if isinstance(raw_rev, str) and raw_rev else None
    rev_path = (
        f"$.metadata['{rev_key}']" if rev_key else f"$.metadata['{group or '<group>'}/revision']"
    )
    in_message = _REVISION_IN_MESSAGE.search(reader.opt_str("$.message") or "")
    if raw_rev is None and in_message is not None:
        raw_rev, rev_path = in_message.group(1), "$.message"
    release = flux_release(raw_rev) if raw_rev else None
    candidates = {
        "name": Candidate(name, "$.involvedObject.name"),
        "namespace": Candidate(
            reader.opt_str("$.involvedObject.namespace"), "$.involvedObject.namespace"
        ),
        "kind": Candidate(kind, "$.involvedObject.kind"),
        "revision": Candidate(release, rev_path),
        "raw_revision": Candidate(raw_rev, rev_path),
        "short_revision": Candidate(release[:12] if release else None, rev_path),
    }
    for key, value in metadata.items():
        if isinstance(value, str):
            candidates[f"metadata:{key}"] = Candidate(value, f"$.metadata['{key}']")
    namespace = reader.opt_str("$.involvedObject.namespace")
    flux_object = f"{kind}/{namespace}/{name}" if namespace else None
    names = Names(
        reader,
        options,
        candidates=candidates,
        defaults={"service": ("name",), "environment": ("namespace",), "release": ("revision",)},
        overrides={
            "service": options.service,
            "environment": options.environment,
            "release": options.release,
        },
        service_keys=(
            Lookup(FLUX, flux_object, "$.involvedObject"),
            Lookup(KUBERNETES, name, "$.involvedObject.name"),
        ),
        environment_targets=(flux_object, namespace),
    )
    occurred_ms = reader.timestamp_ms("$.timestamp")
    fields: dict[str, Any] = {
        "type": "deploy",
        "event_id": stable_id(
            "flux",
            reader.get("$.involvedObject.uid"),
            kind,
            name,
            raw_rev,
            reason,
            reader.get("$.timestamp"),
        ),
        "occurred_at": format_ms(occurred_ms),
        "source": "flux",
        "service": names.pick("service"),
        "environment": names.pick("environment"),
        "release": names.pick("release"),
        "previous_release": None,
        "action": "rollback" if reason in FLUX_ROLLBACK_REASONS else "deploy",
        "status": status,
        "actor": reader.opt_str("$.reportingController"),
        "reason": clip(f"{reason}: {reader.opt_str('$.message') or ''}".strip(": ")) or None,
    }
    put_aliases(fields, "release", (release, flux_ref_version(raw_rev)))
    origins = dict(names.origins)
    origins.update(
        occurred_at="$.timestamp",
        reason="$.message",
        actor="$.reportingController",
        release_aliases=rev_path,
    )
    return with_unresolved(Conversion(events=tuple(finish("flux", [(fields, origins)]))), names)


def flux_ref_version(revision: str | None) -> str | None:
    """The tag of ``v1.2.3@sha1:abc`` / ``v1.2.3/abc`` (a source pinned to a tag), else None:
    a branch name (``main@sha1:abc``) moves and names no release."""
    if not revision:
        return None
    if "@" in revision:
        ref = revision.rsplit("@", 1)[0]
    elif _SHA_AFTER_REF.match(revision):
        ref = revision.rsplit("/", 1)[0]
    else:
        return None
    version = version_ref(ref.removeprefix("refs/tags/"))
    return version if version and not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", version) else None


__all__ = ["argocd", "flux", "flux_ref_version", "flux_release", "github", "readable_id"]
