"""OCSF Detection Finding rendition of alerts, held against OCSF 1.5.0 itself.

Two references: the JSON Schema of the Detection Finding class generated from
the OCSF server's 1.5.0 export (PyPI ``ocsf-json-schema``; every object there
has ``additionalProperties: false``, so an attribute OCSF does not define is
an error), and the py-ocsf-models classes (which must accept the finding and
keep what we send, except attributes OCSF 1.5.0 defines that the library
does not model yet).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import orjson
import py_ocsf_models  # type: ignore[import-untyped]
import pytest
from ocsf_json_schema import (  # type: ignore[import-untyped]
    OcsfJsonSchemaEmbedded,
    get_ocsf_schema,
)
from py_ocsf_models.events.findings.detection_finding import (  # type: ignore[import-untyped]
    DetectionFinding,
)

from agents.model.alerts import Alert, Evidence, Recommendation, alert_id_for
from agents.model.timefmt import parse_rfc3339_ms
from streams.ocsf import OCSF_VERSION, alert_to_ocsf


def _alert(status: str = "firing", severity: str = "critical", **changes: Any) -> Alert:
    alert = Alert(
        alert_id=alert_id_for("rollback-to-flagged-release", "payments", "prod", "v1.4.2", "d-9"),
        rule="rollback-to-flagged-release",
        status=status,
        severity=severity,
        service="payments",
        environment="prod",
        release="v1.4.2",
        trigger="d-9",
        occurred_at_ms=parse_rfc3339_ms("2026-03-04T09:20:00Z"),
        summary="payments/prod rolled back to v1.4.2, flagged by CVE-2026-1111 and "
        "CVE-2026-22222 (incident INC-42)",
        notify=("sre", "security"),
        evidence=(
            Evidence("d-9", "deploy", parse_rfc3339_ms("2026-03-04T09:20:00Z")),
            Evidence("f-1", "security_flag", parse_rfc3339_ms("2026-03-03T08:00:00Z")),
            Evidence("i-1", "incident", parse_rfc3339_ms("2026-03-04T09:00:00Z")),
        ),
        recommendation=Recommendation("v1.4.3", "Move to v1.4.3: it fixes CVE-2026-1111."),
        detected_at_ms=parse_rfc3339_ms("2026-03-04T09:20:02.5Z"),
    )
    return alert.replace(**changes)


# OCSF 1.5.0 attributes that py-ocsf-models 0.10 does not model (the JSON Schema has them;
# test_attributes_the_library_lacks_are_ocsf_1_5_0 checks that).
NOT_IN_PY_OCSF_MODELS = {"$.finding_info.related_events_count", "$.resources[0].tags"}


@cache
def ocsf_schema() -> dict[str, Any]:
    schema: dict[str, Any] = OcsfJsonSchemaEmbedded(get_ocsf_schema(OCSF_VERSION)).get_class_schema(
        "detection_finding"
    )
    return schema


def schema_errors(finding: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(ocsf_schema())
    return [
        f"$.{'.'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}"
        for e in validator.iter_errors(finding)
    ]


def _assert_subset(ours: Any, model: Any, path: str = "$") -> None:
    """Everything we emit is kept, unchanged, by the OCSF model (nothing silently dropped)."""
    if isinstance(ours, dict):
        assert isinstance(model, dict), path
        for key, value in ours.items():
            if f"{path}.{key}" in NOT_IN_PY_OCSF_MODELS:
                continue
            assert key in model, f"{path}.{key} is not an OCSF attribute of this object"
            if key == "unmapped":
                assert model[key] == value
                continue
            _assert_subset(value, model[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert isinstance(model, list) and len(model) == len(ours), path
        for i, (a, b) in enumerate(zip(ours, model, strict=True)):
            _assert_subset(a, b, f"{path}[{i}]")
    else:
        assert model == ours, f"{path}: {ours!r} became {model!r}"


def _validate(finding: dict[str, Any]) -> DetectionFinding:
    errors = schema_errors(finding)
    assert not errors, "\n".join(errors[:10])
    model = DetectionFinding.model_validate(finding)
    _assert_subset(finding, model.model_dump(mode="json", exclude_none=True))
    return model


def test_the_library_models_the_ocsf_version_we_declare() -> None:
    assert py_ocsf_models.OCSF_VERSION == OCSF_VERSION


def test_firing_alert_is_a_valid_detection_finding_create() -> None:
    alert = _alert()
    finding = alert_to_ocsf(alert.to_dict())
    model = _validate(finding)
    assert model.class_uid == 2004 and model.category_uid == 2
    assert (finding["activity_id"], finding["type_uid"]) == (1, 200401)
    assert finding["status_id"] == 1
    assert finding["finding_info"]["uid"] == alert.alert_id
    assert finding["time"] == alert.detected_at_ms
    assert finding["finding_info"]["first_seen_time"] == parse_rfc3339_ms("2026-03-03T08:00:00Z")
    assert finding["finding_info"]["last_seen_time"] == alert.occurred_at_ms
    assert [e["data"]["event_id"] for e in finding["evidences"]] == ["d-9", "f-1", "i-1"]
    resource = finding["resources"][0]
    assert (resource["name"], resource["version"]) == ("payments", "v1.4.2")
    assert "environment:prod" in resource["labels"]
    assert finding["remediation"]["desc"].startswith("Move to v1.4.3")
    assert [v["cve"]["uid"] for v in finding["vulnerabilities"]] == [
        "CVE-2026-1111",
        "CVE-2026-22222",
    ]
    assert finding["metadata"]["product"]["name"] == "relsec"
    assert finding["metadata"]["product"]["version"]
    assert finding["metadata"]["version"] == "1.5.0"
    orjson.dumps(finding)  # JSON-ready


def test_retracted_alert_is_a_valid_detection_finding_close() -> None:
    alert = _alert("retracted")
    finding = alert_to_ocsf(alert.to_dict())
    _validate(finding)
    assert (finding["activity_id"], finding["type_uid"]) == (3, 200403)
    assert (finding["status_id"], finding["status"]) == (99, "Retracted")
    firing = alert_to_ocsf(_alert().to_dict())
    assert finding["finding_info"]["uid"] == firing["finding_info"]["uid"]
    assert finding["metadata"]["uid"] != firing["metadata"]["uid"]


@pytest.mark.parametrize(
    ("severity", "severity_id"),
    [("info", 1), ("low", 2), ("medium", 3), ("high", 4), ("critical", 5)],
)
def test_severity_mapping(severity: str, severity_id: int) -> None:
    finding = alert_to_ocsf(_alert(severity=severity).to_dict())
    model = _validate(finding)
    assert int(model.severity_id) == severity_id


def test_alert_without_recommendation_or_cves() -> None:
    alert = _alert(
        recommendation=None,
        rule="rollback-performed",
        severity="info",
        summary="payments/prod rolled back to v1.4.2",
    )
    finding = alert_to_ocsf(alert.to_dict())
    _validate(finding)
    assert "remediation" not in finding and "vulnerabilities" not in finding
    assert finding["finding_info"]["title"] == "Rollback performed"


def test_a_missing_required_attribute_is_caught_by_the_validator() -> None:
    """Guard: the validation above can fail."""
    finding = alert_to_ocsf(_alert().to_dict())
    del finding["finding_info"]["uid"]
    with pytest.raises(ValueError):
        DetectionFinding.model_validate(finding)
    finding = alert_to_ocsf(_alert().to_dict())
    finding["resources"][0]["no_such_attribute"] = 1
    with pytest.raises(AssertionError):
        _validate(finding)


def test_attributes_the_library_lacks_are_ocsf_1_5_0() -> None:
    props = ocsf_schema()["$defs"]
    assert "related_events_count" in props["finding_info"]["properties"]
    assert props["resource_details"]["properties"]["tags"]["items"]["$ref"] == (
        "#/$defs/key_value_object"
    )


def test_release_aliases_and_evidence_count_are_shown_and_valid() -> None:
    alert = _alert(
        release_aliases=("ghcr.io/acme/payments:v1.4.2", "sha256:" + "ab" * 32),
        evidence_count=4_000,
    )
    finding = alert_to_ocsf(alert.to_dict())
    _validate(finding)
    resource = finding["resources"][0]
    assert resource["version"] == "v1.4.2"
    assert resource["tags"] == [
        {
            "name": "release_aliases",
            "values": ["ghcr.io/acme/payments:v1.4.2", "sha256:" + "ab" * 32],
        }
    ]
    assert resource["data"]["release_aliases"] == list(alert.release_aliases)
    assert finding["finding_info"]["related_events_count"] == 4_000
    assert len(finding["evidences"]) == 3  # the listed ones; the count tells the rest
    relsec = finding["unmapped"]["relsec"]
    assert relsec["evidence_count"] == 4_000
    assert relsec["release_aliases"] == list(alert.release_aliases)
    # from the Alert value the worker holds, too
    assert alert_to_ocsf(alert.to_dict(), alert) == finding


def test_without_aliases_no_tags_and_the_count_is_the_listed_evidence() -> None:
    finding = alert_to_ocsf(_alert().to_dict())
    _validate(finding)
    assert "tags" not in finding["resources"][0]
    assert "release_aliases" not in finding["unmapped"]["relsec"]
    assert finding["finding_info"]["related_events_count"] == 3


def test_the_json_schema_catches_unknown_attributes_and_wrong_types() -> None:
    """Guard: the schema validation above can fail."""
    finding = alert_to_ocsf(_alert().to_dict())
    finding["resources"][0]["aliases"] = ["x"]
    assert any("aliases" in e for e in schema_errors(finding))
    finding = alert_to_ocsf(_alert().to_dict())
    finding["finding_info"]["related_events_count"] = "3"
    assert schema_errors(finding)
    finding = alert_to_ocsf(_alert().to_dict())
    del finding["finding_info"]
    assert schema_errors(finding)
