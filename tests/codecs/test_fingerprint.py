"""Our CRC-64-AVRO fingerprints agree with fastavro's and the ``avro`` package's."""

from __future__ import annotations

import pytest
from avro.schema import parse as avro_parse
from fastavro.schema import fingerprint as fastavro_fingerprint

from schemas import KEPT_VERSIONS, SCHEMA_NAMES, load_schema, schema_text
from streams.codecs.fingerprint import (
    CRC64_AVRO_EMPTY,
    canonical_form,
    crc64_avro,
    schema_fingerprint,
)
from streams.codecs.single_object import known_schemas

#: Every schema version relsec reads: (name, None) for the current one, (name, N) for kept ones.
ALL: list[tuple[str, int | None]] = [(n, None) for n in SCHEMA_NAMES] + [
    (n, v) for n in SCHEMA_NAMES for v in KEPT_VERSIONS[n]
]


def test_empty_input_gives_the_specs_empty_value() -> None:
    assert crc64_avro(b"") == CRC64_AVRO_EMPTY


@pytest.mark.parametrize(
    "schema",
    ['"int"', '"string"', '{"type": "array", "items": "long"}', '["null", "bytes"]'],
)
def test_small_schemas_agree_with_both_libraries(schema: str) -> None:
    ours = schema_fingerprint(schema)
    assert ours.hex() == fastavro_fingerprint(canonical_form(schema), "CRC-64-AVRO")
    assert ours == avro_parse(schema).fingerprint("CRC-64-AVRO")


@pytest.mark.parametrize(("name", "version"), ALL)
def test_relsec_schemas_agree_with_both_libraries(name: str, version: int | None) -> None:
    schema = load_schema(name, version=version)
    pcf = canonical_form(schema)
    parsed = avro_parse(schema_text(name, version=version))
    assert pcf == parsed.canonical_form  # both libraries give the same canonical form
    ours = schema_fingerprint(schema)
    assert len(ours) == 8
    assert ours.hex() == fastavro_fingerprint(pcf, "CRC-64-AVRO")
    assert ours == parsed.fingerprint("CRC-64-AVRO")


def test_fingerprints_are_distinct_and_the_codec_knows_them_all() -> None:
    prints = {schema_fingerprint(load_schema(n, version=v)) for n, v in ALL}
    assert len(prints) == len(ALL)
    assert {s.fingerprint for s in known_schemas()} == prints


def test_docs_and_defaults_do_not_change_the_fingerprint() -> None:
    schema = load_schema("deploy")
    stripped = {**schema, "doc": "other"}
    stripped["fields"] = [{k: v for k, v in f.items() if k != "doc"} for f in schema["fields"]]
    assert schema_fingerprint(stripped) == schema_fingerprint(schema)


def test_the_fingerprint_table_in_the_docs_is_current() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "schemas.md").read_text("utf-8")
    for name in SCHEMA_NAMES:
        current = schema_fingerprint(load_schema(name))
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"`{current.hex()}`" in row
        assert f"`{int.from_bytes(current, 'little'):#018x}`" in row
        for version in KEPT_VERSIONS[name]:
            older = schema_fingerprint(load_schema(name, version=version))
            assert f"v{version} `{older.hex()}`" in row
