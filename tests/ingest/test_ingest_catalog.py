"""Every adapter resolves service (and environment) through the catalog (SPEC §8).

One catalog in which no component is named the way any tool names it: every
resolution below comes from an annotation. Precedence: ``--service`` wins, a
``--map`` value is looked up among the catalog's names, then the adapter's
lookups, then the tool's own name (kept, and reported as unresolved).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agents.errors import ConfigError
from streams.catalog import Catalog, load_catalog
from streams.cli import main
from streams.ingest import IngestOptions, convert

from .helpers import PAYLOADS, RECEIVED_MS, assert_canonical, load

CATALOG_YAML = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: shop-checkout
  annotations:
    github.com/project-slug: acme/checkout
    argocd/app-name: checkout
    pagerduty.com/service-id: PCHKOUT
    opsgenie.com/component-selector: 'tag:"service:checkout"'
    relsec.io/images: ghcr.io/acme/checkout
    relsec.io/flux: Kustomization/prod/checkout
    relsec.io/environments: prod=live, Kustomization/prod/checkout=live-flux, PCHKOUT=live-pd
spec: {type: service, owner: shop, lifecycle: production}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: payments
  annotations:
    dependencytrack/project-id: aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee
    relsec.io/images: ghcr.io/acme/payments-api
    relsec.io/names: Checkout DT
spec: {type: service, owner: payments, lifecycle: production}
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    path = tmp_path_factory.mktemp("catalog") / "catalog-info.yaml"
    path.write_text(CATALOG_YAML, encoding="utf-8")
    return load_catalog([path])


def _run(source: str, payload: Any, catalog: Catalog | None, **options: Any) -> Any:
    options.setdefault("received_at_ms", RECEIVED_MS)
    conversion = convert(source, payload, IngestOptions(catalog=catalog, **options))
    assert_canonical(conversion)
    return conversion


CASES = [
    ("github", "github/deployment_status.success.json", "shop-checkout", "production"),
    ("argocd", "argocd/body.rollback-succeeded.json", "shop-checkout", "live"),
    ("flux", "flux/kustomization.reconciliation-succeeded.json", "shop-checkout", "live-flux"),
    ("cdevents", "cdevents/service_deployed.v0.5.json", "shop-checkout", "production"),
    ("pagerduty", "pagerduty/incident.triggered.json", "shop-checkout", "live-pd"),
    ("opsgenie", "opsgenie/create.json", "shop-checkout", "production"),
    ("trivy", "trivy/checkout-2.4.0.scan1.json", "shop-checkout", None),
    ("grype", "grype/payments-api-1.4.2.json", "payments", None),
    ("dependency-track", "dependency-track/new_vulnerable_dependency.v5.json", "payments", None),
]


@pytest.mark.parametrize(("source", "rel", "service", "environment"), CASES)
def test_each_adapter_resolves_the_tools_name(
    catalog: Catalog, source: str, rel: str, service: str, environment: str | None
) -> None:
    without = _run(source, load(rel), None)
    assert without.events and all(e["service"] != service for e in without.events)
    conversion = _run(source, load(rel), catalog)
    assert conversion.events and conversion.unresolved == ()
    for event in conversion.events:
        assert event["service"] == service
        if environment is not None:
            assert event["environment"] == environment


def test_argocd_picks_the_image_the_catalog_gives_the_service(catalog: Catalog) -> None:
    """Without a catalog the image named like the application is the release; with one, the
    image of the component's relsec.io/images, whatever the application is called."""
    body = load("argocd/body.rollback-succeeded.json")
    body["application"] = "checkout-prod-eu"  # no image is named like that
    assert _run("argocd", body, None).events[0]["release"] == "0.9.0"  # the first image: wrong
    (event,) = _run("argocd", body, catalog).events  # resolved by the image repository
    assert (event["service"], event["release"]) == ("shop-checkout", "2.3.1")
    assert "ghcr.io/acme/checkout:2.3.1" in event["release_aliases"]
    assert not any("sidecar" in a for a in event["release_aliases"])  # another release's names


def test_opsgenie_without_a_service_tag_resolves_by_the_selector(catalog: Catalog) -> None:
    payload = load("opsgenie/create.json")
    payload["alert"]["tags"] = ["sre", "service:checkout"]
    payload["alert"]["entity"] = ""
    (event,) = _run("opsgenie", payload, catalog).events
    assert event["service"] == "shop-checkout"


def test_dependency_track_by_uuid_then_by_name(catalog: Catalog) -> None:
    payload = load("dependency-track/new_vulnerable_dependency.v5.json")
    payload["notification"]["subject"]["project"]["uuid"] = "00000000-0000-4000-8000-000000000000"
    payload["notification"]["subject"]["project"]["name"] = "checkout dt"
    conversion = _run("dependency-track", payload, catalog)
    assert {e["service"] for e in conversion.events} == {"payments"}


def test_precedence_service_flag_then_mapping_then_catalog_then_tool_name(
    catalog: Catalog,
) -> None:
    payload = load("pagerduty/incident.triggered.json")
    (flag,) = _run("pagerduty", payload, catalog, service="literal").events
    assert flag["service"] == "literal"  # --service is taken as written
    mapped = _run("pagerduty", payload, catalog, mapping=(("service", "$.event.data.title"),))
    assert mapped.events[0]["service"] == "checkout: 5xx rate above 5%"
    assert mapped.unresolved[0].service == "checkout: 5xx rate above 5%"  # a mapping is looked up
    renamed = copy.deepcopy(payload)
    renamed["event"]["data"]["title"] = "Checkout DT"
    mapped = _run("pagerduty", renamed, catalog, mapping=(("service", "$.event.data.title"),))
    assert mapped.events[0]["service"] == "payments" and mapped.unresolved == ()


def test_an_unknown_name_is_kept_and_reported_or_withheld(catalog: Catalog) -> None:
    payload = load("pagerduty/incident.triggered.json")
    payload["event"]["data"]["service"] = {"id": "PUNKNOWN", "summary": "Search"}
    conversion = _run("pagerduty", payload, catalog)
    (event,) = conversion.events
    assert event["service"] == "Search" and event["environment"] == "production"
    (unresolved,) = conversion.unresolved
    assert unresolved.service == "Search"
    assert "PagerDuty service id 'PUNKNOWN'" in unresolved.detail
    strict = _run("pagerduty", payload, catalog, require_catalog=True)
    assert strict.events == () and "--require-catalog" in strict.skipped[0]
    with pytest.raises(ConfigError):
        IngestOptions(require_catalog=True)


def test_require_catalog_withholds_only_the_unknown_projects(catalog: Catalog) -> None:
    payload = load("dependency-track/new_vulnerability.v4.json")
    projects = payload["notification"]["subject"]["affectedProjects"]
    projects[0]["uuid"] = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    conversion = _run("dependency-track", payload, catalog, require_catalog=True)
    assert {e["service"] for e in conversion.events} == {"payments"}
    assert {u.service for u in conversion.unresolved} == {"checkout"}


def test_ingest_convert_counts_unresolved_names_in_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG_YAML, encoding="utf-8")
    pd = str(PAYLOADS / "pagerduty/incident.triggered.json")
    assert main(["ingest", "convert", "pagerduty", pd, "--catalog", str(path)]) == 0
    captured = capsys.readouterr()
    assert '"service":"shop-checkout"' in captured.out
    assert captured.err.splitlines()[-1].endswith("0 unresolved service name(s)")
    other = tmp_path / "other.yaml"
    other.write_text(CATALOG_YAML.split("---")[1], encoding="utf-8")
    args = ["ingest", "convert", "pagerduty", pd, "--catalog", str(other), "--require-catalog"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "1 unresolved service name(s): 'checkout'" in captured.err.splitlines()[-1]
    assert "is not in the catalog" in captured.err
    broken = tmp_path / "broken.yaml"
    broken.write_text(CATALOG_YAML + "---\n" + CATALOG_YAML, encoding="utf-8")
    assert main(["ingest", "convert", "pagerduty", pd, "--catalog", str(broken)]) == 2
    assert "conflict" in capsys.readouterr().err


def test_the_catalog_comes_from_the_environment_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG_YAML, encoding="utf-8")
    monkeypatch.setenv("RELSEC_CATALOG", str(path))
    pd = str(PAYLOADS / "pagerduty/incident.triggered.json")
    assert main(["ingest", "convert", "pagerduty", pd]) == 0
    assert '"service":"shop-checkout"' in capsys.readouterr().out
    monkeypatch.delenv("RELSEC_CATALOG")
    assert main(["ingest", "convert", "pagerduty", pd, "--require-catalog"]) == 2
    assert "--require-catalog needs a catalog" in capsys.readouterr().err


def test_ingest_publish_withholds_unknown_services_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Everything withheld: nothing to publish, so no broker is needed to see the summary."""
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG_YAML.split("---")[1], encoding="utf-8")
    pd = str(PAYLOADS / "pagerduty/incident.triggered.json")
    args = ["ingest", "publish", "pagerduty", pd, "--catalog", str(path), "--require-catalog"]
    assert main([*args, "--bootstrap-servers", "127.0.0.1:1"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "relsec ingest: no events to publish" in err
    assert err[-1] == (
        "relsec ingest: 0 event(s), 1 skipped reason(s), 1 unresolved service name(s): 'checkout'"
    )
