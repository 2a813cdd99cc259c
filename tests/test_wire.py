"""The fast path (``agents.model.wire.event_from_json``) agrees with ``parse_event``.

For every record, generated valid or hostile: when the fast path returns an event, the
usual path (``orjson.loads`` then ``parse_event``) accepts the record too and returns the
same event; and the fast path takes every plainly valid record (else it would be no fast
path). Records it declines are judged by the usual path, so their errors are the usual
ones by construction.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.errors import ValidationError
from agents.model.events import Event, event_to_dict, parse_event
from agents.model.timefmt import format_rfc3339_ms
from agents.model.wire import event_from_json
from tests.fuzz.hostile import (
    BAD_ENUM_WORDS,
    NAME_FORBIDDEN,
    NON_STRINGS,
    REFUSED_TIMESTAMPS,
    TEXT_FORBIDDEN,
    DrawChooser,
    hostile_line,
)

EXPECTED_TYPES = (None, "deploy", "incident", "security_flag")
FIELDS = {
    "deploy": ("event_id", "occurred_at", "source", "service", "environment", "release",
               "previous_release", "action", "status", "team", "actor", "reason",
               "incident_id", "release_aliases"),
    "incident": ("event_id", "occurred_at", "source", "service", "environment",
                 "incident_id", "status", "severity", "title", "suspected_release",
                 "release_aliases"),
    "security_flag": ("event_id", "occurred_at", "source", "service", "flag_id", "release",
                      "status", "severity", "title", "vulnerabilities", "fixed_in",
                      "release_aliases"),
}


def usual_path(raw: bytes, expected_type: str | None) -> Event | None:
    try:
        return parse_event(orjson.loads(raw), expected_type)
    except (orjson.JSONDecodeError, ValidationError):
        return None


def assert_agree(raw: bytes, expected_type: str | None) -> Event | None:
    fast = event_from_json(raw, expected_type)
    if fast is not None:
        assert usual_path(raw, expected_type) == fast, raw[:300]
    return fast


# -- valid records ---------------------------------------------------------------------

_printable_name = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp", "Zs")),
    min_size=1, max_size=30,
).filter(str.isprintable)  # unassigned code points are valid but not printable
_name = st.one_of(
    st.sampled_from(["svc-a", "checkout", "1.4.2", "sha256:ab12", "img:v1", "Ünïcødé-名前"]),
    _printable_name,
)
_opt_name = st.one_of(st.none(), st.just(""), _name)
_text = st.one_of(st.just(""), st.text(max_size=40).filter(str.isprintable), _name)
_instant = st.integers(-62_135_596_800_000, 253_402_300_799_999)
_timestamp = st.one_of(
    _instant.map(format_rfc3339_ms),
    st.sampled_from(["2026-03-04T09:20:00+01:00", "2026-03-04T09:20:00.5Z",
                     "2026-03-04t09:20:00z", "2016-12-31T23:59:60Z"]),
)
_names = st.one_of(st.none(), st.lists(_name, max_size=5))


@st.composite
def valid_objects(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(FIELDS)))
    obj: dict[str, Any] = {"type": kind, "event_id": draw(_name),
                           "occurred_at": draw(_timestamp), "source": draw(_name),
                           "service": draw(_name)}
    if kind == "deploy":
        obj |= {"environment": draw(_name), "release": draw(_name),
                "previous_release": draw(_opt_name),
                "action": draw(st.sampled_from(["deploy", "rollback"])),
                "status": draw(st.sampled_from(["succeeded", "failed", None])),
                "team": draw(st.sampled_from(["sre", "security", "dev", "", None])),
                "actor": draw(st.one_of(st.none(), _text)),
                "reason": draw(st.one_of(st.none(), _text)),
                "incident_id": draw(_opt_name), "release_aliases": draw(_names)}
    elif kind == "incident":
        obj |= {"environment": draw(_name), "incident_id": draw(_name),
                "status": draw(st.sampled_from(["opened", "acknowledged", "resolved"])),
                "severity": draw(st.sampled_from(["sev1", "sev2", "sev5"])),
                "title": draw(_text), "suspected_release": draw(_opt_name),
                "release_aliases": draw(_names)}
    else:
        obj |= {"flag_id": draw(_name), "release": draw(_name),
                "status": draw(st.sampled_from(["raised", "cleared", "risk_accepted"])),
                "severity": draw(st.sampled_from(["critical", "high", "medium", "low"])),
                "title": draw(_text), "vulnerabilities": draw(_names),
                "fixed_in": draw(_opt_name), "release_aliases": draw(_names)}
    # Optional fields may be left out (a deploy's status too); required ones never are.
    omittable = {"release_aliases", "vulnerabilities"} | ({"status"} if kind == "deploy" else set())
    for field in draw(st.lists(st.sampled_from(FIELDS[kind]), max_size=4)):
        if obj.get(field) is None or field in omittable:
            obj.pop(field, None)
    return obj


@settings(max_examples=400, deadline=None)
@given(valid_objects(), st.sampled_from(EXPECTED_TYPES))
def test_the_fast_path_takes_valid_records_and_returns_parse_events_value(
    obj: dict[str, Any], expected_type: str | None
) -> None:
    raw = orjson.dumps(obj)
    wrong_topic = expected_type is not None and expected_type != obj["type"]
    fast = assert_agree(raw, expected_type)
    if wrong_topic:
        assert fast is None and usual_path(raw, expected_type) is None
    else:
        assert fast is not None, raw
    # A topic's record may leave ``type`` out.
    without_type = {k: v for k, v in obj.items() if k != "type"}
    fast = assert_agree(orjson.dumps(without_type), obj["type"])
    assert fast is not None
    assert assert_agree(orjson.dumps(without_type), None) is None


@settings(max_examples=200, deadline=None)
@given(valid_objects())
def test_a_round_trip_through_event_to_dict_stays_on_the_fast_path(obj: dict[str, Any]) -> None:
    event = parse_event(obj)
    assert event_from_json(orjson.dumps(event_to_dict(event))) == event


# -- hostile records -------------------------------------------------------------------

_hostile_value = st.one_of(
    st.sampled_from(NON_STRINGS), st.sampled_from(BAD_ENUM_WORDS),
    st.sampled_from(REFUSED_TIMESTAMPS), st.none(), st.just(""),
    st.sampled_from(NAME_FORBIDDEN).map(lambda c: f"a{c}b"),
    st.sampled_from(TEXT_FORBIDDEN).map(lambda c: f"a{c}b"),
    st.text(min_size=0, max_size=8),
    st.integers(0, 4200).map(lambda n: "x" * n),
    st.lists(st.one_of(st.text(max_size=3), st.integers(-(2**63), 2**63 - 1), st.none()),
             max_size=3),
    st.integers(1, 1100).map(lambda n: [f"v{i}" for i in range(n)]),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_objects(), st.data(), st.sampled_from(EXPECTED_TYPES))
def test_hostile_values_are_never_accepted_by_the_fast_path_alone(
    obj: dict[str, Any], data: st.DataObject, expected_type: str | None
) -> None:
    fields = [*FIELDS[obj["type"]], "type", "extra"]
    for _ in range(data.draw(st.integers(1, 3))):
        field = data.draw(st.sampled_from(fields))
        obj[field] = data.draw(_hostile_value)
    assert_agree(orjson.dumps(obj), expected_type)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_objects(), st.data(), st.sampled_from(EXPECTED_TYPES))
def test_the_fuzz_suites_hostile_lines_agree(
    obj: dict[str, Any], data: st.DataObject, expected_type: str | None
) -> None:
    line = hostile_line(DrawChooser(data, max_string=5_000), obj, 1)
    assert_agree(line.raw, expected_type)


@pytest.mark.parametrize(
    "raw",
    [
        # Values nobody reads: orjson refuses them, msgspec would skip them.
        b'{"type":"deploy","event_id":"e","occurred_at":"2026-01-01T00:00:00Z","source":"s",'
        b'"service":"s","environment":"p","release":"r","action":"deploy","x":1e400}',
        b'{"type":"deploy","event_id":"e","occurred_at":"2026-01-01T00:00:00Z","source":"s",'
        b'"service":"s","environment":"p","release":"r","action":"deploy","x":"\xff"}',
        # A duplicate key: both read the last value.
        b'{"type":"deploy","event_id":"e","event_id":"f","occurred_at":"2026-01-01T00:00:00Z",'
        b'"source":"s","service":"s","environment":"p","release":"r","action":"deploy"}',
        # A lone surrogate escape, a name with a non-ASCII space (allowed, not printable).
        b'{"type":"deploy","event_id":"\\ud800","occurred_at":"2026-01-01T00:00:00Z",'
        b'"source":"s","service":"s","environment":"p","release":"r","action":"deploy"}',
        b'{"type":"deploy","event_id":"a\xc2\xa0b","occurred_at":"2026-01-01T00:00:00Z",'
        b'"source":"s","service":"s","environment":"p","release":"r","action":"deploy"}',
        b'{"type":null,"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","source":"s",'
        b'"service":"s","environment":"p","release":"r","action":"deploy"}',
        # Nesting deeper than msgspec's limit (it raises RecursionError) and orjson's.
        b'{"type":"deploy","x":' + b'{"a":' * 5000 + b'1' + b'}' * 5001,
        b'{"type":"deploy","x":' + b'[' * 600 + b']' * 600 + b'}',
    ],
)
def test_edge_cases_agree(raw: bytes) -> None:
    for expected_type in EXPECTED_TYPES:
        assert_agree(raw, expected_type)
