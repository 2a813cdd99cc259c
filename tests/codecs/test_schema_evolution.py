"""The schemas themselves: documented, named as SPEC §1, and compatible with every kept version.

Evolution rule (docs/schemas.md): a new field is optional with a default, no
field changes type, none is removed or renamed. Each current schema must be
backward compatible with every older version kept in ``schemas/previous/`` (the
new reader reads data of any old writer) and forward compatible (each old
reader reads data of the new writer). A version may add several fields.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse
from codec_samples import EVENTS, make_alert, make_dead_letter
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from agents.model.events import event_to_dict, parse_event
from schemas import (
    CURRENT_VERSIONS,
    EVENT_SCHEMAS,
    KEPT_VERSIONS,
    SCHEMA_NAMES,
    load_schema,
    schema_text,
)
from streams.codecs import SingleObjectCodec
from streams.codecs.datum import alert_to_datum, dead_letter_to_datum, event_to_datum
from streams.codecs.fingerprint import schema_fingerprint

_FULL_EVENTS = {"deploy": "deploy_full", "incident": "incident_full", "security_flag": "flag_full"}


def _datum(name: str) -> dict[str, Any]:
    """A datum of schema ``name`` with every optional field set."""
    if name in EVENT_SCHEMAS:
        return event_to_datum(name, EVENTS[_FULL_EVENTS[name]])
    if name == "alert":
        return alert_to_datum(make_alert().to_dict())
    return dead_letter_to_datum(make_dead_letter())


def _write(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema, named_schemas={}), datum)
    return buf.getvalue()


def _read(raw: bytes, writer: dict[str, Any], reader: dict[str, Any]) -> Any:
    return schemaless_reader(
        io.BytesIO(raw),
        parse_schema(writer, named_schemas={}),
        parse_schema(reader, named_schemas={}),
    )


def _compatible(reader: str, writer: str) -> Any:
    return ReaderWriterCompatibilityChecker().get_compatibility(
        avro_parse(reader), avro_parse(writer)
    )


#: Every (schema, kept older version) pair.
OLDER = [(name, version) for name in SCHEMA_NAMES for version in KEPT_VERSIONS[name]]


def _ids(pair: tuple[str, int]) -> str:
    return f"{pair[0]}-v{pair[1]}"


def _added(name: str, version: int) -> dict[str, dict[str, Any]]:
    """The fields of the current schema that version ``version`` lacks, by name."""
    old = {f["name"] for f in load_schema(name, version=version)["fields"]}
    return {f["name"]: f for f in load_schema(name)["fields"] if f["name"] not in old}


def test_every_schema_keeps_every_older_version() -> None:
    for name in SCHEMA_NAMES:
        assert KEPT_VERSIONS[name] == tuple(range(CURRENT_VERSIONS[name])), name
        for version in KEPT_VERSIONS[name]:
            assert load_schema(name, version=version)["name"] == load_schema(name)["name"]
    # this release added release_aliases (events, alerts) and evidence_count (alerts)
    for name in EVENT_SCHEMAS:
        assert set(_added(name, CURRENT_VERSIONS[name] - 1)) == {"release_aliases"}
    assert set(_added("alert", CURRENT_VERSIONS["alert"] - 1)) == {
        "release_aliases",
        "evidence_count",
    }


@pytest.mark.parametrize("pair", OLDER, ids=_ids)
def test_backward_compatible_new_reader_reads_old_data(pair: tuple[str, int]) -> None:
    name, version = pair
    old, new = load_schema(name, version=version), load_schema(name)
    added = _added(name, version)
    assert added, "an older version lacks at least one field of the current one"
    datum = _datum(name)
    record = _read(_write(old, datum), old, new)
    for field in new["fields"]:
        expected = added[field["name"]]["default"] if field["name"] in added else datum[
            field["name"]
        ]
        assert record[field["name"]] == expected, field["name"]
    result = _compatible(schema_text(name), schema_text(name, version=version))
    assert result.compatibility is SchemaCompatibilityType.compatible, result.messages


@pytest.mark.parametrize("pair", OLDER, ids=_ids)
def test_forward_compatible_old_reader_reads_new_data(pair: tuple[str, int]) -> None:
    name, version = pair
    old, new = load_schema(name, version=version), load_schema(name)
    datum = _datum(name)
    record = _read(_write(new, datum), new, old)
    assert record == {f["name"]: datum[f["name"]] for f in old["fields"]}
    result = _compatible(schema_text(name, version=version), schema_text(name))
    assert result.compatibility is SchemaCompatibilityType.compatible, result.messages


@pytest.mark.parametrize("pair", OLDER, ids=_ids)
def test_structural_evolution_rule(pair: tuple[str, int]) -> None:
    """Fields only added, each with a default; kept fields unchanged in type and order."""
    name, version = pair
    old = {f["name"]: f for f in load_schema(name, version=version)["fields"]}
    new = {f["name"]: f for f in load_schema(name)["fields"]}
    assert old.keys() <= new.keys(), f"removed: {old.keys() - new.keys()}"
    for field_name, field in new.items():
        if field_name in old:
            assert field["type"] == old[field_name]["type"], field_name
        else:
            assert "default" in field, f"new field {field_name} has no default"
    kept = [n for n in new if n in old]
    assert kept == list(old), "kept fields keep their order"
    assert schema_fingerprint(load_schema(name)) != schema_fingerprint(
        load_schema(name, version=version)
    )


def test_the_checker_does_catch_an_incompatible_change() -> None:
    """Guard against a vacuous check: a required field added without default is refused."""
    old = load_schema("incident", previous=True)
    new = load_schema("incident")
    new["fields"].append({"name": "pager", "type": "string"})
    result = _compatible(json.dumps(new), json.dumps(old))
    assert result.compatibility is SchemaCompatibilityType.incompatible


@pytest.mark.parametrize("pair", OLDER, ids=_ids)
def test_codec_reads_every_kept_version_single_object_records(pair: tuple[str, int]) -> None:
    """Records written by an older schema decode as the current one, new fields at their
    defaults (and, as the JSON forms do, an empty alias list or an evidence count that says
    nothing beyond ``evidence`` left out)."""
    name, version = pair
    codec = SingleObjectCodec()
    old = load_schema(name, version=version)
    datum = _datum(name)
    raw = b"\xc3\x01" + schema_fingerprint(old) + _write(old, datum)
    decode = {
        "alert": codec.decode_alert,
        "dead_letter": codec.decode_dead_letter,
    }.get(name, codec.decode_event)
    decoded = decode(raw)
    current = load_schema(name)
    defaulted = dict(datum)
    for field_name, field in _added(name, version).items():
        defaulted[field_name] = field["default"]
    expected = decode(b"\xc3\x01" + schema_fingerprint(current) + _write(current, defaulted))
    assert decoded == expected
    assert "release_aliases" not in decoded  # the new field, at its default, is not written
    if name in EVENT_SCHEMAS:
        parse_event(decoded, expected_type=name)  # valid as the current version
    if name == "alert":
        assert "evidence_count" not in decoded


@pytest.mark.parametrize("name", EVENT_SCHEMAS)
def test_release_aliases_survive_the_current_schema(name: str) -> None:
    codec = SingleObjectCodec()
    event = EVENTS[_FULL_EVENTS[name]]
    decoded = codec.decode_event(codec.encode_event(event), name)
    assert decoded["release_aliases"] == event["release_aliases"]
    assert parse_event(decoded).release_aliases == tuple(event["release_aliases"])


def test_alert_aliases_and_evidence_count_survive_both_alert_encoders() -> None:
    from agents.model.alerts import Alert

    codec = SingleObjectCodec()
    alert = make_alert()
    assert alert.evidence_count > len(alert.evidence) and alert.release_aliases
    for raw in (codec.encode_alert(alert.to_dict()), codec.encode_alert_value(alert)):
        decoded = codec.decode_alert(raw)
        assert decoded == alert.to_dict()
        assert Alert.from_dict(decoded) == alert


@pytest.mark.parametrize(
    "name", SCHEMA_NAMES + tuple(f"{n}:{v}" for n, v in OLDER)
)
def test_every_record_and_field_has_a_doc(name: str) -> None:
    base, _, version = name.partition(":")
    schema = load_schema(base, version=int(version) if version else None)
    assert schema["namespace"] == "io.relsec.v1"

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, where)
        elif isinstance(node, dict):
            if node.get("type") == "record":
                assert node.get("doc"), f"record {where}.{node['name']} has no doc"
                for field in node["fields"]:
                    assert field.get("doc"), f"field {where}.{node['name']}.{field['name']}"
                    walk(field["type"], f"{where}.{node['name']}.{field['name']}")
            elif node.get("type") == "array":
                walk(node["items"], where)

    walk(schema, "")


@pytest.mark.parametrize("kind", EVENT_SCHEMAS)
def test_event_field_names_are_the_spec_json_names(kind: str) -> None:
    sample = next(e for e in EVENTS.values() if e["type"] == kind)
    json_names = set(event_to_dict(parse_event(sample))) - {"type"}
    assert {f["name"] for f in load_schema(kind)["fields"]} == json_names


def test_alert_field_names_are_alert_to_dict_names() -> None:
    d = make_alert().to_dict()
    schema = load_schema("alert")
    assert [f["name"] for f in schema["fields"]] == list(d)
    evidence = next(f for f in schema["fields"] if f["name"] == "evidence")
    assert [f["name"] for f in evidence["type"]["items"]["fields"]] == list(d["evidence"][0])


def test_dead_letter_field_names_are_the_interface_names() -> None:
    assert [f["name"] for f in load_schema("dead_letter")["fields"]] == list(make_dead_letter())
