"""The event model (SPEC §1): validation names the field and the reason; JSON round trips."""

from __future__ import annotations

import calendar
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.errors import RelsecError, ValidationError
from agents.model.alerts import Alert, Evidence, Recommendation, alert_id_for
from agents.model.events import (
    Deploy,
    Incident,
    SecurityFlag,
    event_to_dict,
    order_key,
    parse_event,
)
from agents.model.timefmt import format_rfc3339_ms, parse_duration_ms, parse_rfc3339_ms


def _deploy(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "deploy", "event_id": "d-1", "occurred_at": "2026-03-04T09:20:00Z",
        "source": "argocd", "service": "payments-api", "environment": "production",
        "release": "1.4.0", "previous_release": "1.5.0", "action": "rollback",
        "status": "succeeded", "team": "sre", "actor": "oncall", "reason": "restore",
        "incident_id": "INC-1",
    }
    obj.update(over)
    return obj


def _incident(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "incident", "event_id": "i-1", "occurred_at": "2026-03-04T09:00:00Z",
        "source": "pagerduty", "service": "payments-api", "environment": "production",
        "incident_id": "INC-1", "status": "opened", "severity": "sev2", "title": "errors",
        "suspected_release": None,
    }
    obj.update(over)
    return obj


def _flag(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "security_flag", "event_id": "f-1", "occurred_at": "2026-03-03T10:00:00Z",
        "source": "trivy", "service": "payments-api", "flag_id": "CVE-2026-1", "release": "1.4.0",
        "status": "raised", "severity": "critical", "vulnerabilities": ["CVE-2026-1"],
        "title": "RCE", "fixed_in": "1.5.0",
    }
    obj.update(over)
    return obj


def _without(obj: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != field}


def _error(obj: Any, expected_type: str | None = None) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_event(obj, expected_type)
    assert isinstance(info.value, RelsecError)
    return info.value


def test_valid_events_parse_to_typed_values() -> None:
    d = parse_event(_deploy())
    assert isinstance(d, Deploy)
    assert d.occurred_at_ms == parse_rfc3339_ms("2026-03-04T09:20:00Z")
    assert isinstance(parse_event(_incident()), Incident)
    f = parse_event(_flag())
    assert isinstance(f, SecurityFlag)
    assert f.vulnerabilities == ("CVE-2026-1",)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (_without(_deploy(), "event_id"), "event_id"),
        (_without(_deploy(), "occurred_at"), "occurred_at"),
        (_without(_deploy(), "service"), "service"),
        (_without(_deploy(), "environment"), "environment"),
        (_without(_deploy(), "release"), "release"),
        (_without(_deploy(), "action"), "action"),
        (_without(_incident(), "incident_id"), "incident_id"),
        (_without(_incident(), "status"), "status"),
        (_without(_incident(), "severity"), "severity"),
        (_without(_incident(), "environment"), "environment"),
        (_without(_flag(), "flag_id"), "flag_id"),
        (_without(_flag(), "release"), "release"),
        (_without(_flag(), "severity"), "severity"),
        (_without(_deploy(), "type"), "type"),
        (_deploy(release=None), "release"),
    ],
)
def test_missing_field_is_named(obj: dict[str, Any], field: str) -> None:
    err = _error(obj)
    assert (err.field, err.reason) == (field, "missing")
    assert repr(field) in str(err)


def test_optional_fields_may_be_omitted() -> None:
    d = parse_event(_without(_without(_deploy(), "status"), "previous_release"))
    assert isinstance(d, Deploy)
    assert d.status == "succeeded"
    assert d.previous_release is None
    f = parse_event(_without(_without(_flag(), "vulnerabilities"), "fixed_in"))
    assert isinstance(f, SecurityFlag)
    assert (f.vulnerabilities, f.fixed_in) == ((), None)


def test_security_flag_needs_no_environment() -> None:
    assert isinstance(parse_event(_without(_flag(), "environment")), SecurityFlag)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (_deploy(event_id=17), "event_id"),
        (_deploy(service=["a"]), "service"),
        (_deploy(release=1.4), "release"),
        (_deploy(previous_release=3), "previous_release"),
        (_deploy(action=True), "action"),
        (_deploy(occurred_at=1772616000000), "occurred_at"),
        (_incident(title=None), "title"),
        (_flag(vulnerabilities="CVE-1"), "vulnerabilities"),
        (_flag(vulnerabilities=["CVE-1", 2]), "vulnerabilities[1]"),
        (_flag(fixed_in={"v": 1}), "fixed_in"),
    ],
)
def test_wrong_type_is_named(obj: dict[str, Any], field: str) -> None:
    err = _error(obj)
    assert err.field == field
    assert err.reason in ("wrong_type", "missing")
    if obj.get(field.split("[")[0]) is not None:
        assert err.reason == "wrong_type"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (_deploy(action="redeploy"), "action"),
        (_deploy(status="pending"), "status"),
        (_deploy(team="ops"), "team"),
        (_incident(status="closed"), "status"),
        (_incident(severity="sev6"), "severity"),
        (_flag(status="open"), "status"),
        (_flag(severity="CRITICAL"), "severity"),
        (_deploy(type="deployment"), "type"),
    ],
)
def test_unknown_enum_is_named(obj: dict[str, Any], field: str) -> None:
    err = _error(obj)
    assert (err.field, err.reason) == (field, "unknown_enum")


@pytest.mark.parametrize(
    "text",
    ["2026-03-04", "yesterday", "2026-13-04T09:20:00Z", "2026-02-30T09:20:00Z",
     "2026-03-04T25:00:00Z", "2026-03-04T09:20:00+25:00", "2026-03-04T09:20Z", ""],
)
def test_bad_timestamp(text: str) -> None:
    err = _error(_deploy(occurred_at=text))
    assert (err.field, err.reason) == ("occurred_at", "bad_timestamp")


@pytest.mark.parametrize("text", ["2026-03-04T09:20:00", "2026-03-04T09:20:00.123"])
def test_timestamp_without_offset(text: str) -> None:
    err = _error(_deploy(occurred_at=text))
    assert (err.field, err.reason) == ("occurred_at", "bad_timestamp")
    assert "offset" in err.detail


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (_deploy(event_id="e" * 201), "event_id"),
        (_deploy(environment="p" * 101), "environment"),
        (_incident(environment="p" * 101), "environment"),
        (_deploy(service="s" * 201), "service"),
        (_flag(flag_id="f" * 201), "flag_id"),
    ],
)
def test_over_long_string(obj: dict[str, Any], field: str) -> None:
    err = _error(obj)
    assert (err.field, err.reason) == (field, "too_long")


def test_longest_allowed_strings_pass() -> None:
    d = parse_event(_deploy(event_id="e" * 200, environment="p" * 100, service="s" * 200))
    assert (len(d.event_id), len(d.service)) == (200, 200)


def test_empty_id_is_too_short() -> None:
    err = _error(_deploy(event_id=""))
    assert (err.field, err.reason) == ("event_id", "too_short")


def test_type_mismatch_with_the_topic() -> None:
    err = _error(_incident(), expected_type="deploy")
    assert (err.field, err.reason) == ("type", "unknown_enum")
    # without a `type` field the topic's type is used
    assert isinstance(parse_event(_without(_incident(), "type"), "incident"), Incident)
    # and the fields of the topic's type are required
    err = _error(_without(_incident(), "type"), expected_type="deploy")
    assert err.field in ("release", "action")


def test_not_an_object() -> None:
    err = _error(["deploy"])
    assert (err.field, err.reason) == ("$", "wrong_type")


def test_located_error_names_where() -> None:
    err = _error(_deploy(action="x")).located("events.jsonl:7")
    assert str(err).startswith("events.jsonl:7: field 'action'")


def test_offsets_are_normalized_to_utc() -> None:
    a = parse_event(_deploy(occurred_at="2026-03-04T11:20:00+02:00"))
    b = parse_event(_deploy(occurred_at="2026-03-04T09:20:00Z"))
    c = parse_event(_deploy(occurred_at="2026-03-04T04:20:00-05:00"))
    assert a.occurred_at_ms == b.occurred_at_ms == c.occurred_at_ms
    assert format_rfc3339_ms(a.occurred_at_ms) == "2026-03-04T09:20:00Z"


def test_fraction_is_milliseconds() -> None:
    assert parse_rfc3339_ms("2026-03-04T09:20:00.1239Z") - parse_rfc3339_ms(
        "2026-03-04T09:20:00Z") == 123
    assert format_rfc3339_ms(parse_rfc3339_ms("2026-03-04T09:20:00.5Z")) == (
        "2026-03-04T09:20:00.500Z")


def test_order_key_ranks_types() -> None:
    t = "2026-03-04T09:00:00Z"
    f = parse_event(_flag(occurred_at=t, event_id="z"))
    i = parse_event(_incident(occurred_at=t, event_id="y"))
    d = parse_event(_deploy(occurred_at=t, event_id="x"))
    assert sorted([d, i, f], key=order_key) == [f, i, d]


def test_durations() -> None:
    assert parse_duration_ms("24h") == 86_400_000
    assert parse_duration_ms("1h") == 3_600_000
    assert parse_duration_ms("90m") == 5_400_000
    assert parse_duration_ms("1500ms") == 1500
    assert parse_duration_ms("30") == 30_000
    with pytest.raises(ValueError):
        parse_duration_ms("soon")


@pytest.mark.parametrize("obj", [_deploy(), _incident(), _flag(),
                                 _deploy(previous_release=None, team=None, incident_id=None)])
def test_event_to_dict_round_trip(obj: dict[str, Any]) -> None:
    event = parse_event(obj)
    out = event_to_dict(event)
    assert out == obj
    assert parse_event(orjson.loads(orjson.dumps(out))) == event


_names = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=40
)
_instants = st.integers(min_value=0, max_value=4_102_444_800_000)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["deploy", "incident", "security_flag"]),
    event_id=_names, service=_names, env=_names, release=_names, at_ms=_instants,
    optional=st.one_of(st.none(), _names),
)
def test_round_trip_property(
    kind: str, event_id: str, service: str, env: str, release: str, at_ms: int,
    optional: str | None,
) -> None:
    base = {"deploy": _deploy, "incident": _incident, "security_flag": _flag}[kind]()
    base.update(event_id=event_id, service=service, occurred_at=format_rfc3339_ms(at_ms))
    if kind == "security_flag":
        base.update(release=release, fixed_in=optional)
    else:
        base.update(environment=env)
        if kind == "deploy":
            base.update(release=release, previous_release=optional)
        else:
            base.update(suspected_release=optional)
    event = parse_event(base)
    assert event.occurred_at_ms == at_ms
    assert parse_event(orjson.loads(orjson.dumps(event_to_dict(event)))) == event


def test_alert_round_trip_and_id() -> None:
    alert = Alert(
        alert_id=alert_id_for("rule-x", "svc", "prod", "1.0", "CVE-1"),
        rule="rule-x", status="firing", severity="high", service="svc", environment="prod",
        release="1.0", trigger="CVE-1", occurred_at_ms=parse_rfc3339_ms("2026-03-04T09:00:00Z"),
        summary="s", notify=("security", "sre"),
        evidence=(Evidence("e-1", "security_flag", 1_772_614_800_000),),
        recommendation=Recommendation(None, "coordinate"), detected_at_ms=1_772_614_800_123,
    )
    assert Alert.from_dict(orjson.loads(orjson.dumps(alert.to_dict()))) == alert
    assert len(alert.alert_id) == 32
    assert alert.alert_id == alert_id_for("rule-x", "svc", "prod", "1.0", "CVE-1")
    assert alert.alert_id != alert_id_for("rule-x", "svc", "prod", "1.0", "CVE-2")
    # the parts are separated: moving a character between fields changes the id
    assert alert_id_for("r", "ab", "c", "d", "e") != alert_id_for("r", "a", "bc", "d", "e")
    assert alert.same_content(alert.with_status("firing", 5))
    assert not alert.same_content(alert.with_status("retracted", 5))
    with pytest.raises(ValueError):
        alert.with_status("gone", 0)


@settings(max_examples=300, deadline=None)
@given(
    when=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)),
    frac=st.text(alphabet="0123456789", max_size=9),
    offset_min=st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    sep=st.sampled_from(["T", "t", " "]),
    zulu=st.sampled_from(["Z", "z", None]),
)
def test_timestamp_parse_matches_calendar_arithmetic(
    when: datetime, frac: str, offset_min: int, sep: str, zulu: str | None
) -> None:
    """Every accepted spelling gives UTC ms by plain calendar arithmetic (fraction truncated)."""
    local = when.strftime("%Y-%m-%d") + sep + when.strftime("%H:%M:%S")
    if frac:
        local += "." + frac
    if zulu is not None:
        offset_min = 0
        text = local + zulu
    else:
        sign = "-" if offset_min < 0 else "+"
        text = f"{local}{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    seconds = calendar.timegm(when.replace(microsecond=0).timetuple()) - offset_min * 60
    expected = seconds * 1000 + (int((frac + "000")[:3]) if frac else 0)
    assert parse_rfc3339_ms(text) == expected


def test_empty_vulnerability_entry_is_too_short_and_long_one_too_long() -> None:
    err = _error(_flag(vulnerabilities=["CVE-1", ""]))
    assert (err.field, err.reason) == ("vulnerabilities[1]", "too_short")
    err = _error(_flag(vulnerabilities=["C" * 201]))
    assert (err.field, err.reason) == ("vulnerabilities[0]", "too_long")


def test_type_of_wrong_json_type_is_wrong_type() -> None:
    err = _error(_deploy(type=5))
    assert (err.field, err.reason) == ("type", "wrong_type")


def test_unknown_extra_fields_are_ignored() -> None:
    event = parse_event(_deploy(pipeline={"id": 7}, labels=["x"]))
    assert event == parse_event(_deploy())
    flag_with_env = parse_event(_flag(environment="production"))
    assert flag_with_env == parse_event(_flag())
