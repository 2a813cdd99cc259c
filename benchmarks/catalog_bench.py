"""What the service catalog costs: loading, a lookup per delivery, the gateway's re-stat.

Writes a catalog of N components (one file each, every annotation relsec reads,
as a platform team of 200 services would have it) to a temporary folder, then
measures, best of ``--repeat`` runs:

* ``load``: read and index every file (``load_catalog``);
* ``check``: the gateway's look at the files when nothing changed (``refresh``);
* ``convert``: one PagerDuty and one Trivy delivery, without and with the catalog.

    python benchmarks/catalog_bench.py --components 200 --repeat 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from streams.catalog import CatalogSource, load_catalog
from streams.ingest import IngestOptions, convert

REPO = Path(__file__).resolve().parents[1]
PAYLOADS = REPO / "tests" / "data" / "payloads"

COMPONENT = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: svc-{i}
  annotations:
    github.com/project-slug: acme/svc-{i}
    argocd/app-name: svc-{i}-prod, svc-{i}-staging
    pagerduty.com/service-id: PSVC{i:04d}
    opsgenie.com/component-selector: 'tag:"service:svc-{i}"'
    dependencytrack/project-id: 00000000-0000-4000-8000-{i:012d}
    relsec.io/images: ghcr.io/acme/svc-{i}, ghcr.io/acme/svc-{i}-worker
    relsec.io/flux: Kustomization/svc-{i}/svc-{i}
    relsec.io/names: Service {i}
    relsec.io/environments: svc-{i}-prod=production, svc-{i}-staging=staging
spec: {{type: service, owner: team-{team}, lifecycle: production}}
"""


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--components", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.components):
            (root / f"svc-{i}.yaml").write_text(COMPONENT.format(i=i, team=i % 20))
        pd = orjson.loads((PAYLOADS / "pagerduty/incident.triggered.json").read_bytes())
        pd["event"]["data"]["service"] = {"id": "PSVC0042", "summary": "whatever"}
        trivy = orjson.loads((PAYLOADS / "trivy/checkout-2.4.0.scan1.json").read_bytes())
        trivy["Metadata"]["RepoTags"] = ["ghcr.io/acme/svc-42:2.4.0"]
        catalog = load_catalog([root])
        source = CatalogSource([root], check_interval_s=0.0)
        plain = IngestOptions(received_at_ms=0)
        resolved = IngestOptions(received_at_ms=0, catalog=catalog)
        assert convert("pagerduty", pd, resolved).events[0]["service"] == "svc-42"
        results = {
            "load": best(args.repeat, lambda: load_catalog([root])),
            "check (unchanged)": best(args.repeat, source.refresh),
            "pagerduty convert": best(args.repeat * 200, lambda: convert("pagerduty", pd, plain)),
            "pagerduty convert + catalog": best(
                args.repeat * 200, lambda: convert("pagerduty", pd, resolved)
            ),
            "trivy convert": best(args.repeat * 50, lambda: convert("trivy", trivy, plain)),
            "trivy convert + catalog": best(
                args.repeat * 50, lambda: convert("trivy", trivy, resolved)
            ),
        }
    print(f"{args.components} components, {len(catalog.index)} identifiers")
    for name, seconds in results.items():
        print(f"  {name:30s} {seconds * 1e3:9.3f} ms")


if __name__ == "__main__":
    main()
