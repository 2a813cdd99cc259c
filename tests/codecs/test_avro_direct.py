"""The direct Avro reader and alert writer give fastavro's datums and bytes, or step aside.

``streams.codecs.avro_direct`` replaces fastavro on the worker's hot path only where it
gives the same result: these tests hold the two together on generated data (any text,
any instant, empty and long lists, nulls), on every truncation and corruption of real
records (where the direct reader must fail, and the codec must then say what fastavro
says), and on schemas it does not cover (where it must decline).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.errors import DecodeError, ValidationError
from agents.model.alerts import Alert, Evidence, Recommendation
from schemas import EVENT_SCHEMAS, SCHEMA_NAMES, load_schema
from streams.codecs import avro_direct, avro_readers, make_codec
from streams.codecs.avro_direct import (
    PREBUILT_MODULE,
    DirectReadError,
    alert_layout_matches,
    alert_writer,
    compile_reader,
    prebuilt_source,
    read_long,
)
from streams.codecs.datum import alert_value_to_datum
from streams.codecs.single_object import (
    HEADER_BYTES,
    _read_datum_fastavro,
    current_schema,
    write_datum,
)
from tests.codecs.codec_samples import make_alert

LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=300)  # any Unicode, multi-byte and lengths past one varint byte
SHORT = st.text(max_size=12)


def fastavro_bytes(name: str, datum: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, current_schema(name).writer, datum)
    return buf.getvalue()


def fastavro_datum(name: str, raw: bytes) -> Any:
    return schemaless_reader(io.BytesIO(raw), current_schema(name).writer, None)


@st.composite
def event_datums(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A datum of event schema ``name`` with arbitrary values of each field's type."""
    datum: dict[str, Any] = {}
    for field in load_schema(name)["fields"]:
        kind = field["type"]
        if kind == "string":
            datum[field["name"]] = draw(TEXT)
        elif kind == "long":
            datum[field["name"]] = draw(LONGS)
        elif kind == ["null", "string"]:
            datum[field["name"]] = draw(st.none() | TEXT)
        elif kind == {"type": "array", "items": "string"}:
            datum[field["name"]] = draw(st.lists(SHORT, max_size=70))
        else:  # pragma: no cover - a new field type needs a strategy here
            raise AssertionError(f"no strategy for {field['name']}: {kind}")
    return datum


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_current_schema_has_a_direct_reader(name: str) -> None:
    assert compile_reader(current_schema(name).writer) is not None


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_the_current_schemas_take_the_prebuilt_readers(name: str) -> None:
    # The property tests below call compile_reader: they test the prebuilt readers.
    assert compile_reader(current_schema(name).writer) is getattr(avro_readers, f"read_{name}")


def test_the_prebuilt_readers_are_what_the_schemas_give() -> None:
    text = Path(avro_direct.__file__).resolve().parents[2].joinpath(PREBUILT_MODULE).read_text()
    assert text == prebuilt_source(), "run: python -m streams.codecs.avro_direct"


def test_an_older_schema_gets_a_reader_built_at_run_time() -> None:
    schema = parse_schema(
        {"type": "record", "name": "Old", "fields": [{"name": "a", "type": "string"}]},
        named_schemas={},
    )
    reader = compile_reader(schema)
    assert reader is not None and reader not in avro_readers.PREBUILT.values()
    assert reader(b"\x06abc", 0) == {"a": "abc"}


@pytest.mark.parametrize("name", EVENT_SCHEMAS)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_direct_reader_equals_fastavro_key_order_included(name: str, data: st.DataObject) -> None:
    datum = data.draw(event_datums(name))
    raw = fastavro_bytes(name, datum)
    reader = compile_reader(current_schema(name).writer)
    assert reader is not None
    direct = reader(b"\xaa" * 3 + raw, 3)
    expected = fastavro_datum(name, raw)
    assert direct == expected
    assert list(direct) == list(expected)


@pytest.mark.parametrize("name", EVENT_SCHEMAS)
@settings(max_examples=60)
@given(data=st.data())
def test_every_truncation_and_extension_is_refused(name: str, data: st.DataObject) -> None:
    raw = fastavro_bytes(name, data.draw(event_datums(name)))
    reader = compile_reader(current_schema(name).writer)
    assert reader is not None
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises((DirectReadError, IndexError, UnicodeDecodeError)):
        reader(raw[:cut], 0)
    with pytest.raises(DirectReadError):
        reader(raw + data.draw(st.binary(min_size=1, max_size=4)), 0)


@pytest.mark.parametrize("name", EVENT_SCHEMAS)
@settings(max_examples=200)
@given(data=st.data())
def test_a_corrupted_record_decodes_or_fails_exactly_as_through_fastavro(
    name: str, data: st.DataObject
) -> None:
    """Flip one byte of a real record: the codec's answer (a datum or a DecodeError with
    its message) is fastavro's, whether the direct reader read it or stepped aside."""
    known = current_schema(name)
    raw = bytearray(known.header + fastavro_bytes(name, data.draw(event_datums(name))))
    at = data.draw(st.integers(min_value=HEADER_BYTES, max_value=len(raw) - 1))
    raw[at] = data.draw(st.integers(min_value=0, max_value=255))
    record = bytes(raw)
    codec = make_codec()
    try:
        expected: Any = _read_datum_fastavro(record, HEADER_BYTES, known)
    except DecodeError as exc:
        expected = (exc.reason, exc.detail)
    try:
        got: Any = codec._decode_single_object(record)[1]  # type: ignore[attr-defined]
    except DecodeError as exc:
        got = (exc.reason, exc.detail)
    assert got == expected


def test_read_long_reads_the_extremes_and_refuses_an_endless_varint() -> None:
    for value in (0, -1, 1, 63, -64, 64, 2**31, -(2**63), 2**63 - 1):
        buf = io.BytesIO()
        schemaless_writer(buf, parse_schema("long"), value)
        assert read_long(buf.getvalue(), 0) == (value, len(buf.getvalue()))
    with pytest.raises(DirectReadError):
        read_long(b"\xff" * 11, 0)


@given(value=LONGS)
def test_encode_long_writes_fastavros_varint(value: int) -> None:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema("long"), value)
    assert avro_direct.encode_long(value) == buf.getvalue()
    assert read_long(avro_direct.encode_long(value), 0) == (value, len(buf.getvalue()))


def test_encode_long_at_every_varint_length_and_past_the_range() -> None:
    for bits in range(64):
        for value in (1 << bits, (1 << bits) - 1, -(1 << bits), -(1 << bits) - 1):
            if -(2**63) <= value <= 2**63 - 1:
                buf = io.BytesIO()
                schemaless_writer(buf, parse_schema("long"), value)
                assert avro_direct.encode_long(value) == buf.getvalue(), value
    for value in (2**63, -(2**63) - 1):
        with pytest.raises(OverflowError):
            avro_direct.encode_long(value)


def _one_field(field_type: Any) -> dict[str, Any]:
    return {"type": "record", "name": "R", "fields": [{"name": "f", "type": field_type}]}


@pytest.mark.parametrize(
    "schema",
    [
        _one_field({"type": "enum", "name": "K", "symbols": ["a"]}),
        _one_field({"type": "map", "values": "string"}),
        _one_field(["string", "null"]),
        _one_field("double"),
        _one_field({"type": "long", "logicalType": "timestamp-millis"}),
        "string",
    ],
)
def test_a_schema_outside_the_covered_subset_is_declined(schema: Any) -> None:
    assert compile_reader(parse_schema(schema, named_schemas={})) is None


# --- alerts -------------------------------------------------------------------------


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    evidence = tuple(
        Evidence(draw(SHORT), draw(SHORT), draw(LONGS))
        for _ in range(draw(st.integers(min_value=0, max_value=70)))
    )
    recommendation = draw(st.none() | st.builds(Recommendation, st.none() | TEXT, TEXT))
    return Alert(
        alert_id=draw(SHORT),
        rule=draw(SHORT),
        status=draw(st.sampled_from(["firing", "retracted"])),
        severity=draw(st.sampled_from(["info", "low", "medium", "high", "critical"])),
        service=draw(TEXT),
        environment=draw(SHORT),
        release=draw(TEXT),
        trigger=draw(SHORT),
        occurred_at_ms=draw(LONGS),
        summary=draw(st.text(max_size=5000)),
        notify=tuple(draw(st.lists(SHORT, max_size=3))),
        evidence=evidence,
        recommendation=recommendation,
        detected_at_ms=draw(LONGS),
        release_aliases=tuple(draw(st.lists(SHORT, max_size=70))),
        evidence_count=draw(st.integers(min_value=0, max_value=2**40)),
    )


def test_the_current_alert_schema_has_the_writers_layout() -> None:
    assert alert_layout_matches(current_schema("alert").writer)
    changed = dict(load_schema("alert"))
    changed["fields"] = [*changed["fields"], {"name": "extra", "type": "string", "default": ""}]
    assert not alert_layout_matches(parse_schema(changed, named_schemas={}))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(alert=alerts())
def test_alert_writer_writes_fastavros_bytes(alert: Alert) -> None:
    known = current_schema("alert")
    expected = write_datum(known, alert_value_to_datum(alert), known.header)
    assert alert_writer(alert, known.header) == expected
    assert make_codec().encode_alert_value(alert) == expected


@pytest.mark.parametrize(
    "alert",
    [
        make_alert().replace(summary="lone \udc80 surrogate"),
        make_alert().replace(occurred_at_ms=2**63),
        make_alert().replace(detected_at_ms=-(2**63) - 1),
    ],
)
def test_what_the_alert_writer_cannot_write_is_refused_as_fastavro_refuses_it(
    alert: Alert,
) -> None:
    known = current_schema("alert")
    with pytest.raises(ValidationError) as through_fastavro:
        write_datum(known, alert_value_to_datum(alert), known.header)
    with pytest.raises(ValidationError) as through_codec:
        make_codec().encode_alert_value(alert)
    assert (through_codec.value.field, str(through_codec.value)) == (
        through_fastavro.value.field,
        str(through_fastavro.value),
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(alert=alerts())
def test_direct_reader_reads_alerts_as_fastavro_does(alert: Alert) -> None:
    known = current_schema("alert")
    raw = alert_writer(alert, b"")
    reader = compile_reader(known.writer)
    assert reader is not None
    direct = reader(raw, 0)
    assert direct == fastavro_datum("alert", raw)
    assert list(direct) == list(fastavro_datum("alert", raw))


@settings(max_examples=150)
@given(
    key=st.none() | st.binary(max_size=300),
    value=st.none() | st.binary(max_size=3000),
    detail=TEXT,
    offset=LONGS,
)
def test_direct_reader_reads_dead_letters_as_fastavro_does(
    key: bytes | None, value: bytes | None, detail: str, offset: int
) -> None:
    datum = {
        "reason": "validation",
        "detail": detail,
        "topic": "relsec.deploys",
        "partition": 3,
        "offset": offset,
        "key": key,
        "value": value,
        "detected_at": 1_777_595_867_000,
    }
    raw = fastavro_bytes("dead_letter", datum)
    reader = compile_reader(current_schema("dead_letter").writer)
    assert reader is not None
    assert reader(raw, 0) == fastavro_datum("dead_letter", raw)
