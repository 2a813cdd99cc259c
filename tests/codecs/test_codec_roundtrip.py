"""Round trips through the default codec: event/alert/dead-letter dict -> bytes -> dict."""

from __future__ import annotations

import string
from typing import Any

import orjson
import pytest
from codec_samples import EVENTS, make_alert, make_dead_letter
from faust.serializers import codecs as faust_codecs
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.errors import ValidationError
from agents.model.alerts import Alert
from agents.model.events import event_to_dict, parse_event
from schemas import load_schema
from streams.codecs import (
    FAUST_CODEC_NAMES,
    SingleObjectCodec,
    make_codec,
    register_faust_codecs,
)
from streams.codecs.fingerprint import schema_fingerprint
from streams.settings import Settings


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_event_round_trip_gives_the_same_event(codec: SingleObjectCodec, name: str) -> None:
    original = EVENTS[name]
    kind = original["type"]
    raw = codec.encode_event(original)
    assert raw[:2] == b"\xc3\x01"
    assert raw[2:10] == schema_fingerprint(load_schema(kind))
    decoded = codec.decode_event(raw, kind)
    assert decoded["type"] == kind
    assert parse_event(decoded, expected_type=kind) == parse_event(original, expected_type=kind)
    # and the canonical JSON forms agree too
    assert event_to_dict(parse_event(decoded)) == event_to_dict(parse_event(original))


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_event_dict_of_a_parsed_event_round_trips_exactly(
    codec: SingleObjectCodec, name: str
) -> None:
    canonical = event_to_dict(parse_event(EVENTS[name]))
    assert codec.decode_event(codec.encode_event(canonical), canonical["type"]) == canonical


def test_avro_is_smaller_than_json(codec: SingleObjectCodec) -> None:
    for event in EVENTS.values():
        assert len(codec.encode_event(event)) < len(orjson.dumps(event))


@pytest.mark.parametrize(
    "alert",
    [make_alert(), make_alert("retracted"), make_alert(release_rec=None)],
    ids=["firing", "retracted", "no-release-recommended"],
)
def test_alert_round_trip(codec: SingleObjectCodec, alert: Alert) -> None:
    d = alert.to_dict()
    raw = codec.encode_alert(d)
    assert raw[2:10] == schema_fingerprint(load_schema("alert"))
    decoded = codec.decode_alert(raw)
    assert decoded == d
    assert list(decoded) == list(d)  # same key order as Alert.to_dict()
    assert Alert.from_dict(decoded) == alert


def test_alert_without_recommendation_round_trips(codec: SingleObjectCodec) -> None:

    alert = make_alert().replace(recommendation=None, rule="rollback-performed")
    decoded = codec.decode_alert(codec.encode_alert(alert.to_dict()))
    assert decoded["recommendation"] is None
    assert Alert.from_dict(decoded) == alert


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"topic": None, "partition": None, "offset": None, "key": None},
        {"value": None, "reason": "late", "detail": ""},
        {"value": bytearray(b"\x00\x01"), "key": memoryview(b"k")},
    ],
    ids=["kafka", "from-a-file", "no-value", "bytes-like"],
)
def test_dead_letter_round_trip(codec: SingleObjectCodec, overrides: dict[str, Any]) -> None:
    dl = make_dead_letter(**overrides)
    decoded = codec.decode_dead_letter(codec.encode_dead_letter(dl))
    expected = {
        k: (bytes(v) if isinstance(v, bytearray | memoryview) else v) for k, v in dl.items()
    }
    assert decoded == expected
    assert type(decoded["value"]) in (bytes, type(None))


@pytest.mark.parametrize("name", sorted(EVENTS))
@pytest.mark.parametrize("prefix", [b"", b"  \n\t"])
def test_json_is_accepted_on_input(codec: SingleObjectCodec, name: str, prefix: bytes) -> None:
    original = EVENTS[name]
    decoded = codec.decode_event(prefix + orjson.dumps(original), original["type"])
    assert decoded == original


def test_json_alert_and_dead_letter_are_accepted(codec: SingleObjectCodec) -> None:
    d = make_alert().to_dict()
    assert codec.decode_alert(orjson.dumps(d)) == d
    dl = {"reason": "late", "detail": "x", "detected_at": "2026-03-04T09:20:01Z"}
    assert codec.decode_dead_letter(orjson.dumps(dl)) == dl


def test_avro_record_on_the_wrong_topic_is_caught_by_validation(
    codec: SingleObjectCodec,
) -> None:
    decoded = codec.decode_event(codec.encode_event(EVENTS["deploy_full"]), "incident")
    assert decoded["type"] == "deploy"
    with pytest.raises(ValidationError) as err:
        parse_event(decoded, expected_type="incident")
    assert err.value.field == "type"


def test_unknown_enum_value_reaches_validation(codec: SingleObjectCodec) -> None:
    for field, value, kind in (
        ("action", "rollout", "deploy_full"),
        ("status", "paused", "incident_full"),
        ("severity", "catastrophic", "flag_full"),
    ):
        event = {**EVENTS[kind], field: value}
        decoded = codec.decode_event(codec.encode_event(event), event["type"])
        assert decoded[field] == value
        with pytest.raises(ValidationError) as err:
            parse_event(decoded, expected_type=event["type"])
        assert (err.value.field, err.value.reason) == (field, "unknown_enum")


def test_too_long_strings_survive_the_codec_and_fail_validation(
    codec: SingleObjectCodec,
) -> None:
    event = {**EVENTS["deploy_minimal"], "service": "s" * 5000}
    decoded = codec.decode_event(codec.encode_event(event), "deploy")
    with pytest.raises(ValidationError) as err:
        parse_event(decoded, expected_type="deploy")
    assert (err.value.field, err.value.reason) == ("service", "too_long")


def test_make_codec_defaults_to_single_object() -> None:
    codec = make_codec(Settings())
    assert isinstance(codec, SingleObjectCodec)
    assert codec.encode_event(EVENTS["deploy_minimal"])[:2] == b"\xc3\x01"
    assert isinstance(make_codec(), SingleObjectCodec)


def test_faust_codec_lookup_by_name() -> None:
    names = register_faust_codecs(Settings())
    assert names == FAUST_CODEC_NAMES
    event_codec = faust_codecs.get_codec(names["event"])
    raw = event_codec.dumps(EVENTS["flag_full"])
    assert raw[:2] == b"\xc3\x01"
    assert parse_event(faust_codecs.loads(names["event"], raw)) == parse_event(EVENTS["flag_full"])
    alert = make_alert().to_dict()
    assert faust_codecs.loads(names["alert"], faust_codecs.dumps(names["alert"], alert)) == alert
    dl = make_dead_letter()
    raw_dl = faust_codecs.dumps(names["dead_letter"], dl)
    assert faust_codecs.loads(names["dead_letter"], raw_dl) == dl
    # Faust clones codecs when chaining; the clone must still be a relsec codec.
    chained = event_codec | faust_codecs.get_codec("binary")
    assert faust_codecs.get_codec("binary").loads(chained.dumps(EVENTS["flag_full"])) == raw


# --- property: any valid event survives the round trip ------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=40)
_ident = st.text(alphabet=string.ascii_letters + string.digits + "-_./:é✓", min_size=1, max_size=40)
_instant = st.builds(
    lambda ms, off: (ms, off),
    st.integers(min_value=0, max_value=4_102_444_800_000),
    st.sampled_from(["Z", "+00:00", "+05:30", "-08:00"]),
)


def _rfc3339(ms: int, offset: str) -> str:
    from agents.model.timefmt import format_rfc3339_ms

    text = format_rfc3339_ms(ms)  # UTC; re-express in the offset to exercise parsing
    if offset in ("Z", "+00:00"):
        return text[:-1] + offset
    from datetime import UTC, datetime, timedelta, timezone

    sign = 1 if offset[0] == "+" else -1
    tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz)
    return dt.isoformat(timespec="milliseconds")


_deploys = st.fixed_dictionaries(
    {
        "type": st.just("deploy"),
        "event_id": _ident,
        "occurred_at": _instant.map(lambda t: _rfc3339(*t)),
        "source": _ident,
        "service": _ident,
        "environment": _ident,
        "release": _ident,
        "previous_release": st.none() | _ident,
        "action": st.sampled_from(["deploy", "rollback"]),
        "status": st.sampled_from(["succeeded", "failed"]),
        "team": st.none() | st.sampled_from(["sre", "security", "dev"]),
        "actor": st.none() | _text,
        "reason": st.none() | _text,
        "incident_id": st.none() | _ident,
    }
)
_flags = st.fixed_dictionaries(
    {
        "type": st.just("security_flag"),
        "event_id": _ident,
        "occurred_at": _instant.map(lambda t: _rfc3339(*t)),
        "source": _ident,
        "service": _ident,
        "flag_id": _ident,
        "release": _ident,
        "status": st.sampled_from(["raised", "cleared", "risk_accepted"]),
        "severity": st.sampled_from(["critical", "high", "medium", "low"]),
        "vulnerabilities": st.lists(_ident, max_size=5),
        "title": _text,
        "fixed_in": st.none() | _ident,
    }
)


@settings(max_examples=200, deadline=None)
@given(event=_deploys | _flags)
def test_any_valid_event_round_trips(event: dict[str, Any]) -> None:
    codec = SingleObjectCodec()
    original = parse_event(event)
    decoded = codec.decode_event(codec.encode_event(event), event["type"])
    assert parse_event(decoded, expected_type=event["type"]) == original
