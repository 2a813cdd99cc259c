"""Adapters fill ``release_aliases`` with what the tool knows of a release (SPEC §8).

Images in the one canonical form (``REPOSITORY:TAG``, ``REPOSITORY@sha256:HEX``, the
bare digest), the tag alone, commit SHAs, version refs; never a mutable name
(``latest``, a branch) and never a sidecar's image.
"""

from __future__ import annotations

from typing import Any

from streams.catalog.images import MAX_ALIASES
from streams.ingest import IngestOptions, convert
from streams.ingest.deploys import flux_ref_version

from .helpers import RECEIVED_MS, assert_canonical, load, only

CHECKOUT_DIGEST = "sha256:7d3f0c1e2b4a59687c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2918f7e6d5c4b3a291"


def _one(source: str, payload: Any, **options: Any) -> dict[str, Any]:
    options.setdefault("received_at_ms", RECEIVED_MS)
    conversion = convert(source, payload, IngestOptions(**options))
    assert_canonical(conversion)
    return only(conversion)


def _all(source: str, payload: Any, **options: Any) -> list[dict[str, Any]]:
    options.setdefault("received_at_ms", RECEIVED_MS)
    conversion = convert(source, payload, IngestOptions(**options))
    assert_canonical(conversion)
    return list(conversion.events)


def test_trivy_tags_and_repo_digests() -> None:
    events = _all("trivy", load("trivy/checkout-2.4.0.scan1.json"))
    assert {e["release"] for e in events} == {"2.4.0"}
    for e in events:
        assert e["release_aliases"] == [
            f"ghcr.io/acme/checkout@{CHECKOUT_DIGEST}",
            CHECKOUT_DIGEST,
            "ghcr.io/acme/checkout:2.4.0",
        ]


def test_trivy_of_latest_names_the_release_by_its_digest() -> None:
    report = load("trivy/checkout-2.4.0.scan1.json")
    report["ArtifactName"] = "ghcr.io/acme/checkout:latest"
    report["Metadata"]["RepoTags"] = ["ghcr.io/acme/checkout:latest"]
    events = _all("trivy", report)
    assert {e["release"] for e in events} == {CHECKOUT_DIGEST}
    assert all(e["release_aliases"] == [f"ghcr.io/acme/checkout@{CHECKOUT_DIGEST}"] for e in events)


def test_trivy_many_tags_are_capped() -> None:
    report = load("trivy/checkout-2.4.0.scan1.json")
    report["Metadata"]["RepoTags"] = [f"ghcr.io/acme/checkout:2.4.0-b{i}" for i in range(100)]
    events = _all("trivy", report)
    assert all(len(e["release_aliases"]) == MAX_ALIASES for e in events)


def test_grype_tags_repo_digests_and_manifest_digest() -> None:
    report = load("grype/payments-api-1.4.2.json")
    events = _all("grype", report)
    manifest = report["source"]["target"]["manifestDigest"]
    repo_digest = report["source"]["target"]["repoDigests"][0].split("@", 1)[1]
    for e in events:
        assert e["release"] == "1.4.2"
        assert e["release_aliases"] == [
            f"ghcr.io/acme/payments-api@{repo_digest}",
            repo_digest,
            "ghcr.io/acme/payments-api:1.4.2",
            manifest,
        ]


def test_cdevents_purl_digest_tag_and_repository_url() -> None:
    e = _one("cdevents", load("cdevents/service_deployed.v0.5.json"))
    assert e["release"] == CHECKOUT_DIGEST
    assert e["release_aliases"] == [
        f"ghcr.io/acme/checkout@{CHECKOUT_DIGEST}",
        "ghcr.io/acme/checkout:2.4.0",
        "2.4.0",
    ]
    # the tag inside the purl can be selected as the release
    payload = load("cdevents/service_deployed.v0.5.json")
    tagged = _one("cdevents", payload, mapping=(("release", "artifact_tag"),))
    assert tagged["release"] == "2.4.0" and CHECKOUT_DIGEST in tagged["release_aliases"]


def test_cdevents_purl_without_repository_url_writes_no_repository() -> None:
    payload = load("cdevents/service_deployed.v0.5.json")
    payload["subject"]["content"]["artifactId"] = f"pkg:oci/checkout@{CHECKOUT_DIGEST}?tag=2.4.0"
    e = _one("cdevents", payload)
    assert e["release_aliases"] == ["2.4.0"]  # docker.io/library/checkout would be a guess


def test_cdevents_incident_suspected_release() -> None:
    e = _one("cdevents", load("cdevents/incident_detected.v0.5.json"))
    assert e["suspected_release"] == "2.4.0" and "release_aliases" not in e


def test_argocd_application_image_and_revision_only() -> None:
    e = _one("argocd", load("argocd/body.rollback-succeeded.json"))
    assert e["release"] == "2.3.1"
    assert e["release_aliases"] == [
        "ghcr.io/acme/checkout:2.3.1",
        "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    ]
    body = load("argocd/body.rollback-succeeded.json")
    body["labels"]["relsec.io/link-revision"] = "false"  # Image Updater's argocd write-back
    assert _one("argocd", body)["release_aliases"] == ["ghcr.io/acme/checkout:2.3.1"]


def test_github_sha_payload_release_and_version_refs_not_branches() -> None:
    payload = load("github/deployment_status.success.json")
    e = _one("github", payload)
    assert e["release_aliases"] == ["3f786850e387550fdab836ed7e6dc881de23001b", "v2.4.0"]
    payload["deployment"]["ref"] = "main"
    assert _one("github", payload)["release_aliases"] == [
        "3f786850e387550fdab836ed7e6dc881de23001b"
    ]
    payload["deployment"]["payload"] = {}
    assert "release_aliases" not in _one("github", payload)  # the release is the sha itself


def test_flux_revisions() -> None:
    e = _one("flux", load("flux/kustomization.reconciliation-succeeded.json"))
    assert e["release"] == "5f1c0a9e3b7d2c4a6e8f0b1d3c5e7a9b2d4f6a8c"
    assert "release_aliases" not in e  # main@sha1:…: a branch names no release
    payload = load("flux/kustomization.reconciliation-succeeded.json")
    payload["metadata"]["kustomize.toolkit.fluxcd.io/revision"] = "v2.4.0@sha1:" + "ab" * 20
    e = _one("flux", payload)
    assert (e["release"], e["release_aliases"]) == ("ab" * 20, ["v2.4.0"])
    assert flux_ref_version("refs/tags/v1.2@sha1:" + "a" * 40) == "v1.2"
    assert flux_ref_version("main/" + "a" * 40) is None
    assert flux_ref_version("1.4.2") is None  # a chart version is the release itself


def test_flux_older_event_format_apply_succeed_with_the_revision_in_the_message() -> None:
    """kustomize-controller before v0.20: reason ApplySucceed, no revision in metadata."""
    payload: dict[str, Any] = {
        "involvedObject": {
            "kind": "Kustomization",
            "namespace": "prod",
            "name": "checkout",
            "uid": "7e1b2c3d-0000-4000-8000-000000000001",
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1beta1",
        },
        "severity": "info",
        "timestamp": "2021-06-01T10:00:00Z",
        "message": "Applied revision: main/5f1c0a9e3b7d2c4a6e8f0b1d3c5e7a9b2d4f6a8c",
        "reason": "ApplySucceed",
        "reportingController": "kustomize-controller",
    }
    e = _one("flux", payload)
    assert (e["status"], e["release"]) == ("succeeded", "5f1c0a9e3b7d2c4a6e8f0b1d3c5e7a9b2d4f6a8c")
    failed = dict(payload, severity="error", reason="ApplyFailed", message="apply failed")
    failed_event = _one("flux", failed, release="unknown")
    assert failed_event["status"] == "failed"


def _scan_of_floating_tag(tag: str, digest: str, created_at: str, keep: set[str]) -> Any:
    report = load("trivy/checkout-2.4.0.scan1.json")
    report["ArtifactName"] = f"ghcr.io/acme/checkout:{tag}"
    report["CreatedAt"] = created_at
    report["Metadata"]["RepoTags"] = [f"ghcr.io/acme/checkout:{tag}"]
    report["Metadata"]["RepoDigests"] = [f"ghcr.io/acme/checkout@{digest}"]
    for result in report["Results"]:
        result["Vulnerabilities"] = [
            v for v in result.get("Vulnerabilities") or [] if v["VulnerabilityID"] in keep
        ]
    return report


def test_a_scan_of_a_floating_tag_names_its_release_by_digest_and_not_by_the_tag() -> None:
    """``:2``, ``:v2.4`` and ``:stable`` move between images (the engine's mutable
    patterns): the digest is the release, the tag names nothing."""
    for tag in ("2", "v2.4", "stable"):
        at = "2026-03-04T10:00:00Z"
        report = _scan_of_floating_tag(tag, CHECKOUT_DIGEST, at, {"CVE-2026-2222"})
        events = _all("trivy", report)
        assert {e["release"] for e in events} == {CHECKOUT_DIGEST}, tag
        for e in events:
            assert e["release_aliases"] == [f"ghcr.io/acme/checkout@{CHECKOUT_DIGEST}"], tag


def test_two_scans_of_one_floating_tag_are_two_releases_for_the_engine() -> None:
    """A month apart ``:2`` pointed to two images: a finding of the old one must not
    flag a deploy of the new one (it did when ``2`` linked both digests)."""
    from agents.engine import Engine, EngineConfig
    from agents.model.events import parse_event
    from agents.model.timefmt import parse_rfc3339_ms

    old = "sha256:" + "1" * 64
    new = "sha256:" + "2" * 64
    scans = [
        _scan_of_floating_tag("2", old, "2026-02-01T10:00:00Z", {"CVE-2026-2222"}),
        _scan_of_floating_tag("2", new, "2026-03-01T10:00:00Z", {"GHSA-9wv6-86v2-598j"}),
    ]
    events = [parse_event(e) for scan in scans for e in _all("trivy", scan)]
    deploy = parse_event({
        "type": "deploy", "event_id": "dep-new", "occurred_at": "2026-03-02T09:00:00Z",
        "source": "argocd", "service": events[0].service, "environment": "production",
        "release": new, "action": "deploy",
    })
    engine = Engine(EngineConfig())
    now = parse_rfc3339_ms("2026-03-03T00:00:00Z")
    alerts = [a for e in [*events, deploy] for a in engine.process(e, now).alerts]
    fired = [a.summary for a in alerts if a.rule == "flagged-release-deployed"]
    assert fired and all("GHSA-9wv6-86v2-598j" in s for s in fired), fired
    assert not [s for s in fired if "CVE-2026-2222" in s], fired
