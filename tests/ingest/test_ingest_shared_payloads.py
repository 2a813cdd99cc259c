"""The adapters over every file of ``../shared/payloads`` (real tool payloads), when it exists.

The folder sits beside the checkout and is not the project's to copy. Each file
known when these tests were written has its expectations declared below (the
fields the payload implies, or why it is not a payload: the YAML ConfigMaps and
the ``.jsonc`` fragment). A file added there later is still run through its
folder's adapter: it must give valid events, or an AdapterError naming a path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.ingest import ADAPTERS, IngestOptions, convert, decode_payload
from streams.ingest.common import Conversion
from streams.ingest.errors import AdapterError

from .helpers import RECEIVED_MS, SHARED, assert_canonical

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"{SHARED} does not exist beside this checkout"
)

FOLDER_SOURCE = {name: name for name in ADAPTERS}


def _convert(rel: str, **options: Any) -> Conversion:
    source = FOLDER_SOURCE[rel.split("/", 1)[0]]
    options.setdefault("received_at_ms", RECEIVED_MS)
    payload = decode_payload(source, (SHARED / rel).read_bytes())
    conversion = convert(source, payload, IngestOptions(**options))
    assert_canonical(conversion)
    return conversion


def _one(rel: str, **options: Any) -> dict[str, Any]:
    c = _convert(rel, **options)
    assert len(c.events) == 1, c
    return c.events[0]


def _flags(rel: str, **options: Any) -> dict[str, dict[str, Any]]:
    return {e["flag_id"]: e for e in _convert(rel, **options).events}


# --- declared expectations, one function per file ---------------------------------


def _github_deployment_status() -> None:
    e = _one("github/deployment_status.payload.json")
    assert e["event_id"] == "github:deployment_status:209916254"
    assert (e["service"], e["environment"], e["status"], e["action"]) == (
        "Hello-World",
        "production",
        "succeeded",
        "deploy",
    )
    assert e["release"] == "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    assert (e["occurred_at"], e["actor"]) == ("2019-05-15T15:20:55Z", "Codertocat")
    assert (
        _one("github/deployment_status.payload.json", mapping=(("release", "ref"),))["release"]
        == "master"
    )


def _github_deployment() -> None:
    c = _convert("github/deployment.payload.json")
    assert c.events == () and "deployment_status" in c.skipped[0]


def _argocd_not_a_delivery(rel: str) -> None:
    with pytest.raises(AdapterError) as info:
        _convert(rel)
    assert info.value.path == "$" and "not valid JSON" in info.value.detail
    doc = yaml.safe_load((SHARED / rel).read_text())
    assert isinstance(doc, dict)  # a ConfigMap or a catalog template: configuration, not a body


def _argocd_configmap(rel: str) -> None:
    _argocd_not_a_delivery(rel)
    doc = yaml.safe_load((SHARED / rel).read_text())
    assert doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "argocd-notifications-cm"


def _argocd_fragment() -> None:
    rel = "argocd/examples.on-deployed-webhook.syncResult.FRAGMENT.jsonc"
    with pytest.raises(AdapterError) as info:
        _convert(rel)
    assert info.value.path == "$" and "line 6" in info.value.detail  # the '#' comment
    # even made into JSON, Argo CD's syncResult body does not name the application:
    text = (SHARED / rel).read_text()
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))
    text = re.sub(r",\s*\.\.\.\s*}", "}", text)
    body = decode_payload("argocd", text.encode())
    assert body["revision"] == "f3937462080c6946ff5ec4b5fa393e7c22388e4c"
    with pytest.raises(AdapterError) as info:
        convert("argocd", body)
    assert info.value.path == "$.schema"


def _cdevents() -> None:
    d = _one("cdevents/service_deployed.spec-v0.4.1.json")
    r = _one("cdevents/service_rolledback.spec-v0.4.1.json")
    digest = "sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"
    for e, action in ((d, "deploy"), (r, "rollback")):
        assert (e["type"], e["service"], e["environment"], e["release"], e["action"]) == (
            "deploy",
            "mySubject123",
            "test123",
            digest,
            action,
        )
        assert e["occurred_at"] == "2023-03-20T14:27:05.315Z" and e["status"] == "succeeded"
    assert d["event_id"] != r["event_id"]  # the two examples share context.id
    o = _one("cdevents/incident_detected.spec-v0.4.1.json")
    z = _one("cdevents/incident_resolved.spec-v0.4.1.json")
    assert (o["status"], z["status"]) == ("opened", "resolved")
    for e in (o, z):
        assert (e["service"], e["environment"], e["incident_id"]) == (
            "myApp",
            "prod1",
            "incident-123",
        )
    assert o["title"] == "Response time above threshold of 100ms"
    assert o["suspected_release"] == digest
    assert o["event_id"] != z["event_id"]


def _dependency_track() -> None:
    flags = _flags("dependency-track/NEW_VULNERABILITY.docs-4.14.3.json")
    e = flags["CVE-2012-5784"]
    assert list(flags) == ["CVE-2012-5784"]
    assert (e["service"], e["release"], e["severity"]) == ("Acme Example", "1.0.0", "medium")
    assert e["vulnerabilities"] == ["CVE-2012-5784", "GHSA-55w9-c3g2-4rrh"]
    assert e["occurred_at"] == "2018-08-27T23:26:22.961Z" and "apache/axis 1.4" in e["title"]
    flags = _flags("dependency-track/NEW_VULNERABLE_DEPENDENCY.docs-4.14.3.json")
    assert sorted(flags) == ["CVE-2012-5784", "CVE-2014-3596"]
    assert {e["release"] for e in flags.values()} == {"1.0.0"}
    assert not _flags(
        "dependency-track/NEW_VULNERABLE_DEPENDENCY.docs-4.14.3.json", min_severity="high"
    )


def _flux() -> None:
    e = _one("flux/event.kustomization-error.events-md-v1beta3.json")
    assert (e["service"], e["environment"], e["status"], e["action"]) == (
        "webapp",
        "apps",
        "failed",
        "deploy",
    )
    assert e["release"] == "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
    assert e["occurred_at"] == "2022-10-28T07:26:19Z" and e["reason"].startswith("ValidationFailed")


def _grype() -> None:
    flags = _flags("grype/TestJsonImgsPresenter.json")
    assert (flags["CVE-1999-0001"]["severity"], flags["CVE-1999-0002"]["severity"]) == (
        "low",
        "critical",
    )
    for e in flags.values():
        assert e["service"] == "user-input"
        assert (
            e["release"]
            == "sha256:ca738abb87a8d58f112d3400ebb079b61ceae7dc290beb34bda735be4b1941d5"
        )
        assert (
            e["occurred_at"] == "2026-03-04T04:53:20Z"
        )  # descriptor.timestamp is empty: receive time
    assert "1.2.1" in flags["CVE-1999-0001"]["title"]
    assert list(_flags("grype/TestJsonImgsPresenter.json", min_severity="critical")) == [
        "CVE-1999-0002"
    ]


def _opsgenie() -> None:
    c = _one("opsgenie/create.zulip-fixture.json")
    assert (c["status"], c["incident_id"], c["service"], c["severity"]) == (
        "opened",
        "ec03dad6-62c8-4c94-b38b-d88f398e900f",
        "Server",
        "sev3",
    )
    assert (c["occurred_at"], c["title"]) == ("2017-08-14T11:25:56.288Z", "another alert")
    with pytest.raises(AdapterError) as info:  # no tag, no details, empty entity
        _convert("opsgenie/close.zulip-fixture.json")
    assert info.value.path == "$.alert.tags"
    z = _one("opsgenie/close.zulip-fixture.json", service="test-service")
    assert (z["status"], z["incident_id"]) == ("resolved", "052652ac-5d1c-464a-812a-7dd18bbfba8c")
    assert z["occurred_at"] == "2015-01-05T10:06:14.669Z"  # updatedAt is in nanoseconds


def _pagerduty() -> None:
    t = _one("pagerduty/incident.triggered.zulip-fixture-2021.json")
    a = _one("pagerduty/incident.acknowledged.zulip-fixture-2021.json")
    r = _one("pagerduty/incident.resolved.zulip-fixture-2021.json")
    assert [e["status"] for e in (t, a, r)] == ["opened", "acknowledged", "resolved"]
    assert [e["incident_id"] for e in (t, a, r)] == ["PFQZPSY", "PQ1K5C8", "PCPZE64"]
    assert {e["service"] for e in (t, a, r)} == {"pig208"}
    assert {e["severity"] for e in (t, a, r)} == {"sev2"}  # urgency high, no priority
    assert t["event_id"] == "pagerduty:01BZYIL05THJDFF2Y08X9SVMTU"
    assert t["occurred_at"] == "2021-06-04T13:35:29.781Z" and t["title"] == "Test Incident 3"
    c = _convert("pagerduty/incident.priority_updated.developer-docs.json")
    assert c.events == () and "priority_updated" in c.skipped[0]


def _trivy() -> None:
    c = _convert("trivy/alpine-39.json")
    flags = {e["flag_id"]: e for e in c.events}
    assert sorted(flags) == ["CVE-2019-14697", "CVE-2019-1549", "CVE-2019-1551"]
    assert flags["CVE-2019-14697"]["severity"] == "critical"
    assert flags["CVE-2019-1549"]["severity"] == "medium"
    for e in flags.values():
        assert (e["service"], e["release"], e["occurred_at"]) == (
            "trivy-test-images",
            "alpine-39",
            "2021-08-25T12:20:30Z",
        )
        assert e["fixed_in"] is None
    title = flags["CVE-2019-1549"]["title"]
    assert "libcrypto1.1" in title and "libssl1.1" in title and "1.1.1d-r0" in title


DECLARED: dict[str, Callable[[], None]] = {
    "github/deployment_status.payload.json": _github_deployment_status,
    "github/deployment.payload.json": _github_deployment,
    "argocd/catalog.template.app-deployed.yaml": lambda: _argocd_not_a_delivery(
        "argocd/catalog.template.app-deployed.yaml"
    ),
    "argocd/examples.on-deployed-webhook.configmap.yaml": lambda: _argocd_configmap(
        "argocd/examples.on-deployed-webhook.configmap.yaml"
    ),
    "argocd/webhook.github-commit-status.configmap.yaml": lambda: _argocd_configmap(
        "argocd/webhook.github-commit-status.configmap.yaml"
    ),
    "argocd/examples.on-deployed-webhook.syncResult.FRAGMENT.jsonc": _argocd_fragment,
    "cdevents/service_deployed.spec-v0.4.1.json": _cdevents,
    "cdevents/service_rolledback.spec-v0.4.1.json": _cdevents,
    "cdevents/incident_detected.spec-v0.4.1.json": _cdevents,
    "cdevents/incident_resolved.spec-v0.4.1.json": _cdevents,
    "dependency-track/NEW_VULNERABILITY.docs-4.14.3.json": _dependency_track,
    "dependency-track/NEW_VULNERABLE_DEPENDENCY.docs-4.14.3.json": _dependency_track,
    "flux/event.kustomization-error.events-md-v1beta3.json": _flux,
    "grype/TestJsonImgsPresenter.json": _grype,
    "opsgenie/create.zulip-fixture.json": _opsgenie,
    "opsgenie/close.zulip-fixture.json": _opsgenie,
    "pagerduty/incident.triggered.zulip-fixture-2021.json": _pagerduty,
    "pagerduty/incident.acknowledged.zulip-fixture-2021.json": _pagerduty,
    "pagerduty/incident.resolved.zulip-fixture-2021.json": _pagerduty,
    "pagerduty/incident.priority_updated.developer-docs.json": _pagerduty,
    "trivy/alpine-39.json": _trivy,
}


def _shared_files() -> list[str]:
    if not SHARED.is_dir():
        return []
    return sorted(
        str(p.relative_to(SHARED))
        for p in SHARED.rglob("*")
        if p.is_file() and p.parent != SHARED  # SOURCES.md at the top is not a payload
    )


@pytest.mark.parametrize("rel", _shared_files())
def test_shared_payload(rel: str) -> None:
    check = DECLARED.get(rel)
    if check is not None:
        check()
        return
    # a file added after these tests were written: valid events or a path-naming error
    assert rel.split("/", 1)[0] in FOLDER_SOURCE, f"no adapter for folder of {rel}"
    try:
        _convert(rel)
    except AdapterError as exc:
        assert exc.path.startswith(("$", "(")), exc


def test_every_declared_file_is_there() -> None:
    missing = sorted(set(DECLARED) - set(_shared_files()))
    assert not missing, f"declared but absent from {SHARED}: {missing}"


# --- the real payloads through one catalog ---------------------------------------------

SHARED_CATALOG = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: one-service
  annotations:
    github.com/project-slug: Codertocat/Hello-World
    pagerduty.com/service-id: PA2P440
    opsgenie.com/component-selector: entity:Server
    dependencytrack/project-id: 6fb1820f-5280-4577-ac51-40124aabe307
    relsec.io/images: ghcr.io/aquasecurity/trivy-test-images
    relsec.io/flux: Kustomization/apps/webapp
    relsec.io/names: mySubject123, myApp, user-input
    relsec.io/environments: production=prod, test123=prod, prod1=prod, apps=prod
spec: {type: service, owner: team, lifecycle: production}
"""
#: Shared payloads that give events without per-tool flags (the rest give none or need one).
RESOLVED = [
    rel
    for rel in DECLARED
    if rel.split("/", 1)[0] not in ("argocd",)
    and rel
    not in (
        "github/deployment.payload.json",
        "pagerduty/incident.priority_updated.developer-docs.json",
        "opsgenie/close.zulip-fixture.json",
    )
]


@pytest.mark.parametrize("rel", RESOLVED)
def test_the_real_payloads_resolve_through_one_catalog(rel: str, tmp_path: Path) -> None:
    """Each tool's own shape, one component whose annotations name it the tool's way."""
    from streams.catalog import load_catalog

    path = tmp_path / "catalog-info.yaml"
    path.write_text(SHARED_CATALOG, encoding="utf-8")
    catalog = load_catalog([path])
    plain = _convert(rel)
    assert plain.events and {e["service"] for e in plain.events} != {"one-service"}
    conversion = _convert(rel, catalog=catalog, require_catalog=True)
    assert conversion.unresolved == (), conversion.unresolved
    assert conversion.events and {e["service"] for e in conversion.events} == {"one-service"}
    assert {e.get("environment", "prod") for e in conversion.events} == {"prod"}
