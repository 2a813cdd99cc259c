"""The integration examples in deploy/: the Argo CD PreSync Job and the Gatekeeper
provider, template and constraint, checked for shape and run where they can be.

* The PreSync Job's shell line runs for real (``/bin/sh``, this checkout's ``relsec``)
  against a relsec api serving the seed story: it stops the sync on the seed's rollback
  (exit 2) and lets a ``warn`` through (exit 0).
* The Gatekeeper files agree with each other and with relsec's provider: the provider
  name the Rego calls, the constraint kind and parameters, the key's parameters (which
  relsec must accept), HTTPS to relsec's endpoint.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from agents.model.timefmt import parse_rfc3339_ms
from streams.api.gatekeeper import API_VERSION, check_request_of_key
from streams.api.server import Api, ApiOptions
from streams.cli import build_parser
from tests.api.browser import served
from tests.api.helpers import REPO, SEED_STORY, build_model, load_events

PRESYNC = REPO / "deploy" / "argocd" / "relsec-presync-check.yaml"
GATEKEEPER = REPO / "deploy" / "gatekeeper"
SEED_NOW = parse_rfc3339_ms("2026-03-05T00:00:00Z")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def presync_env(job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    annotations = pod["metadata"]["annotations"]
    values: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            values[var["name"]] = var["value"]
        ref = var.get("valueFrom", {}).get("fieldRef")
        if ref:
            match = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", ref["fieldPath"])
            assert match, ref
            assert match.group(1) in annotations, f"{var['name']}: no pod annotation"
            values[var["name"]] = annotations[match.group(1)]
    return container, values


def test_the_presync_job_is_an_argocd_hook_that_cannot_retry_a_verdict() -> None:
    job = load(PRESYNC)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] in (
        "BeforeHookCreation",
        "HookSucceeded",
        "HookFailed",
    )
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] <= 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    container, values = presync_env(job)
    token = next(v for v in container["env"] if v["name"] == "RELSEC_API_TOKEN")
    assert "secretKeyRef" in token["valueFrom"] and "value" not in token
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The check it runs is a valid relsec command line.
    script = container["args"][0]
    first = script.split(";")[0]
    expanded = re.sub(
        r'"\$\{?([A-Z_]+)(?::-([a-z]+))?\}?"',
        lambda m: shlex.quote(values.get(m.group(1)) or m.group(2) or ""),
        first,
    )
    argv = shlex.split(expanded)
    assert argv[:2] == ["relsec", "check"]
    args = build_parser().parse_args(argv[1:])
    assert (args.service, args.environment, args.release, args.action) == (
        "checkout-api",
        "production",
        "2.7.0",
        "rollback",
    )


def run_presync(url: str, release: str, action: str) -> subprocess.CompletedProcess[str]:
    job = load(PRESYNC)
    container, values = presync_env(job)
    env = {
        **os.environ,
        **values,
        "RELSEC_API_URL": url,
        "RELSEC_CHECK_RELEASE": release,
        "RELSEC_CHECK_ACTION": action,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("RELSEC_API_TOKEN", None)
    assert container["command"] == ["/bin/sh", "-c"]
    return subprocess.run(
        ["/bin/sh", "-c", container["args"][0]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_presync_job_stops_the_seed_rollback_and_lets_a_warning_through() -> None:
    built = build_model(load_events(SEED_STORY), SEED_NOW)
    with served(Api(built.model, ApiOptions(port=0))) as url:
        denied = run_presync(url, "2.7.0", "rollback")
        assert denied.returncode == 2, denied.stdout + denied.stderr
        assert "DENY: rollback of checkout-api production to 2.7.0" in denied.stdout
        warned = run_presync(url, "2.8.0", "deploy")
        assert warned.returncode == 0, warned.stdout + warned.stderr
        assert "WARN" in warned.stdout and "the sync goes on" in warned.stdout
        allowed = run_presync(url, "2.9.0", "deploy")
        assert allowed.returncode == 0 and "ALLOW" in allowed.stdout
    down = run_presync("http://127.0.0.1:9", "2.7.0", "rollback")
    assert down.returncode == 3  # no answer stops the sync


def test_the_gatekeeper_files_agree_with_each_other_and_with_relsec() -> None:
    provider = load(GATEKEEPER / "relsec-provider.yaml")
    template = load(GATEKEEPER / "relsec-check-template.yaml")
    constraint = load(GATEKEEPER / "relsec-check-constraint.yaml")
    assert provider["apiVersion"] == API_VERSION and provider["kind"] == "Provider"
    url = provider["spec"]["url"]
    assert url.startswith("https://"), "Gatekeeper >= 3.11 calls providers over HTTPS only"
    assert url.endswith("/v1/gatekeeper/provider")
    assert 0 < provider["spec"]["timeout"] <= 3 and "caBundle" in provider["spec"]
    assert template["apiVersion"].startswith("templates.gatekeeper.sh/")
    kind = template["spec"]["crd"]["spec"]["names"]["kind"]
    assert constraint["kind"] == kind
    assert template["metadata"]["name"] == kind.lower()
    schema = template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]["properties"]
    assert set(constraint["spec"]["parameters"]) <= set(schema)
    rego = template["spec"]["targets"][0]["rego"]
    assert f'"provider": "{provider["metadata"]["name"]}"' in rego
    assert "response.responses" in rego and "response.system_error" in rego
    encoded = re.search(r"urlquery\.encode_object\(\{(.*?)\}\)", rego, re.S)
    assert encoded
    params = re.findall(r'"([a-z_]+)":', encoded.group(1))
    assert params == ["service", "environment", "release", "aliases"]
    sample = {
        "service": "checkout-api",
        "environment": "production",
        "release": "2.7.0",
        "aliases": "ghcr.io/acme/checkout:2.7.0,ghcr.io/acme/sidecar:1.0",
    }
    request = check_request_of_key(urlencode({p: sample[p] for p in params}))
    assert (request.service, request.environment, request.release) == (
        "checkout-api",
        "production",
        "2.7.0",
    )
    assert request.aliases == ("ghcr.io/acme/checkout:2.7.0", "ghcr.io/acme/sidecar:1.0")
