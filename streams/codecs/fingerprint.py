"""CRC-64-AVRO (Rabin) fingerprints of Avro schemas, as the Avro specification defines them.

The fingerprint is computed over the schema's Parsing Canonical Form (PCF,
which drops ``doc``, ``default``, ``logicalType`` and other attributes that do
not change the binary encoding) and written little-endian in the 10-byte
header of Avro single-object encoding.
"""

from __future__ import annotations

import json
from typing import Any, Final

from fastavro.schema import to_parsing_canonical_form

#: The empty fingerprint of the specification (``EMPTY``), also the polynomial seed.
CRC64_AVRO_EMPTY: Final = 0xC15D213AA4D7A795


def _table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (CRC64_AVRO_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE: Final = _table()


def crc64_avro(data: bytes) -> int:
    """The 64-bit Rabin fingerprint of ``data`` (the specification's algorithm)."""
    fp = CRC64_AVRO_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def canonical_form(schema: dict[str, Any] | str) -> str:
    """The Parsing Canonical Form of a schema given as JSON object or as JSON text."""
    if isinstance(schema, str):
        schema = json.loads(schema)
    return str(to_parsing_canonical_form(schema))


def schema_fingerprint(schema: dict[str, Any] | str) -> bytes:
    """The 8 little-endian bytes of the CRC-64-AVRO fingerprint of the schema's PCF."""
    return crc64_avro(canonical_form(schema).encode("utf-8")).to_bytes(8, "little")
