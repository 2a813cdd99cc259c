"""The service catalog: Backstage entity files in, an index of the tools' names out (SPEC §8)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.errors import ConfigError
from streams.catalog import (
    CATALOG_ENV,
    CatalogSource,
    catalog_paths,
    check_catalog,
    load_catalog,
)
from streams.catalog.entities import (
    ARGOCD_APP,
    ARGOCD_LABEL,
    DTRACK_PROJECT,
    FLUX,
    GITHUB,
    IMAGE,
    KUBERNETES,
    NAME,
    OPSGENIE_DETAIL,
    OPSGENIE_TAG,
    PAGERDUTY,
)
from streams.catalog.errors import CatalogError
from streams.cli import main

REPO = Path(__file__).resolve().parents[2]
ACME = REPO / "tests" / "data" / "catalog" / "acme.yaml"


def component(name: str, annotations: dict[str, str] | None = None, api: str = "v1alpha1") -> str:
    lines = [f"apiVersion: backstage.io/{api}", "kind: Component", "metadata:", f"  name: {name}"]
    if annotations:
        lines.append("  annotations:")
        lines.extend(f"    {k}: {orjson.dumps(v).decode()}" for k, v in annotations.items())
    lines += ["spec:", "  type: service", "  owner: team-a", "  lifecycle: production"]
    return "\n".join(lines) + "\n"


def write(path: Path, *docs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n".join(docs), encoding="utf-8")
    return path


def test_the_example_catalog_resolves_every_kind_of_name() -> None:
    catalog = load_catalog([ACME])
    assert [c.name for c in catalog] == ["checkout-api", "ledger"]
    looked_up = {
        (GITHUB, "ACME/Checkout"),
        (ARGOCD_APP, "checkout-prod"),
        (ARGOCD_APP, "checkout-staging"),
        (PAGERDUTY, "PX1Y2Z3"),
        (OPSGENIE_TAG, "service:checkout"),
        (OPSGENIE_DETAIL, "app:checkout"),
        (DTRACK_PROJECT, "6C2B9B5E-1F0E-4C43-9A57-1D3F0C5A7E11"),
        (KUBERNETES, "checkout"),
        (IMAGE, "GHCR.IO/acme/checkout:2.7.0"),  # a tag names a release, the repository a service
        (FLUX, "Kustomization/checkout/checkout"),
        (NAME, "Checkout   API"),  # names compare without case, runs of space as one
        (NAME, "checkout-api"),
    }
    for kind, value in looked_up:
        found = catalog.find(kind, value)
        assert found is not None and found.name == "checkout-api", (kind, value)
    ledger = catalog.find(IMAGE, "acme/ledger-migrations")  # docker.io/ written out
    assert ledger is not None and ledger.name == "ledger"
    assert catalog.find(PAGERDUTY, "PNOPE") is None
    assert catalog.find(NAME, "checkout") is None  # a kubernetes id is not a name
    checkout = catalog.component("Checkout API")
    assert checkout is not None
    assert checkout.environment_for(["nowhere", "CHECKOUT-STAGING"]) == "staging"
    assert checkout.environment_for([None, "px1y2z3"]) == "production"
    assert checkout.environment_for(["ledger"]) is None


def test_other_kinds_are_ignored_and_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: System\nmetadata: {name: shop}\n",
        component("cart"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cart}\n",
        component("legacy", api="v1alpha1").replace("backstage.io/v1alpha1", "acme.io/v1"),
        "",  # an empty trailing document
    )
    report = check_catalog([path])
    assert report.ok and [c.name for c in report.catalog or ()] == ["cart"]
    assert report.read.ignored == {"System": 1, "ConfigMap": 1, "Component (not backstage.io)": 1}
    assert any("acme.io/v1" in w for w in report.read.warnings)


def test_a_folder_is_read_recursively_yaml_and_yml_in_order(tmp_path: Path) -> None:
    write(tmp_path / "b" / "two.yml", component("two"))
    write(tmp_path / "a.yaml", component("one"))
    write(tmp_path / "notes.txt", "not a catalog")
    catalog = load_catalog([tmp_path])
    assert [c.name for c in catalog] == ["one", "two"]
    assert [Path(f).name for f in catalog.files] == ["a.yaml", "two.yml"]


def test_malformed_documents_name_file_and_document(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml",
        component("fine"),
        "- a list, not an entity\n",
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {}\n",
        component("envs", {"relsec.io/environments": "prod-eu production"}),
        component("flux", {"relsec.io/flux": "Kustomization/only-two"}),
        "kind: Component\nmetadata: {name: [\n",
    )
    with pytest.raises(CatalogError) as info:
        load_catalog([path])
    problems = info.value.problems
    assert f"{path}, document 2 (line" in problems[0] and "must be a mapping" in problems[0]
    assert f"{path}, document 3" in problems[1] and "metadata.name" in problems[1]
    assert "document 4" in problems[2] and "TARGET=ENVIRONMENT" in problems[2]
    assert "document 5" in problems[3] and "relsec.io/flux" in problems[3]
    assert "document 6" in problems[4] and "not valid YAML" in problems[4] and "line" in problems[4]
    assert len(problems) == 5
    assert isinstance(info.value, ConfigError)  # a configuration error (exit 2 on the CLI)


def test_two_components_claiming_one_identifier_is_a_conflict_naming_both(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", component("checkout", {"relsec.io/images": "ghcr.io/acme/shop"}))
    b = write(
        tmp_path / "b.yaml",
        component("cart", {"relsec.io/images": "GHCR.io/acme/shop", "relsec.io/names": "Checkout"}),
    )
    with pytest.raises(CatalogError) as info:
        load_catalog([tmp_path])
    text = "\n".join(info.value.problems)
    assert "image repository 'GHCR.io/acme/shop'" in text
    assert "name 'Checkout'" in text
    for name, path in (("checkout", a), ("cart", b)):
        assert f"component {name} ({path}, document 1" in text
    assert len(info.value.problems) == 2


def test_the_same_service_in_two_files_is_a_conflict(tmp_path: Path) -> None:
    write(tmp_path / "team-a.yaml", component("payments"))
    write(tmp_path / "team-b.yaml", component("payments"))
    report = check_catalog([tmp_path])
    assert not report.ok
    assert "team-a.yaml" in report.problems[0] and "team-b.yaml" in report.problems[0]


def test_a_plugin_annotation_relsec_cannot_use_costs_only_that_lookup(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        component(
            "cart",
            {
                "opsgenie.com/component-selector": 'tag:"service:cart" AND priority:P1',
                "github.com/project-slug": "not-a-slug",
                "argocd/app-selector": "app.kubernetes.io/name=cart",
            },
        ),
    )
    report = check_catalog([path])
    assert report.ok, report.problems
    assert len(report.read.warnings) == 2
    catalog = report.catalog
    assert catalog is not None
    assert catalog.find(OPSGENIE_TAG, "service:cart") is None  # the whole selector is unused
    found = catalog.find(ARGOCD_LABEL, "app.kubernetes.io/name=cart")
    assert found is not None and found.name == "cart"


def test_no_component_at_all_is_a_problem(tmp_path: Path) -> None:
    group = "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: g}\n"
    write(tmp_path / "c.yaml", group)
    with pytest.raises(CatalogError, match="no Component entity"):
        load_catalog([tmp_path])
    with pytest.raises(CatalogError, match="no such file or folder"):
        load_catalog([tmp_path / "absent"])


def test_catalog_paths_from_flags_else_the_environment(tmp_path: Path) -> None:
    env = {CATALOG_ENV: f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}{os.pathsep}"}
    assert catalog_paths(["x.yaml"], env) == ["x.yaml"]
    assert catalog_paths([], env) == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert catalog_paths(None, {}) == []


def test_catalog_check_prints_resolutions_and_exits_1_on_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "check", str(ACME)]) == 0
    out = capsys.readouterr().out
    assert "checkout-api    (" in out
    assert "PagerDuty service id: PX1Y2Z3" in out
    assert "image repository: ghcr.io/acme/checkout" in out
    assert "checkout-prod -> production" in out and "2 component(s) in 1 file(s)" in out
    clash = write(tmp_path / "clash.yaml", component("other", {"relsec.io/names": "Checkout API"}))
    assert main(["catalog", "check", str(ACME), str(clash)]) == 1
    out = capsys.readouterr().out
    assert "problem: conflict: name 'Checkout API'" in out and "checkout-api" in out
    assert main(["catalog", "check", "--json", str(ACME), str(clash)]) == 1
    report = orjson.loads(capsys.readouterr().out)
    assert report["ok"] is False and len(report["components"]) == 3
    assert report["components"][0]["resolves"]["PagerDuty service id"] == ["PX1Y2Z3"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_catalog_source_follows_its_files_and_keeps_the_last_good_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "c.yaml", component("cart"))
    clock = FakeClock()
    source = CatalogSource([tmp_path], check_interval_s=5.0, clock=clock)
    assert source.current().component("cart") is not None
    write(path, component("cart", {"relsec.io/names": "Shopping Cart"}))
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    clock.now += 1
    assert source.current().component("Shopping Cart") is None  # not re-read within the interval
    clock.now += 5
    assert source.current().component("Shopping Cart") is not None
    assert source.loads == 2
    # a broken change is refused, loudly, and the last good catalog stays
    write(tmp_path / "new.yaml", component("other", {"relsec.io/names": "shopping cart"}))
    clock.now += 5
    with caplog.at_level("ERROR", logger="relsec.catalog"):
        catalog = source.current()
    assert catalog.component("Shopping Cart") is not None and catalog.component("other") is None
    assert source.status()["reload_failures"] == 1 and "conflict" in source.status()["last_error"]
    assert "keeping the last good catalog" in caplog.text
    # fixed: picked up
    write(tmp_path / "new.yaml", component("other"))
    clock.now += 5
    assert source.current().component("other") is not None
    assert source.status()["last_error"] is None and source.loads == 3


def test_a_catalog_source_refuses_to_start_on_a_broken_catalog(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", "kind: Component\nmetadata: [\n")
    with pytest.raises(CatalogError):
        CatalogSource([tmp_path])


def test_a_watching_source_reloads_on_its_thread_and_current_only_reads(tmp_path: Path) -> None:
    import time

    path = write(tmp_path / "c.yaml", component("cart"))
    source = CatalogSource([tmp_path], check_interval_s=0.1)
    source.start_watching()
    try:
        write(path, component("cart", {"relsec.io/names": "Shopping Cart"}))
        os.utime(path, ns=(7, 7))
        deadline = time.monotonic() + 10
        while source.current().component("Shopping Cart") is None:
            assert time.monotonic() < deadline, source.status()
            time.sleep(0.05)
        assert source.loads == 2
    finally:
        source.close()


YAML_PIECES = [
    "apiVersion: backstage.io/v1alpha1\n", "kind: Component\n", "kind: System\n",
    "metadata:\n", "  name: svc\n", "  name: [a, b]\n", "  name: 'x\x07y'\n",
    "  annotations:\n", "    relsec.io/names: a, b\n", "    relsec.io/environments: a=b, c\n",
    "    relsec.io/images: ':::'\n", "    relsec.io/flux: a/b\n",
    "    opsgenie.com/component-selector: 'tag:(x'\n", "    github.com/project-slug: 7\n",
    "---\n", "- [\n", "{", "}\n", "!!python/object:os.system {}\n", "&a [*a]\n", "key: *missing\n",
    "\t\n", "metadata: null\n", "annotations: {relsec.io/names: [1]}\n", "[" * 40,
]  # fmt: skip


@given(st.lists(st.sampled_from(YAML_PIECES), max_size=25))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_file_gives_components_or_problems_never_an_exception(
    tmp_path: Path, pieces: list[str]
) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text("".join(pieces), encoding="utf-8")
    report = check_catalog([path])
    for problem in report.problems:
        assert str(path) in problem or problem.startswith(("conflict", "no Component"))
