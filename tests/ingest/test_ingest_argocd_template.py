"""relsec's Argo CD notification template renders exactly what the argocd adapter reads.

The shipped ConfigMap (deploy/argocd/relsec-notifications-cm.yaml) is rendered with
a small evaluator of the Go text/template subset it uses (tests/ingest/gotemplate.py)
over Argo CD Application resources written in the documented shape; the bodies
must equal the stored payloads and convert to the expected deploy events.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
import yaml

from streams.ingest import convert
from streams.ingest.deploys import ARGOCD_BODY_FIELDS, ARGOCD_SCHEMA

from .gotemplate import TemplateError, render
from .helpers import ARGOCD_CM, PAYLOADS, assert_canonical, load


def _configmap() -> dict[str, Any]:
    doc = yaml.safe_load(ARGOCD_CM.read_text())
    assert doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "argocd-notifications-cm"
    return doc["data"]


def _body_template() -> str:
    template = yaml.safe_load(_configmap()["template.relsec-deploy"])
    return template["webhook"]["relsec"]["body"]


def _render(app: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(render(_body_template(), {"app": app}))


@pytest.mark.parametrize("name", ["rollback-succeeded", "sync-failed", "running"])
def test_template_renders_the_stored_bodies(name: str) -> None:
    body = _render(load(f"argocd/applications/{name}.json"))
    assert body == load(f"argocd/body.{name}.json")
    assert set(body) == ARGOCD_BODY_FIELDS and body["schema"] == ARGOCD_SCHEMA


def test_rendered_bodies_convert() -> None:
    ok = convert("argocd", _render(load("argocd/applications/rollback-succeeded.json")))
    assert_canonical(ok)
    (event,) = ok.events
    assert (event["service"], event["environment"], event["release"], event["action"]) == (
        "checkout",
        "prod",
        "2.3.1",
        "rollback",
    )
    failed = convert("argocd", _render(load("argocd/applications/sync-failed.json")))
    assert [e["status"] for e in failed.events] == ["failed"]
    running = convert("argocd", _render(load("argocd/applications/running.json")))
    assert running.events == () and running.skipped


def test_minimal_application_renders_nulls_not_errors() -> None:
    app = {"metadata": {"name": "bare"}, "spec": {"destination": {}}, "status": {}}
    body = _render(app)
    assert body["application"] == "bare" and body["phase"] is None and body["images"] is None


def test_evaluator_refuses_what_it_does_not_know() -> None:
    with pytest.raises(TemplateError):
        render("{{ printf .x }}", {"x": 1})


def test_service_trigger_and_subscription_names_agree() -> None:
    data = _configmap()
    service = yaml.safe_load(data["service.webhook.relsec"])
    assert service["url"].endswith("/v1/ingest/argocd")
    assert {"name": "X-Relsec-Token", "value": "$relsec-ingest-token"} in service["headers"]
    (trigger,) = yaml.safe_load(data["trigger.relsec-on-sync-finished"])
    assert trigger["send"] == ["relsec-deploy"]
    assert "'Succeeded', 'Failed', 'Error'" in trigger["when"]
    header = ARGOCD_CM.read_text()
    assert "notifications.argoproj.io/subscribe.relsec-on-sync-finished.relsec" in header


def test_template_reads_only_app_fields() -> None:
    fields = set(re.findall(r"\.app(?:\.[A-Za-z]+)+", _body_template()))
    assert fields and all(f.startswith(".app.") for f in fields)
    assert ".app.metadata.name" in fields and ".app.spec.destination.namespace" in fields


def test_stored_bodies_are_the_payloads_folder_ones() -> None:
    assert sorted(p.name for p in (PAYLOADS / "argocd").glob("body.*.json")) == [
        "body.rollback-succeeded.json",
        "body.running.json",
        "body.sync-failed.json",
    ]
