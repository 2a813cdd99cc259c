"""Every decode failure is a DecodeError with the right reason; nothing else escapes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from codec_samples import EVENTS, make_alert, make_dead_letter
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.errors import DecodeError, ValidationError
from schemas import load_schema
from streams.codecs import (
    AVRO_ERROR,
    DECODE_REASONS,
    INVALID_JSON,
    UNDECODABLE,
    UNKNOWN_SCHEMA,
    SingleObjectCodec,
)
from streams.codecs.fingerprint import schema_fingerprint


def _reason(fn: Any, raw: Any) -> str:
    with pytest.raises(DecodeError) as err:
        fn(raw)
    assert err.value.reason in DECODE_REASONS
    assert err.value.detail
    return err.value.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", UNDECODABLE),
        (None, UNDECODABLE),
        (b"\x07binary", UNDECODABLE),
        (b"\xc3", UNDECODABLE),
        (b"\xc3\x02" + b"\x00" * 20, UNDECODABLE),
        (b"\xc3\x01\x58\xf1", UNDECODABLE),
        (b"\xc3\x01" + b"\xab" * 8 + b"\x02a", UNKNOWN_SCHEMA),
        (b"\x00\x00\x00\x00\x07\x02a", UNKNOWN_SCHEMA),  # Confluent, no registry configured
        (b"{not json", INVALID_JSON),
        (b'{"a": 1', INVALID_JSON),
        (b"[1, 2]", INVALID_JSON),
        (b'{"bad utf8": "\xff"}', INVALID_JSON),
    ],
)
def test_decode_error_reasons(codec: SingleObjectCodec, raw: Any, reason: str) -> None:
    assert _reason(lambda r: codec.decode_event(r, "deploy"), raw) == reason


def test_unknown_fingerprint_names_it(codec: SingleObjectCodec) -> None:
    raw = codec.encode_event(EVENTS["deploy_full"])
    bogus = raw[:2] + bytes.fromhex("0123456789abcdef") + raw[10:]
    with pytest.raises(DecodeError) as err:
        codec.decode_event(bogus, "deploy")
    assert err.value.reason == UNKNOWN_SCHEMA
    assert "0123456789abcdef" in err.value.detail


def test_a_newer_schema_version_is_unknown_not_misread(codec: SingleObjectCodec) -> None:
    """A producer on a v2 schema this relsec does not know: unknown_schema, not garbage."""
    v2 = load_schema("deploy")
    v2["fields"].append({"name": "region", "type": ["null", "string"], "default": None})
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + schema_fingerprint(v2))
    schemaless_writer(buf, parse_schema(v2), {**EVENTS["deploy_minimal"], "occurred_at": 1})
    assert _reason(lambda r: codec.decode_event(r, "deploy"), buf.getvalue()) == UNKNOWN_SCHEMA


def test_every_truncation_is_a_decode_error(codec: SingleObjectCodec) -> None:
    samples = [codec.encode_event(e) for e in EVENTS.values()]
    samples.append(codec.encode_alert(make_alert().to_dict()))
    samples.append(codec.encode_dead_letter(make_dead_letter()))
    for raw in samples:
        decode = codec.decode_alert if raw[2:10] == schema_fingerprint(load_schema("alert")) else (
            codec.decode_dead_letter
            if raw[2:10] == schema_fingerprint(load_schema("dead_letter"))
            else codec.decode_event
        )
        for cut in range(1, len(raw)):
            reason = _reason(decode, raw[:cut])
            assert reason == (UNDECODABLE if cut < 10 else AVRO_ERROR), cut


def test_trailing_bytes_are_an_avro_error(codec: SingleObjectCodec) -> None:
    raw = codec.encode_event(EVENTS["incident_full"])
    assert _reason(codec.decode_event, raw + b"\x00") == AVRO_ERROR


def test_invalid_utf8_in_a_string_is_an_avro_error(codec: SingleObjectCodec) -> None:
    raw = codec.encode_event({**EVENTS["deploy_minimal"], "event_id": "ab"})
    i = raw.index(b"\x04ab")  # length 2 (zigzag 4), then the bytes
    corrupt = raw[: i + 1] + b"\xff\xfe" + raw[i + 3 :]
    assert _reason(codec.decode_event, corrupt) == AVRO_ERROR


def test_an_out_of_range_instant_is_an_avro_error(codec: SingleObjectCodec) -> None:
    raw = codec.encode_event({**EVENTS["deploy_minimal"], "occurred_at": 2**62})
    assert _reason(codec.decode_event, raw) == AVRO_ERROR


def test_record_of_another_kind_is_an_unknown_schema(codec: SingleObjectCodec) -> None:
    alert_raw = codec.encode_alert(make_alert().to_dict())
    event_raw = codec.encode_event(EVENTS["flag_full"])
    dl_raw = codec.encode_dead_letter(make_dead_letter())
    assert _reason(codec.decode_event, alert_raw) == UNKNOWN_SCHEMA
    assert _reason(codec.decode_event, dl_raw) == UNKNOWN_SCHEMA
    assert _reason(codec.decode_alert, event_raw) == UNKNOWN_SCHEMA
    assert _reason(codec.decode_dead_letter, alert_raw) == UNKNOWN_SCHEMA


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_bytes_never_raise_anything_but_decode_error(data: st.DataObject) -> None:
    codec = SingleObjectCodec()
    name = data.draw(st.sampled_from(sorted(EVENTS)))
    raw = bytearray(codec.encode_event(EVENTS[name]))
    # keep the header (or not), flip some bytes of the body
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        codec.decode_event(bytes(raw), "deploy")
    except DecodeError as exc:
        assert exc.reason in DECODE_REASONS


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(raw: bytes) -> None:
    codec = SingleObjectCodec()
    for decode in (codec.decode_event, codec.decode_alert, codec.decode_dead_letter):
        try:
            decode(raw)
        except DecodeError as exc:
            assert exc.reason in DECODE_REASONS


# --- encoding refuses what the schema cannot carry ------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"release": None}, "release", "wrong_type"),
        ({"release": 5}, "release", "wrong_type"),
        ({"occurred_at": "yesterday"}, "occurred_at", "bad_timestamp"),
        ({"occurred_at": None}, "occurred_at", "missing"),
        ({"occurred_at": 1.5}, "occurred_at", "wrong_type"),
        ({"type": "deployment"}, "type", "unknown_enum"),
    ],
)
def test_encoding_an_event_the_schema_cannot_carry(
    codec: SingleObjectCodec, change: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as err:
        codec.encode_event({**EVENTS["deploy_full"], **change})
    assert (err.value.field, err.value.reason) == (field, reason)


def test_encoding_a_bad_alert_or_dead_letter(codec: SingleObjectCodec) -> None:
    alert = make_alert().to_dict()
    with pytest.raises(ValidationError) as err:
        codec.encode_alert({**alert, "evidence": "nope"})
    assert err.value.field == "evidence"
    with pytest.raises(ValidationError) as err:
        codec.encode_alert({**alert, "notify": [1]})
    assert err.value.field.startswith("notify")
    with pytest.raises(ValidationError) as err:
        codec.encode_dead_letter(make_dead_letter(value="text, not bytes"))
    assert err.value.field == "value"


def test_a_dead_letter_with_unencodable_text_is_still_written(codec: SingleObjectCodec) -> None:
    dl = make_dead_letter(detail="bad \ud800 surrogate", topic="t\udfff")
    decoded = codec.decode_dead_letter(codec.encode_dead_letter(dl))
    assert decoded["detail"] == "bad ? surrogate"
    assert decoded["topic"] == "t?"
    assert decoded["value"] == dl["value"]
