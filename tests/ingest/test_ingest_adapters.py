"""Each adapter over the team's payloads (tests/data/payloads): fields, skips, errors, ids."""

from __future__ import annotations

import copy

import orjson
import pytest

from agents.errors import ConfigError
from streams.ingest import ADAPTERS, IngestOptions, convert, decode_payload
from streams.ingest.common import parse_image_ref, purl_version
from streams.ingest.deploys import flux_release
from streams.ingest.errors import AdapterError

from .helpers import RECEIVED_MS, assert_canonical, load, only, run

# --- GitHub ------------------------------------------------------------------------


def test_github_success_is_a_succeeded_deploy_with_payload_names() -> None:
    e = only(run("github", "github/deployment_status.success.json"))
    assert e == {
        "type": "deploy",
        "event_id": "github:deployment_status:77001",
        "occurred_at": "2026-03-04T09:20:03Z",
        "source": "github",
        "service": "checkout",
        "environment": "production",
        "release": "2.4.0",
        "previous_release": "2.3.1",
        "action": "deploy",
        "status": "succeeded",
        "team": "dev",
        "actor": "deploy-bot[bot]",
        "reason": "Release 2.4.0",
        "incident_id": None,
        # SPEC §8: the commit and the tag ref name the same release
        "release_aliases": ["3f786850e387550fdab836ed7e6dc881de23001b", "v2.4.0"],
    }


def test_github_failure_with_rollback_task_and_string_payload() -> None:
    e = only(run("github", "github/deployment_status.rollback-failure.json"))
    assert (e["status"], e["action"], e["environment"]) == ("failed", "rollback", "staging")
    assert (e["release"], e["previous_release"]) == ("2.3.1", "2.4.0")
    assert (e["team"], e["incident_id"], e["reason"]) == (
        "sre",
        "PD-Q1W2E3",
        "error rate after 2.4.0",
    )


@pytest.mark.parametrize("state", ["error"])
def test_github_error_state_is_failed(state: str) -> None:
    payload = load("github/deployment_status.success.json")
    payload["deployment_status"]["state"] = state
    assert only(convert("github", payload))["status"] == "failed"


@pytest.mark.parametrize("state", ["pending", "queued", "in_progress", "inactive"])
def test_github_non_outcome_states_give_no_event_and_say_why(state: str) -> None:
    payload = load("github/deployment_status.success.json")
    payload["deployment_status"]["state"] = state
    c = convert("github", payload)
    assert c.events == () and len(c.skipped) == 1 and repr(state) in c.skipped[0]


def test_github_ping_and_other_events_give_no_event() -> None:
    assert run("github", "github/ping.json").skipped[0].startswith("github: ping")
    c = run("github", "github/deployment_status.success.json", event_name="push")
    assert c.events == () and "'push'" in c.skipped[0]


def test_github_release_from_sha_when_payload_names_none_and_mapping_to_ref() -> None:
    payload = load("github/deployment_status.success.json")
    payload["deployment"]["payload"] = {}
    assert only(convert("github", payload))["release"] == "3f786850e387550fdab836ed7e6dc881de23001b"
    mapped = convert("github", payload, IngestOptions(mapping=(("release", "ref"),)))
    assert only(mapped)["release"] == "v2.4.0"
    by_path = convert(
        "github", payload, IngestOptions(mapping=(("service", "$.repository.full_name"),))
    )
    assert only(by_path)["service"] == "acme/checkout"


def test_github_overrides_win_over_payload() -> None:
    e = only(
        run(
            "github",
            "github/deployment_status.success.json",
            service="shop",
            release="r9",
            environment="eu-prod",
        )
    )
    assert (e["service"], e["release"], e["environment"]) == ("shop", "r9", "eu-prod")


def test_github_missing_state_names_the_path() -> None:
    payload = load("github/deployment_status.success.json")
    del payload["deployment_status"]["state"]
    with pytest.raises(AdapterError) as info:
        convert("github", payload)
    assert info.value.path == "$.deployment_status.state"
    payload = load("github/deployment_status.success.json")
    payload["deployment_status"]["state"] = 3
    with pytest.raises(AdapterError) as info:
        convert("github", payload)
    assert info.value.path == "$.deployment_status.state" and "string" in info.value.detail


def test_github_bad_timestamp_names_the_path() -> None:
    payload = load("github/deployment_status.success.json")
    payload["deployment_status"]["updated_at"] = "2026-03-04 09:20:03"
    with pytest.raises(AdapterError) as info:
        convert("github", payload)
    assert info.value.path == "$.deployment_status.updated_at" and "offset" in info.value.detail


def test_github_over_long_environment_is_reported_at_its_path() -> None:
    payload = load("github/deployment_status.success.json")
    payload["deployment"]["environment"] = "e" * 101
    with pytest.raises(AdapterError) as info:
        convert("github", payload)
    assert info.value.path == "$.deployment.environment" and "environment" in info.value.detail


# --- Argo CD -------------------------------------------------------------------------


def test_argocd_rollback_to_an_earlier_revision_with_labels() -> None:
    e = only(run("argocd", "argocd/body.rollback-succeeded.json"))
    assert e["service"] == "checkout" and e["environment"] == "prod"
    assert e["release"] == "2.3.1"  # the image named like the application, not the sidecar
    assert (e["action"], e["status"], e["team"], e["incident_id"]) == (
        "rollback",
        "succeeded",
        "sre",
        "PD-Q1W2E3",
    )
    assert e["actor"] == "sre-oncall" and e["occurred_at"] == "2026-03-04T10:06:30Z"


def test_argocd_release_from_revision_gives_previous_release() -> None:
    e = only(
        run("argocd", "argocd/body.rollback-succeeded.json", mapping=(("release", "revision"),))
    )
    assert e["release"] == "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
    assert e["previous_release"] == "ffeeddccbbaa99887766554433221100ffeeddcc"
    e = only(
        run(
            "argocd",
            "argocd/body.rollback-succeeded.json",
            mapping=(("service", "label:relsec.io/team"),),
        )
    )
    assert e["service"] == "sre"


def test_argocd_failed_sync_with_digest_only_image() -> None:
    e = only(run("argocd", "argocd/body.sync-failed.json"))
    assert e["status"] == "failed" and e["action"] == "deploy" and e["environment"] == "staging"
    assert e["release"].startswith("sha256:5c1a4f7e")
    assert e["actor"] == "argocd (automated sync)"


def test_argocd_first_sync_to_a_new_revision_is_a_deploy() -> None:
    body = load("argocd/body.rollback-succeeded.json")
    body["history"] = body["history"][:2]
    body["revision"] = body["history"][-1]["revision"]
    assert only(convert("argocd", body))["action"] == "deploy"


def test_argocd_running_gives_no_event_and_foreign_bodies_are_refused() -> None:
    c = run("argocd", "argocd/body.running.json")
    assert c.events == () and "Running" in c.skipped[0]
    with pytest.raises(AdapterError) as info:
        convert("argocd", {"resources": [], "revision": "abc"})
    assert info.value.path == "$.schema" and "deploy/argocd" in info.value.detail


# --- Flux --------------------------------------------------------------------------


def test_flux_reconciliation_succeeded() -> None:
    e = only(run("flux", "flux/kustomization.reconciliation-succeeded.json"))
    assert (e["service"], e["environment"], e["status"], e["action"]) == (
        "checkout",
        "prod",
        "succeeded",
        "deploy",
    )
    assert e["release"] == "5f1c0a9e3b7d2c4a6e8f0b1d3c5e7a9b2d4f6a8c"
    assert e["actor"] == "kustomize-controller"


def test_flux_helm_rollback_and_progressing() -> None:
    e = only(run("flux", "flux/helmrelease.rollback-succeeded.json"))
    assert (e["release"], e["action"], e["environment"]) == ("1.4.2", "rollback", "staging")
    c = run("flux", "flux/kustomization.progressing.json")
    assert c.events == () and "Progressing" in c.skipped[0]


@pytest.mark.parametrize(
    ("revision", "release"),
    [
        ("main@sha1:731f7ead", "731f7ead"),
        (
            "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
            "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
        ),
        ("1.4.2", "1.4.2"),
        ("latest@sha256:abcd", "sha256:abcd"),
        ("feature/x", "feature/x"),
    ],
)
def test_flux_release_from_revision(revision: str, release: str) -> None:
    assert flux_release(revision) == release


def test_flux_source_events_are_not_deploys() -> None:
    payload = load("flux/kustomization.reconciliation-succeeded.json")
    payload["involvedObject"].update(kind="GitRepository", apiVersion="source.toolkit.fluxcd.io/v1")
    payload.update(severity="error", reason="GitOperationFailed")
    c = convert("flux", payload)
    assert c.events == () and "GitRepository" in c.skipped[0]


def test_flux_missing_revision_names_the_metadata_key() -> None:
    payload = load("flux/kustomization.reconciliation-succeeded.json")
    payload["metadata"] = {}
    with pytest.raises(AdapterError) as info:
        convert("flux", payload)
    assert info.value.path == "$.metadata['kustomize.toolkit.fluxcd.io/revision']"


# --- CDEvents -------------------------------------------------------------------


def test_cdevents_v05_deployed_and_wrapped_rolledback() -> None:
    e = only(run("cdevents", "cdevents/service_deployed.v0.5.json"))
    assert (e["type"], e["service"], e["environment"], e["action"]) == (
        "deploy",
        "checkout",
        "production",
        "deploy",
    )
    assert e["release"] == "sha256:7d3f0c1e2b4a59687c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2918f7e6d5c4b3a291"
    r = only(run("cdevents", "cdevents/service_rolledback.v0.5.cloudevent.json"))
    assert (r["action"], r["release"]) == ("rollback", "2.3.1")


def test_cdevents_v04_envelope_reads_the_same() -> None:
    v05 = load("cdevents/service_deployed.v0.5.json")
    v04 = copy.deepcopy(v05)
    v04["context"]["version"] = "0.4.1"
    del v04["context"]["specversion"]
    a, b = only(convert("cdevents", v05)), only(convert("cdevents", v04))
    assert {k: v for k, v in a.items() if k != "event_id"} == {
        k: v for k, v in b.items() if k != "event_id"
    }


def test_cdevents_incident_detected_and_resolved() -> None:
    e = only(run("cdevents", "cdevents/incident_detected.v0.5.json"))
    assert (e["type"], e["incident_id"], e["status"], e["severity"]) == (
        "incident",
        "INC-4711",
        "opened",
        "sev2",
    )
    assert (e["service"], e["suspected_release"]) == ("checkout", "2.4.0")
    resolved = load("cdevents/incident_detected.v0.5.json")
    resolved["context"]["type"] = "dev.cdevents.incident.resolved.0.2.0"
    r = only(convert("cdevents", resolved))
    assert r["status"] == "resolved" and r["event_id"] != e["event_id"]


def test_cdevents_unsupported_spec_and_other_types() -> None:
    payload = load("cdevents/service_deployed.v0.5.json")
    payload["context"]["specversion"] = "0.3.0"
    with pytest.raises(AdapterError) as info:
        convert("cdevents", payload)
    assert info.value.path == "$.context.specversion"
    payload = load("cdevents/service_deployed.v0.5.json")
    payload["context"]["type"] = "dev.cdevents.pipelinerun.finished.0.2.0"
    assert convert("cdevents", payload).events == ()
    wrapped = load("cdevents/service_rolledback.v0.5.cloudevent.json")
    del wrapped["data"]["subject"]["content"]["environment"]
    with pytest.raises(AdapterError) as info:
        convert("cdevents", wrapped)
    assert info.value.path == "$.data.subject.content.environment.id"


# --- PagerDuty / Opsgenie ------------------------------------------------------------


def test_pagerduty_triggered_and_resolved() -> None:
    t = only(run("pagerduty", "pagerduty/incident.triggered.json"))
    assert t == {
        "type": "incident",
        "event_id": "pagerduty:01DEN7TVKQ0RMJ1DTGCN7U4SHS",
        "occurred_at": "2026-03-04T09:45:12.211Z",
        "source": "pagerduty",
        "service": "checkout",
        "environment": "production",
        "incident_id": "Q1W2E3R4T5Y6U7",
        "status": "opened",
        "severity": "sev1",
        "title": "checkout: 5xx rate above 5%",
        "suspected_release": None,
    }
    r = only(
        run("pagerduty", "pagerduty/incident.resolved.json", environment="eu-prod", release="2.4.0")
    )
    assert (r["status"], r["severity"], r["incident_id"]) == ("resolved", "sev4", "Q1W2E3R4T5Y6U7")
    assert (r["environment"], r["suspected_release"]) == ("eu-prod", "2.4.0")


def test_pagerduty_ping_and_missing_data() -> None:
    assert run("pagerduty", "pagerduty/pagey.ping.json").events == ()
    payload = load("pagerduty/incident.triggered.json")
    del payload["event"]["data"]["id"]
    with pytest.raises(AdapterError) as info:
        convert("pagerduty", payload)
    assert info.value.path == "$.event.data.id"


def test_opsgenie_lifecycle() -> None:
    c = only(run("opsgenie", "opsgenie/create.json"))
    assert (c["status"], c["service"], c["severity"], c["suspected_release"]) == (
        "opened",
        "checkout",
        "sev2",
        "2.4.0",
    )
    assert c["occurred_at"] == "2026-03-04T09:45:00.111Z"
    a = only(run("opsgenie", "opsgenie/acknowledge.json"))
    assert a["status"] == "acknowledged" and a["occurred_at"] == "2026-03-04T09:50:00.222Z"
    z = only(run("opsgenie", "opsgenie/close.json"))
    assert (z["status"], z["service"], z["severity"]) == ("resolved", "checkout", "sev3")
    assert len({c["event_id"], a["event_id"], z["event_id"]}) == 3
    assert run("opsgenie", "opsgenie/addnote.json").events == ()


def test_opsgenie_without_a_service_asks_for_one() -> None:
    payload = load("opsgenie/close.json")
    payload["alert"]["details"] = {}
    with pytest.raises(AdapterError) as info:
        convert("opsgenie", payload)
    assert info.value.path == "$.alert.tags" and "--service" in info.value.detail
    assert (
        only(convert("opsgenie", payload, IngestOptions(service="checkout")))["service"]
        == "checkout"
    )


# --- scanners ---------------------------------------------------------------------


def _by_id(events: tuple[dict, ...]) -> dict[str, dict]:
    return {e["flag_id"]: e for e in events}


def test_trivy_one_flag_per_id_highest_severity_package_fix_in_title() -> None:
    c = run("trivy", "trivy/checkout-2.4.0.scan1.json")
    flags = _by_id(c.events)
    assert set(flags) == {"CVE-2026-1111", "CVE-2026-2222", "CVE-2026-3333", "GHSA-9wv6-86v2-598j"}
    f = flags["CVE-2026-1111"]
    assert (f["service"], f["release"], f["severity"], f["status"]) == (
        "checkout",
        "2.4.0",
        "critical",
        "raised",
    )
    assert f["fixed_in"] is None and f["vulnerabilities"] == ["CVE-2026-1111"]
    assert "libssl3" in f["title"] and "openssl" in f["title"] and "3.0.13-1~deb12u1" in f["title"]
    assert flags["GHSA-9wv6-86v2-598j"]["severity"] == "medium"
    assert "no package fix" in flags["CVE-2026-2222"]["title"]
    assert any("CVE-2026-0001 (unknown)" in s for s in c.skipped)


def test_trivy_min_severity_and_unknown() -> None:
    high = run("trivy", "trivy/checkout-2.4.0.scan1.json", min_severity="high")
    assert set(_by_id(high.events)) == {"CVE-2026-1111", "CVE-2026-2222"}
    everything = run("trivy", "trivy/checkout-2.4.0.scan1.json", min_severity="unknown")
    unknown = _by_id(everything.events)["CVE-2026-0001"]
    assert unknown["severity"] == "low" and "severity unknown" in unknown["title"]


def test_trivy_previous_report_clears_findings_that_are_gone() -> None:
    c = run(
        "trivy", "trivy/checkout-2.4.0.scan2.json", previous=load("trivy/checkout-2.4.0.scan1.json")
    )
    cleared = [e for e in c.events if e["status"] == "cleared"]
    assert [e["flag_id"] for e in cleared] == ["CVE-2026-2222"]
    assert cleared[0]["severity"] == "high" and cleared[0]["occurred_at"] == "2026-03-05T08:00:00Z"
    raised = {e["flag_id"] for e in c.events if e["status"] == "raised"}
    assert raised == {"CVE-2026-1111", "CVE-2026-3333", "GHSA-9wv6-86v2-598j"}
    # a finding that drops below the minimum is cleared too
    high = run(
        "trivy",
        "trivy/checkout-2.4.0.scan2.json",
        previous=load("trivy/checkout-2.4.0.scan1.json"),
        min_severity="high",
    )
    assert {e["flag_id"] for e in high.events if e["status"] == "cleared"} == {"CVE-2026-2222"}


def test_trivy_previous_report_of_another_release_clears_nothing() -> None:
    previous = load("trivy/checkout-2.4.0.scan1.json")
    previous["Metadata"]["RepoTags"] = ["ghcr.io/acme/checkout:2.3.1"]
    c = run("trivy", "trivy/checkout-2.4.0.scan2.json", previous=previous)
    assert all(e["status"] == "raised" for e in c.events)
    assert any("checkout@2.3.1" in s for s in c.skipped)


def test_trivy_filesystem_scan_needs_names() -> None:
    with pytest.raises(AdapterError) as info:
        run("trivy", "trivy/repo-fs.json")
    assert info.value.path == "$.Metadata.RepoTags"
    e = only(run("trivy", "trivy/repo-fs.json", service="billing", release="git-4f2a"))
    assert (e["service"], e["release"], e["flag_id"]) == (
        "billing",
        "git-4f2a",
        "GHSA-4v7x-pqxf-cx7m",
    )


def test_trivy_refuses_old_schema() -> None:
    payload = load("trivy/checkout-2.4.0.scan1.json")
    payload["SchemaVersion"] = 1
    with pytest.raises(AdapterError) as info:
        convert("trivy", payload)
    assert info.value.path == "$.SchemaVersion"
    payload = load("trivy/checkout-2.4.0.scan1.json")
    del payload["Results"][0]["Vulnerabilities"][2]["VulnerabilityID"]
    with pytest.raises(AdapterError) as info:
        convert("trivy", payload)
    assert info.value.path == "$.Results[0].Vulnerabilities[2].VulnerabilityID"


def test_grype_title_case_aliases_and_negligible() -> None:
    c = run("grype", "grype/payments-api-1.4.2.json")
    flags = _by_id(c.events)
    assert set(flags) == {"CVE-2026-1111", "CVE-2026-6666", "GHSA-3xgq-45jj-v275"}
    assert flags["GHSA-3xgq-45jj-v275"]["severity"] == "high"
    assert flags["GHSA-3xgq-45jj-v275"]["vulnerabilities"] == [
        "GHSA-3xgq-45jj-v275",
        "CVE-2024-21538",
    ]
    assert flags["CVE-2026-1111"]["severity"] == "critical"
    assert all((e["service"], e["release"]) == ("payments-api", "1.4.2") for e in c.events)
    assert c.events[0]["occurred_at"] == "2026-03-04T07:15:30.123Z"
    assert any(
        "CVE-2026-4444 (negligible)" in s and "CVE-2026-5555 (unknown)" in s for s in c.skipped
    )


def test_grype_digest_release_and_receive_time() -> None:
    payload = load("grype/payments-api-1.4.2.json")
    payload["source"]["target"]["tags"] = []
    payload["source"]["target"]["userInput"] = "ghcr.io/acme/payments-api"
    payload["descriptor"]["timestamp"] = ""
    c = convert("grype", payload, IngestOptions(received_at_ms=RECEIVED_MS))
    assert_canonical(c)
    assert (
        c.events[0]["release"]
        == "sha256:1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c"
    )
    assert c.events[0]["occurred_at"] == "2026-03-04T04:53:20Z"  # RECEIVED_MS
    with pytest.raises(AdapterError) as info:
        convert("grype", payload)  # no receive time given
    assert info.value.path == "$.descriptor.timestamp"


def test_grype_previous_clears() -> None:
    old = load("grype/payments-api-1.4.2.json")
    new = copy.deepcopy(old)
    new["matches"] = [m for m in new["matches"] if m["vulnerability"]["id"] != "CVE-2026-6666"]
    new["descriptor"]["timestamp"] = "2026-03-05T08:00:00Z"
    c = convert("grype", new, IngestOptions(previous=old))
    assert [e["flag_id"] for e in c.events if e["status"] == "cleared"] == ["CVE-2026-6666"]


def test_dependency_track_v4_new_vulnerability_flags_each_affected_project() -> None:
    c = run("dependency-track", "dependency-track/new_vulnerability.v4.json")
    assert sorted((e["release"], e["flag_id"]) for e in c.events) == [
        ("2.3.1", "CVE-2026-7777"),
        ("2.4.0", "CVE-2026-7777"),
    ]
    e = c.events[0]
    assert e["severity"] == "critical" and e["service"] == "checkout"
    assert e["vulnerabilities"] == ["CVE-2026-7777", "GHSA-57j2-w4cx-62h2"]
    assert "jackson-databind 2.13.0" in e["title"]
    assert e["occurred_at"] == "2026-03-04T08:30:15.482Z"  # offset-less v4 time read as UTC


def test_dependency_track_v5_new_vulnerable_dependency() -> None:
    c = run("dependency-track", "dependency-track/new_vulnerable_dependency.v5.json")
    e = only(c)
    assert (e["service"], e["release"], e["flag_id"], e["severity"]) == (
        "payments-api",
        "1.4.2",
        "GHSA-3xgq-45jj-v275",
        "high",
    )
    assert e["vulnerabilities"] == ["GHSA-3xgq-45jj-v275", "CVE-2024-21538"]
    assert any("INT-2026-0042 (unknown)" in s for s in c.skipped)
    assert run("dependency-track", "dependency-track/bom_consumed.v4.json").events == ()


def test_dependency_track_v5_new_vulnerability_uses_subject_project() -> None:
    payload = load("dependency-track/new_vulnerability.v4.json")
    n = payload["notification"]
    n["group"], n["level"], n["scope"] = (
        "GROUP_NEW_VULNERABILITY",
        "LEVEL_INFORMATIONAL",
        "SCOPE_PORTFOLIO",
    )
    n["timestamp"] = "2026-03-04T08:30:15.482Z"
    n["subject"]["project"] = n["subject"].pop("affectedProjects")[0]
    n["subject"]["vulnerability"]["aliases"] = [
        {"vulnId": "GHSA-57j2-w4cx-62h2", "source": "GITHUB"}
    ]
    e = only(convert("dependency-track", payload))
    assert (e["release"], e["vulnerabilities"]) == (
        "2.4.0",
        ["CVE-2026-7777", "GHSA-57j2-w4cx-62h2"],
    )


def test_dependency_track_project_without_version_names_the_path() -> None:
    payload = load("dependency-track/new_vulnerable_dependency.v5.json")
    del payload["notification"]["subject"]["project"]["version"]
    with pytest.raises(AdapterError) as info:
        convert("dependency-track", payload)
    assert info.value.path == "$.notification.subject.project.version"


# --- determinism, mapping errors, helpers --------------------------------------------

ALL_PAYLOADS = [
    ("github", "github/deployment_status.success.json"),
    ("argocd", "argocd/body.rollback-succeeded.json"),
    ("flux", "flux/kustomization.reconciliation-succeeded.json"),
    ("cdevents", "cdevents/service_deployed.v0.5.json"),
    ("pagerduty", "pagerduty/incident.triggered.json"),
    ("opsgenie", "opsgenie/create.json"),
    ("trivy", "trivy/checkout-2.4.0.scan1.json"),
    ("grype", "grype/payments-api-1.4.2.json"),
    ("dependency-track", "dependency-track/new_vulnerability.v4.json"),
]


@pytest.mark.parametrize(("source", "rel"), ALL_PAYLOADS)
def test_redelivery_gives_the_same_event_ids(source: str, rel: str) -> None:
    first = run(source, rel)
    again = run(source, rel, received_at_ms=RECEIVED_MS + 60_000)
    assert first.events and [e["event_id"] for e in first.events] == [
        e["event_id"] for e in again.events
    ]


def test_every_source_has_an_adapter_with_a_docstring_naming_its_format() -> None:
    for source, adapter in ADAPTERS.items():
        assert adapter.__doc__ and len(adapter.__doc__) > 200, source
    assert set(ADAPTERS) == {s for s, _ in ALL_PAYLOADS}


def test_bad_mappings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        convert(
            "github",
            load("github/deployment_status.success.json"),
            IngestOptions(mapping=(("service", "nope"),)),
        )
    with pytest.raises(ConfigError):
        IngestOptions(min_severity="severe")


def test_not_json_is_an_adapter_error_at_the_root() -> None:
    with pytest.raises(AdapterError) as info:
        decode_payload("trivy", b'{"SchemaVersion": 2,')
    assert info.value.path == "$" and "line 1" in info.value.detail
    with pytest.raises(AdapterError) as info:
        convert("pagerduty", orjson.loads(b"[1, 2]"))
    assert info.value.path == "$"


@pytest.mark.parametrize(
    ("text", "repo", "tag", "digest"),
    [
        ("ghcr.io/acme/checkout:2.4.0", "ghcr.io/acme/checkout", "2.4.0", None),
        ("registry:5000/team/app", "registry:5000/team/app", None, None),
        # SPEC §8: Docker Hub's implicit registry and library/ are written out
        ("nginx:1.27.1", "docker.io/library/nginx", "1.27.1", None),
        ("app@sha256:" + "a" * 64, "docker.io/library/app", None, "sha256:" + "a" * 64),
    ],
)
def test_image_refs(text: str, repo: str, tag: str | None, digest: str | None) -> None:
    ref = parse_image_ref(text)
    assert ref is not None and (ref.repository, ref.tag, ref.digest) == (repo, tag, digest)


def test_purl_version_decodes() -> None:
    assert purl_version("pkg:oci/myapp@sha256%3A0b31?repository_url=x") == "sha256:0b31"
    assert purl_version("pkg:oci/myapp") is None


@pytest.mark.parametrize(("source", "rel"), ALL_PAYLOADS)
def test_named_values_in_docstrings_exist(source: str, rel: str) -> None:
    """Every ``--map`` name an adapter's docstring lists is one the adapter knows."""
    import re

    doc = ADAPTERS[source].__doc__ or ""
    listed = doc.split("Named values", 1)[1] if "Named values" in doc else ""
    names = [n for n in re.findall(r"``([a-z_:]+)``", listed) if not n.endswith(":")]
    assert names, f"{source}: no named values documented"
    field = "suspected_release" if source in ("pagerduty", "opsgenie") else "service"
    for name in names:
        try:
            convert(
                source,
                load(rel),
                IngestOptions(mapping=((field, name),), received_at_ms=RECEIVED_MS),
            )
        except AdapterError:
            pass  # known name, no value in this payload
        except ConfigError as exc:  # an unknown name
            raise AssertionError(f"{source}: documented name {name!r} is unknown: {exc}") from None
    with pytest.raises(ConfigError):
        convert(
            source,
            load(rel),
            IngestOptions(mapping=((field, "no_such_name"),), received_at_ms=RECEIVED_MS),
        )
