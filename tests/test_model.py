"""The event model (SPEC §1): validation names the field and the reason; JSON round trips."""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.errors import RelsecError, ValidationError
from agents.model.alerts import Alert, Evidence, Recommendation, alert_id_for
from agents.model.events import (
    NAME_FORBIDDEN_RANGES,
    TEXT_FORBIDDEN_RANGES,
    Deploy,
    Incident,
    SecurityFlag,
    event_to_dict,
    order_key,
    parse_event,
)
from agents.model.messages import REASONS, excerpt
from agents.model.timefmt import (
    MAX_DURATION_MS,
    MAX_INSTANT_MS,
    MAX_INSTANT_TEXT,
    MIN_INSTANT_MS,
    MIN_INSTANT_TEXT,
    TimestampError,
    format_rfc3339_ms,
    instant_from_epoch_ms,
    parse_duration_ms,
    parse_rfc3339_ms,
)


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


# --- timestamps: only RFC 3339, only instants relsec can write back -----------------

MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def test_instant_range_constants() -> None:
    assert (MIN_INSTANT_MS, MAX_INSTANT_MS) == (MIN_MS, MAX_MS)
    assert parse_rfc3339_ms(MIN_INSTANT_TEXT) == MIN_MS
    assert parse_rfc3339_ms(MAX_INSTANT_TEXT) == MAX_MS
    assert format_rfc3339_ms(MIN_MS) == "0001-01-01T00:00:00Z"
    assert format_rfc3339_ms(MAX_MS) == "9999-12-31T23:59:59.999Z"


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",  # 0000-12-31T23:00Z: year 0 in UTC
        "0001-01-01T00:59:59.999+01:00",
        "9999-12-31T23:59:59-01:00",  # 10000-01-01T00:59:59Z
        "9999-12-31T23:00:00-01:00",
        "0001-01-01T00:00:00+23:59",
    ],
)
def test_timestamps_outside_the_formattable_range_are_refused(text: str) -> None:
    with pytest.raises(TimestampError, match="outside the instants relsec can represent"):
        parse_rfc3339_ms(text)
    err = _error(_deploy(occurred_at=text))
    assert (err.field, err.reason) == ("occurred_at", "bad_timestamp")
    assert "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z" in err.detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0001-01-01T00:00:00Z", MIN_MS),
        ("0001-01-01T01:00:00+01:00", MIN_MS),
        ("0000-12-31T23:00:00-01:00", None),  # year 0 is not a date, whatever the offset
        ("9999-12-31T23:59:59.999Z", MAX_MS),
        ("9999-12-31T22:59:59.999-01:00", MAX_MS),
        ("9999-12-31T23:59:60Z", MAX_MS),  # the leap second reads as :59.999
    ],
)
def test_range_edges(text: str, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(TimestampError, match="year 0"):
            parse_rfc3339_ms(text)
        return
    assert parse_rfc3339_ms(text) == expected
    assert parse_rfc3339_ms(format_rfc3339_ms(expected)) == expected


def test_format_refuses_what_no_parser_produces() -> None:
    with pytest.raises(ValueError, match="outside"):
        format_rfc3339_ms(MIN_MS - 1)
    with pytest.raises(ValueError, match="outside"):
        format_rfc3339_ms(MAX_MS + 1)
    with pytest.raises(ValueError, match="an integer of 16610 bits") as info:
        format_rfc3339_ms(10**5000)  # str() of it would itself raise
    assert len(str(info.value)) < 200


@settings(max_examples=500, deadline=None)
@given(ms=st.integers(MIN_MS, MAX_MS))
def test_every_instant_in_range_formats_and_parses_back(ms: int) -> None:
    assert parse_rfc3339_ms(format_rfc3339_ms(ms)) == ms


def _formatted_by_datetime(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    text = f"{dt.year:04d}" + dt.strftime("-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


@settings(max_examples=2000, deadline=None)
@given(
    ms=st.integers(MIN_MS, MAX_MS)
    | st.sampled_from([MIN_MS, MAX_MS, 0, -1, 951_782_400_000, 951_868_799_999])
    | st.integers(-1000, 1000).map(lambda d: 4_107_542_400_000 + d * 86_400_000)
)
def test_the_arithmetic_formatter_agrees_with_datetime(ms: int) -> None:
    """format_rfc3339_ms computes the calendar by hand (speed): the same text as
    datetime's, leap days (2000-02-29, 2100 not a leap year) and both ends included."""
    assert format_rfc3339_ms(ms) == _formatted_by_datetime(ms)


def _parsed(parse: Callable[[str], int], text: str) -> int | str:
    try:
        return parse(text)
    except TimestampError as exc:
        return f"error: {exc}"


@settings(max_examples=3000, deadline=None)
@given(
    ms=st.integers(MIN_MS, MAX_MS),
    millis=st.booleans(),
    edits=st.lists(
        st.tuples(
            st.integers(0, 23),
            st.sampled_from([*"0123456789-:TtZz .+", "\u0661", "\uff11", "60", "29", "31"]),
        ),
        max_size=3,
    ),
)
def test_the_canonical_parser_agrees_with_the_general_one(
    ms: int, millis: bool, edits: list[tuple[int, str]]
) -> None:
    """parse_rfc3339_ms reads the canonical shape by position (speed); on that shape and
    on every edit of it (other digits, separators, Unicode digits, 60 seconds, February
    30, year 0) it answers as the general parser does, value or error word for word."""
    from agents.model import timefmt

    text = format_rfc3339_ms(ms - ms % 1000 + (ms % 1000 or 1) if millis else ms - ms % 1000)
    for at, piece in edits:
        text = text[:at] + piece + text[at + len(piece) :]
    assert _parsed(parse_rfc3339_ms, text) == _parsed(timefmt._parse_any, text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-04T09:20:00Z\n",  # `$` matched before a final newline
        "2026-03-04T09:20:00Z\r",
        " 2026-03-04T09:20:00Z",
        "2026-03-04T09:20:00Z ",
        "\u0662\u0660\u0662\u0666-03-04T09:20:00Z",  # Arabic-Indic digits
        "2026-03-04T\u0660\u0669:20:00Z",
        "2026-03-04T09:20:00.\u0661Z",
        "2026-03-04T09:20:00+\u0660\u0665:00",
        "\uff12\uff10\uff12\uff16-03-04T09:20:00Z",  # fullwidth digits
        "2026-03-04T0\u00b2:20:00Z",  # superscript two
        "2026-03-04T09:20:00+05:60",  # read as +06:00 by datetime.fromisoformat
        "2026-03-04T09:20:00-00:60",
        "2026-03-04T09:20:00+24:00",
        "2026-03-04T09:20:00+5:00",
        "2026-03-04T09:20:00+0500",
        "2026-03-04T09:20:00.1234567890Z",  # more than 9 fraction digits
        "2026-03-04T09:20:00,5Z",
        "2026-03-04T09:20:00.Z",
        "2026-03-04T09:20Z",
        "2026-3-04T09:20:00Z",
        "2026-03-04T09:61:00Z",
        "2026-03-04T09:20:61Z",
        "2026-03-04T24:00:00Z",
        "2026-00-04T09:20:00Z",
        "2026-03-00T09:20:00Z",
        "2025-02-29T09:20:00Z",
        "+2026-03-04T09:20:00Z",
        "20260304T092000Z",
        "2026-03-04_09:20:00Z",
    ],
)
def test_text_that_is_not_rfc3339_is_refused(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_rfc3339_ms(text)
    err = _error(_deploy(occurred_at=text))
    assert (err.field, err.reason) == ("occurred_at", "bad_timestamp")


def test_timestamp_messages_say_what_is_wrong() -> None:
    def detail(text: str) -> str:
        return _error(_deploy(occurred_at=text)).detail

    assert "non-ASCII character U+0662 at index 0" in detail("\u0662026-03-04T09:20:00Z")
    assert "unexpected characters after index 19" in detail("2026-03-04T09:20:00Z\n")
    assert "invalid offset" in detail("2026-03-04T09:20:00+05:60")
    assert "has no offset" in detail("2026-03-04T09:20:00.5")
    assert "day is out of range for month" in detail("2026-02-30T09:20:00Z")
    assert "hour must be in 0..23" in detail("2026-03-04T24:00:00Z")


def test_leap_seconds_and_fractions_as_documented() -> None:
    minute = parse_rfc3339_ms("2016-12-31T23:59:00Z")
    assert parse_rfc3339_ms("2016-12-31T23:59:60Z") == minute + 59_999
    assert parse_rfc3339_ms("2016-12-31T23:59:60.250Z") == minute + 59_999
    assert parse_rfc3339_ms("2016-12-31T15:59:60-08:00") == minute + 59_999
    assert parse_rfc3339_ms("2026-03-04T09:20:00.123456789Z") == parse_rfc3339_ms(
        "2026-03-04T09:20:00.123Z")
    assert parse_rfc3339_ms("1969-12-31T23:59:59.9999Z") == -1  # truncated toward the past


# The RFC 3339 §5.6 grammar, written out independently of the parser: ASCII digits,
# month 01-12, day 01-31 (checked against the month below), hour 00-23, minute 00-59,
# second 00-60, offset hours 00-23 and minutes 00-59; "T" may be "t" or a space and
# "Z" may be "z" (§5.6 NOTE). relsec takes at most 9 fraction digits (a subset).
_GRAMMAR = re.compile(
    r"\A([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]"
    r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])\Z"
)
_HOSTILE_CHARS = "0123456789:-+.TtZz \n\r\t,_\u0660\u0669\u06f5\uff10\u00b2\u0967\x00\u200b"


@st.composite
def _timestamp_like(draw: st.DrawFn) -> str:
    when = draw(st.integers(MIN_MS - 2 * 86_400_000, MAX_MS + 2 * 86_400_000))
    offset = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    clamped = min(max(when + offset * 60_000, MIN_MS), MAX_MS)
    local = format_rfc3339_ms(clamped)[:19]
    frac = draw(st.text(alphabet="0123456789", max_size=11))
    sign = "-" if offset < 0 else "+"
    zone = draw(st.sampled_from(
        ["Z", "z", f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}", "+05:60", ""]))
    sep = draw(st.sampled_from(["T", "t", " "]))
    text = local[:10] + sep + local[11:] + ("." + frac if frac else "") + zone
    for _ in range(draw(st.integers(0, 3))):  # a few edits: insert, replace or delete
        i = draw(st.integers(0, len(text)))
        c = draw(st.sampled_from(_HOSTILE_CHARS))
        op = draw(st.sampled_from(["insert", "replace", "delete"]))
        if op == "insert":
            text = text[:i] + c + text[i:]
        elif op == "replace":
            text = text[:i] + c + text[i + 1:]
        else:
            text = text[:i] + text[i + 1:]
    return text


@settings(max_examples=1500, deadline=None)
@given(text=_timestamp_like() | st.text(max_size=40))
def test_whatever_the_parser_accepts_is_rfc3339_and_round_trips(text: str) -> None:
    try:
        ms = parse_rfc3339_ms(text)
    except TimestampError as exc:
        assert len(str(exc)) < 400  # a bounded message, whatever the text
        return
    m = _GRAMMAR.match(text)
    assert m is not None, f"accepted {text!r}, which is not RFC 3339"
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    assert day <= calendar.monthrange(year, month)[1]
    assert MIN_MS <= ms <= MAX_MS
    assert parse_rfc3339_ms(format_rfc3339_ms(ms)) == ms
    # the fast path (T/Z) and the slow path (t/z) agree
    assert parse_rfc3339_ms(text.replace("T", "t").replace("Z", "z")) == ms


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1_772_616_000_000, 1_772_616_000_000), (1.5, 1), (-1.5, -2), (MIN_MS, MIN_MS),
     (MAX_MS, MAX_MS), (float(MAX_MS) + 0.5, MAX_MS), (0, 0)],
)
def test_epoch_ms_helper_accepts_instants(value: float, expected: int) -> None:
    assert instant_from_epoch_ms(value) == expected
    format_rfc3339_ms(instant_from_epoch_ms(value))


@pytest.mark.parametrize(
    "value",
    [1.5e308, float("inf"), float("-inf"), float("nan"), MAX_MS + 1, MIN_MS - 1,
     pytest.param(10**5000, id="an-int-of-5001-digits"), True, "1772616000000", None, [1]],
)
def test_epoch_ms_helper_refuses_the_rest(value: object) -> None:
    with pytest.raises(TimestampError) as info:
        instant_from_epoch_ms(value)
    assert len(str(info.value)) < 200


def test_durations_are_ascii_exact_and_bounded() -> None:
    assert parse_duration_ms("4.35s") == 4350  # float arithmetic would give 4349
    assert parse_duration_ms(" 2 h ") == 7_200_000
    assert parse_duration_ms("1.9ms") == 1  # truncated to whole milliseconds
    assert parse_duration_ms("366d") == MAX_DURATION_MS
    for text in ["\u0662\u0664h", "24h\n", "1e300h", "-1h", "24 hours", "", "h", "1.h",
                 "\uff12\uff14h"]:
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration_ms(text)
    for text in ["367d", "1" + "0" * 400 + "h", "53w"]:
        with pytest.raises(ValueError, match="longest duration") as info:
            parse_duration_ms(text)
        assert len(str(info.value)) < 200


# --- names: no control, format or separator characters -----------------------------

_IDENTITY_FIELDS = [
    (_deploy, "event_id"), (_deploy, "source"), (_deploy, "service"), (_deploy, "environment"),
    (_deploy, "release"), (_deploy, "previous_release"), (_deploy, "incident_id"),
    (_incident, "event_id"), (_incident, "service"), (_incident, "environment"),
    (_incident, "incident_id"), (_incident, "suspected_release"),
    (_flag, "event_id"), (_flag, "service"), (_flag, "flag_id"), (_flag, "release"),
    (_flag, "fixed_in"),
]
_FORBIDDEN_IN_NAMES = [
    "\x00", "\t", "\n", "\x1b", "\x1f", "\x7f", "\x85", "\x9f",  # Cc
    "\u00ad", "\u200b", "\u200d", "\u202e", "\u2066", "\ufeff", "\U000e0041",  # Cf
    "\u2028", "\u2029",  # Zl, Zp
    "\ud800",  # Cs: a lone surrogate (cannot be written as UTF-8)
]


@pytest.mark.parametrize(("make", "field"), _IDENTITY_FIELDS)
@pytest.mark.parametrize("char", _FORBIDDEN_IN_NAMES, ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_in_names_are_refused(make: Any, field: str, char: str) -> None:
    err = _error(make(**{field: "ab" + char + "c"}))
    assert (err.field, err.reason) == (field, "control_character")
    assert f"U+{ord(char):04X}) at index 2" in err.detail
    assert repr(field) in str(err)


@pytest.mark.parametrize(("field", "make"), [("release_aliases", _deploy),
                                             ("release_aliases", _incident),
                                             ("vulnerabilities", _flag)])
def test_control_characters_in_list_entries_name_the_entry(field: str, make: Any) -> None:
    err = _error(make(**{field: ["ok", "also-ok", "bad\x1fone"]}))
    assert (err.field, err.reason) == (f"{field}[2]", "control_character")
    assert "at index 3" in err.detail


def test_the_separator_inside_alert_ids_cannot_be_in_a_name() -> None:
    """``alert_id`` joins the identity with U+001F: service ``a\\x1fb``/environment ``c``
    and service ``a``/environment ``b\\x1fc`` would share an id, so neither is valid."""
    assert alert_id_for("r", "a\x1fb", "c", "d", "e") == alert_id_for("r", "a", "b\x1fc", "d", "e")
    assert _error(_deploy(service="a\x1fb", environment="c")).field == "service"
    assert _error(_deploy(service="a", environment="b\x1fc")).field == "environment"


def test_alert_ids_of_valid_names_did_not_change() -> None:
    # Pinned before control characters were refused: today's ids stay what they were.
    assert alert_id_for("rule-x", "svc", "prod", "1.0", "CVE-1") == (
        "281122ab82eabdfb8b78ed9a361598ff")
    assert alert_id_for(
        "rollback-to-flagged-release", "payments-api", "production", "1.4.0", "d-1"
    ) == "892e23a9816121e9d627d45ca467ceb3"


@pytest.mark.parametrize(
    "name",
    ["Checkout API", "ghcr.io/acme/checkout:2.7.0", "sha256:" + "ab" * 32, "チェックアウト",
     "caf\u00e9", "a\u00a0b", "\U0001f680-rocket", "x" * 200, "\ue000private"],
)
def test_names_people_and_tools_use_are_accepted(name: str) -> None:
    event = parse_event(_deploy(service=name, release=name, release_aliases=[name]))
    assert (event.service, event.release) == (name, name)


@pytest.mark.parametrize("field", ["title"])
@pytest.mark.parametrize("make", [_incident, _flag])
def test_free_text_keeps_tabs_and_newlines_but_no_other_control(make: Any, field: str) -> None:
    text = "line one\n\tline two\r\nzero\u200dwidth joiner, \u202ebidi\u202c, \u2028sep"
    event = parse_event(make(**{field: text}))
    assert getattr(event, field) == text
    for char in ["\x00", "\x1b", "\x7f", "\x85", "\ud800", "\x0b"]:
        err = _error(make(**{field: "ok " + char}))
        assert (err.field, err.reason) == (field, "control_character")
        assert f"U+{ord(char):04X}) at index 3" in err.detail


@pytest.mark.parametrize("field", ["actor", "reason"])
def test_deploy_free_text_rules(field: str) -> None:
    event = parse_event(_deploy(**{field: "two\nlines\tand a tab"}))
    assert getattr(event, field) == "two\nlines\tand a tab"
    err = _error(_deploy(**{field: "\x1b[31mred"}))
    assert (err.field, err.reason, "index 0" in err.detail) == (field, "control_character", True)


def test_forbidden_ranges_are_unicodes_control_format_and_separator_characters() -> None:
    """The written-out ranges hold every Cc, Cf, Cs, Zl and Zp character of this Python's
    Unicode database, and nothing else that is assigned there."""
    forbidden = {cp for lo, hi in NAME_FORBIDDEN_RANGES for cp in range(lo, hi + 1)}
    wanted = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    for cp in range(0x110000):
        category = unicodedata.category(chr(cp))
        if category in wanted:
            assert cp in forbidden, f"U+{cp:04X} ({category}) is not refused"
        elif cp in forbidden:
            assert category == "Cn", f"U+{cp:04X} ({category}) is refused"
        if cp in forbidden:
            assert not chr(cp).isprintable()  # the fast path's premise
    text_forbidden = {cp for lo, hi in TEXT_FORBIDDEN_RANGES for cp in range(lo, hi + 1)}
    assert text_forbidden == {
        cp for cp in range(0x110000) if unicodedata.category(chr(cp)) in ("Cc", "Cs")
    } - {0x09, 0x0A, 0x0D}


@settings(max_examples=1000, deadline=None)
@given(name=st.text(max_size=12))
def test_a_name_that_validates_holds_no_forbidden_character(name: str) -> None:
    try:
        event = parse_event(_deploy(service=name, environment=name))
    except ValidationError as exc:
        assert exc.reason in ("control_character", "too_short")
        return
    assert "\x1f" not in event.service
    assert all(
        unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in event.service
    )


# --- empty optional names read as null ---------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [(_deploy, "previous_release"), (_deploy, "incident_id"), (_deploy, "team"),
     (_deploy, "actor"), (_deploy, "reason"), (_incident, "suspected_release"),
     (_flag, "fixed_in")],
)
def test_empty_optional_fields_read_as_null(make: Any, field: str) -> None:
    event = parse_event(make(**{field: ""}))
    assert getattr(event, field) is None
    assert event == parse_event(make(**{field: None}))
    assert event_to_dict(event)[field] is None


@pytest.mark.parametrize(("make", "field"), [(_deploy, "release"), (_flag, "release"),
                                             (_incident, "incident_id"), (_flag, "flag_id")])
def test_empty_required_names_stay_refused(make: Any, field: str) -> None:
    err = _error(make(**{field: ""}))
    assert (err.field, err.reason) == (field, "too_short")


# --- the messages: one place, pinned, bounded ----------------------------------------

# The exact texts a reimplementation of the validation must give (field, reason, detail).
_PINNED_MESSAGES = [
    (_without(_deploy(), "event_id"), "event_id", "missing", "is required"),
    (_without(_deploy(), "action"), "action", "missing", "is required (one of deploy, rollback)"),
    (_without(_deploy(), "type"), "type", "missing",
     "is required (deploy, incident or security_flag)"),
    (["x"], "$", "wrong_type", "an event must be a JSON object, got list"),
    (_deploy(service=7), "service", "wrong_type", "must be a string, got int"),
    (_deploy(previous_release=[]), "previous_release", "wrong_type",
     "must be a string or null, got list"),
    (_deploy(occurred_at=1.5), "occurred_at", "wrong_type",
     "must be an RFC 3339 string, got float"),
    (_flag(vulnerabilities={}), "vulnerabilities", "wrong_type",
     "must be a list of strings, got dict"),
    (_flag(vulnerabilities=["a", None]), "vulnerabilities[1]", "wrong_type", "must be a string"),
    (_flag(vulnerabilities=["a"] * 1001), "vulnerabilities", "too_long",
     "has 1001 entries, at most 1000"),
    (_deploy(release_aliases=["a"] * 65), "release_aliases", "too_long",
     "has 65 entries, at most 64"),
    (_deploy(event_id=""), "event_id", "too_short", "must have at least 1 character(s)"),
    (_deploy(service="s" * 201), "service", "too_long", "has 201 characters, at most 200 allowed"),
    (_deploy(action="redeploy"), "action", "unknown_enum",
     "'redeploy' is not one of deploy, rollback"),
    (_deploy(type="x" * 100), "type", "unknown_enum",
     f"{'x' * 64!r}… (100 chars) is not one of deploy, incident, security_flag"),
    (_deploy(service="a\x1fb"), "service", "control_character",
     "contains a control character (U+001F) at index 1; "
     "names may not contain control, format or separator characters"),
    (_deploy(service="a\u202eb"), "service", "control_character",
     "contains an invisible format character (U+202E) at index 1; "
     "names may not contain control, format or separator characters"),
    (_deploy(service="\u2028"), "service", "control_character",
     "contains a line or paragraph separator (U+2028) at index 0; "
     "names may not contain control, format or separator characters"),
    (_incident(title="a\x00"), "title", "control_character",
     "contains a control character (U+0000) at index 1; "
     "text may contain tab, line feed and carriage return, no other control characters"),
    (_deploy(occurred_at="2026-03-04T09:20:00"), "occurred_at", "bad_timestamp",
     "timestamp '2026-03-04T09:20:00' has no offset (add 'Z' or '+hh:mm')"),
    (_deploy(occurred_at="soon"), "occurred_at", "bad_timestamp",
     "'soon' is not an RFC 3339 timestamp "
     "(expected YYYY-MM-DDTHH:MM:SS[.fraction] and Z or ±hh:mm)"),
    (_deploy(occurred_at="0001-01-01T00:00:00+01:00"), "occurred_at", "bad_timestamp",
     "timestamp '0001-01-01T00:00:00+01:00' is outside the instants relsec can represent "
     "(0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z in UTC)"),
]


@pytest.mark.parametrize(("obj", "field", "reason", "detail"), _PINNED_MESSAGES)
def test_pinned_messages(obj: Any, field: str, reason: str, detail: str) -> None:
    err = _error(obj)
    assert (err.field, err.reason, err.detail) == (field, reason, detail)
    assert reason in REASONS


@pytest.mark.parametrize(
    "obj",
    [_deploy(action="x" * 600_000), _deploy(type="t" * 600_000),
     _deploy(occurred_at="2" * 600_000), _incident(severity="\x00" * 600_000),
     _deploy(service="s" * 600_000), _incident(title="t" * 600_000),
     _deploy(occurred_at="2026-03-04T09:20:00Z" + " " * 600_000)],
)
def test_details_quoting_input_are_bounded(obj: dict[str, Any]) -> None:
    """A 600 KB value once made a 1.2 MB dead letter, above the broker's message limit."""
    err = _error(obj)
    assert len(str(err)) < 400, str(err)[:500]


def test_excerpt() -> None:
    assert excerpt("short") == "'short'"
    assert excerpt("y" * 64) == repr("y" * 64)
    assert excerpt("y" * 65) == repr("y" * 64) + "… (65 chars)"


def test_the_canonical_shapes_take_the_positional_parser() -> None:
    from agents.model import timefmt

    assert timefmt._parse_canonical("2026-05-01T00:00:02Z") == 1_777_593_602_000
    assert timefmt._parse_canonical("2026-05-01T00:00:02.250Z") == 1_777_593_602_250
    for declined in ("2026-05-01T00:00:02.25Z", "2026-05-01t00:00:02Z", "2026-05-01T00:00:60Z"):
        assert timefmt._parse_canonical(declined) == timefmt._NOT_CANONICAL
