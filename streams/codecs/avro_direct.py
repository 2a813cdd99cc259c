"""Avro binary without fastavro's per-call interpretation, for the worker's hot records.

fastavro walks the parsed schema for every datum: about 20 µs to read an input event
and 34 µs to write an alert (docs/performance.md §21), more than the engine spends on
the event. This module does the same work as straight-line code:

* :func:`compile_reader` turns a writer schema into a Python function (generated
  source, compiled once per schema) that reads one datum from ``raw[start:]``. It
  covers what relsec's schemas use (records, ``string``, ``bytes``, ``long``,
  ``int``, ``boolean``, arrays, ``["null", X]`` unions) and returns ``None`` for a
  schema using anything else. It does **not** word errors: any problem (truncated,
  bad UTF-8, a bad union index, bytes left over) raises :class:`DirectReadError` or
  a built-in exception, and the caller reads the record again with fastavro, which
  words the error (``streams.codecs.single_object``). A datum it returns equals
  fastavro's, key order included (property tests hold the two together).
* :func:`alert_writer` writes an :class:`~agents.model.alerts.Alert` value as the
  current alert schema's datum, the bytes fastavro writes for
  ``alert_value_to_datum(alert)``; it is only used when the schema's layout is the
  one it was written for (:func:`alert_layout_matches`), and any value it cannot
  write (a number out of range, text that is not valid Unicode) is left to fastavro.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Final

from agents.model.alerts import Alert

DirectReader = Callable[[bytes, int], dict[str, Any]]
"""``(raw, start)`` -> the datum at ``raw[start:]``, which must end exactly at the end."""


class DirectReadError(ValueError):
    """The direct reader could not read a record (the caller falls back to fastavro)."""


# --- reading ------------------------------------------------------------------------


def read_long(raw: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``raw[pos]``: (value, position after it). A varint that does
    not fit 64 bits is refused (fastavro reads those its own way: the fallback does)."""
    shift = 0
    accumulated = 0
    while True:
        byte = raw[pos]
        pos += 1
        accumulated |= (byte & 0x7F) << shift
        if byte < 0x80:
            if shift == 63 and byte > 1:
                raise DirectReadError("varint does not fit 64 bits")
            return (accumulated >> 1) ^ -(accumulated & 1), pos
        shift += 7
        if shift > 63:
            raise DirectReadError("varint longer than 10 bytes")


_INT_STEMS: Final = frozenset({"n", "branch", "count", "size", "flag"})
"""Stems of the generated locals that hold integers (the rest hold values: ``Any``)."""


class _Source:
    """Generated source, with fresh local names, each declared with its type (the
    declarations are what mypyc compiles the prebuilt readers by; executed, they are
    annotations of locals, never evaluated)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.declared: list[str] = []
        self._names = 0

    def name(self, stem: str) -> str:
        self._names += 1
        local = f"{stem}{self._names}"
        self.declared.append(f"{local}: {'int' if stem in _INT_STEMS else 'Any'}")
        return local

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _emit_long(src: _Source, depth: int, target: str) -> None:
    # One byte covers -64..63 (lengths, counts, union indexes); longer goes to read_long.
    src.emit(depth, "b = raw[pos]")
    src.emit(depth, "if b < 128:")
    src.emit(depth + 1, f"{target} = (b >> 1) ^ -(b & 1)")
    src.emit(depth + 1, "pos += 1")
    src.emit(depth, "else:")
    src.emit(depth + 1, f"{target}, pos = read_long(raw, pos)")


def _emit_bytes(src: _Source, depth: int, target: str, text: bool) -> None:
    size = src.name("n")
    _emit_long(src, depth, size)
    src.emit(depth, f"if {size} < 0 or pos + {size} > end:")
    src.emit(depth + 1, "raise DirectReadError('length out of range')")
    value = f"raw[pos:pos + {size}]"
    src.emit(depth, f"{target} = {value}.decode('utf-8')" if text else f"{target} = {value}")
    src.emit(depth, f"pos += {size}")


def _emit_value(src: _Source, depth: int, schema: Any, target: str) -> bool:
    """Emit the reading of one value of ``schema`` into ``target``; False if unsupported."""
    if isinstance(schema, str):
        schema = {"type": schema}
    if isinstance(schema, list):
        return _emit_nullable(src, depth, schema, target)
    if not isinstance(schema, dict) or schema.get("logicalType") is not None:
        return False
    kind = schema.get("type")
    if kind in ("string", "bytes"):
        _emit_bytes(src, depth, target, text=kind == "string")
        return True
    if kind in ("long", "int"):
        _emit_long(src, depth, target)
        return True
    if kind == "boolean":
        flag = src.name("flag")
        src.emit(depth, f"{flag} = raw[pos]")
        src.emit(depth, "pos += 1")
        src.emit(depth, f"if {flag} > 1:")
        src.emit(depth + 1, "raise DirectReadError('boolean byte is neither 0 nor 1')")
        src.emit(depth, f"{target} = {flag} == 1")
        return True
    if kind == "array":
        return _emit_array(src, depth, schema["items"], target)
    if kind == "record":
        return _emit_record(src, depth, schema, target)
    return False


def _emit_nullable(src: _Source, depth: int, branches: list[Any], target: str) -> bool:
    if len(branches) != 2 or branches[0] != "null":
        return False
    index = src.name("branch")
    _emit_long(src, depth, index)
    src.emit(depth, f"if {index} == 0:")
    src.emit(depth + 1, f"{target} = None")
    src.emit(depth, f"elif {index} == 1:")
    if not _emit_value(src, depth + 1, branches[1], target):
        return False
    src.emit(depth, "else:")
    src.emit(depth + 1, "raise DirectReadError('union index out of range')")
    return True


def _emit_array(src: _Source, depth: int, items: Any, target: str) -> bool:
    count, size, item = src.name("count"), src.name("size"), src.name("item")
    src.emit(depth, f"{target} = []")
    src.emit(depth, "while True:")
    _emit_long(src, depth + 1, count)
    src.emit(depth + 1, f"if {count} == 0:")
    src.emit(depth + 2, "break")
    src.emit(depth + 1, f"if {count} < 0:")  # a block that also gives its size in bytes
    src.emit(depth + 2, f"{count} = -{count}")
    src.emit(depth + 2, f"{size}, pos = read_long(raw, pos)")
    src.emit(depth + 1, f"for _ in range({count}):")
    if not _emit_value(src, depth + 2, items, item):
        return False
    src.emit(depth + 2, f"{target}.append({item})")
    return True


def _emit_record(src: _Source, depth: int, schema: dict[str, Any], target: str) -> bool:
    fields = schema.get("fields")
    if not isinstance(fields, list):
        return False
    values = []
    for field in fields:
        local = src.name("v")
        if not _emit_value(src, depth, field["type"], local):
            return False
        values.append(f"{field['name']!r}: {local}")
    src.emit(depth, f"{target} = {{{', '.join(values)}}}")
    return True


def reader_body(schema: Any) -> list[str] | None:
    """The body of the direct reader of the (fastavro-parsed or plain) record ``schema``,
    its locals declared first, or None when the schema uses something this module does
    not read."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    src = _Source()
    if not _emit_record(src, 1, schema, "datum"):
        return None
    src.emit(1, "if pos != end:")
    src.emit(2, "raise DirectReadError('bytes left over')")
    src.emit(1, "return datum")
    head = ["pos: int = start", "end: int = len(raw)", "b: int", "datum: dict[str, Any]"]
    return ["    " + line for line in head + src.declared] + src.lines


def body_digest(body: list[str]) -> str:
    """The key a prebuilt reader is found by: a hash of its generated body."""
    return hashlib.sha256("\n".join(body).encode("utf-8")).hexdigest()[:32]


def compile_reader(schema: Any) -> DirectReader | None:
    """The direct reader of the (fastavro-parsed or plain) record ``schema``, or None when
    the schema uses something this module does not read (then fastavro reads it).

    The readers of relsec's current schemas are prebuilt in
    :mod:`streams.codecs.avro_readers` (compiled with the codec); a reader is taken from
    there when its generated body is the one prebuilt, else the body is compiled here."""
    body = reader_body(schema)
    if body is None:
        return None
    from streams.codecs.avro_readers import PREBUILT

    prebuilt = PREBUILT.get(body_digest(body))
    if prebuilt is not None:
        return prebuilt
    source = "\n".join(["def read(raw, start):", *body])
    namespace: dict[str, Any] = {"read_long": read_long, "DirectReadError": DirectReadError}
    exec(compile(source, f"<avro_direct {schema.get('name')}>", "exec"), namespace)
    reader: DirectReader = namespace["read"]
    return reader


PREBUILT_MODULE: Final = "streams/codecs/avro_readers.py"


def prebuilt_source() -> str:
    """The text of :data:`PREBUILT_MODULE`: the direct readers of the current version of
    every schema (``python -m streams.codecs.avro_direct`` writes it; a test fails when
    the file and this differ)."""
    from fastavro import parse_schema

    from schemas import SCHEMA_NAMES, load_schema

    out = [
        '"""Direct Avro readers of the current version of each of relsec\'s schemas.',
        "",
        "Generated by :func:`streams.codecs.avro_direct.prebuilt_source` (``python -m",
        "streams.codecs.avro_direct`` writes this file; do not edit it): the functions",
        ":func:`~streams.codecs.avro_direct.compile_reader` would build, here so that mypyc",
        "compiles them with the codec. ``PREBUILT`` maps each one's body digest to it.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any, Final",
        "",
        "from streams.codecs.avro_direct import DirectReader, DirectReadError, read_long",
    ]
    table = []
    for name in SCHEMA_NAMES:
        body = reader_body(parse_schema(load_schema(name), named_schemas={}))
        if body is None:
            continue
        out += ["", "", f"def read_{name}(raw: bytes, start: int) -> dict[str, Any]:", *body]
        table.append(f"    {body_digest(body)!r}: read_{name},")
    out += ["", "", "PREBUILT: Final[dict[str, DirectReader]] = {", *table, "}", ""]
    return "\n".join(out)


if __name__ == "__main__":
    from pathlib import Path

    Path(__file__).resolve().parents[2].joinpath(PREBUILT_MODULE).write_text(
        prebuilt_source(), encoding="utf-8"
    )


# --- writing ------------------------------------------------------------------------


def _encode_long(value: int) -> bytes:
    sign = value >> 63  # 0 or -1 exactly when -2**63 <= value < 2**63, without a big int
    if sign != 0 and sign != -1:
        raise OverflowError(f"{value} does not fit an Avro long")
    zigzag = (value << 1) ^ sign
    # The varint's bytes gathered in one integer, little-endian, then written at once:
    # compiled, appending to a bytearray costs four times as much (a call per byte).
    gathered = 0
    shift = 0
    size = 1
    while zigzag > 0x7F:
        gathered |= ((zigzag & 0x7F) | 0x80) << shift
        shift += 8
        size += 1
        zigzag >>= 7
    return (gathered | zigzag << shift).to_bytes(size, "little")


_SMALL: Final = tuple(_encode_long(n) for n in range(4096))
"""Encoded 0..4095: lengths and counts without a call."""


def encode_long(value: int) -> bytes:
    """``value`` as an Avro ``long`` (zig-zag varint)."""
    if 0 <= value < 4096:
        return _SMALL[value]
    return _encode_long(value)


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    size = len(data)
    return (_SMALL[size] if size < 4096 else _encode_long(size)) + data


def _texts(values: tuple[str, ...]) -> bytes:
    if not values:
        return b"\x00"
    return encode_long(len(values)) + b"".join([_text(v) for v in values]) + b"\x00"


ALERT_LAYOUT: Final = (
    ("alert_id", "string"),
    ("rule", "string"),
    ("status", "string"),
    ("severity", "string"),
    ("service", "string"),
    ("environment", "string"),
    ("release", "string"),
    ("trigger", "string"),
    ("occurred_at", "long"),
    ("detected_at", "long"),
    ("summary", "string"),
    ("notify", ("array", "string")),
    ("evidence", ("array", (("event_id", "string"), ("type", "string"), ("occurred_at", "long")))),
    ("recommendation", ("null", (("release", ("null", "string")), ("text", "string")))),
    ("release_aliases", ("array", "string")),
    ("evidence_count", "int"),
)
"""The alert schema :func:`alert_writer` writes, as (field, shape) in order."""


def _shape(schema: Any) -> Any:
    """A schema's shape in :data:`ALERT_LAYOUT`'s terms (records as their field shapes)."""
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return tuple(_shape(branch) for branch in schema)
    kind = schema.get("type")
    if kind == "array":
        return ("array", _shape(schema["items"]))
    if kind == "record":
        return tuple((f["name"], _shape(f["type"])) for f in schema["fields"])
    if schema.get("logicalType") is None and isinstance(kind, str):
        return kind
    return schema


def alert_layout_matches(schema: Any) -> bool:
    """Is ``schema`` (the current alert schema) laid out as :func:`alert_writer` writes?"""
    return bool(_shape(schema) == ALERT_LAYOUT)


def alert_writer(alert: Alert, prefix: bytes) -> bytes:
    """``prefix`` + the Avro datum of ``alert`` in the :data:`ALERT_LAYOUT` schema: the
    bytes ``fastavro.schemaless_writer`` writes for ``alert_value_to_datum(alert)``.
    Raises (OverflowError, UnicodeEncodeError) on what it cannot write; the caller
    then lets fastavro write or refuse it."""
    evidence = alert.evidence
    count = alert.evidence_count if alert.evidence_count > len(evidence) else 0
    # ``int`` is written as fastavro writes it: a varint, unchecked against 32 bits.
    parts = [
        prefix,
        _text(alert.alert_id),
        _text(alert.rule),
        _text(alert.status),
        _text(alert.severity),
        _text(alert.service),
        _text(alert.environment),
        _text(alert.release),
        _text(alert.trigger),
        _encode_long(alert.occurred_at_ms),
        _encode_long(alert.detected_at_ms),
        _text(alert.summary),
        _texts(alert.notify),
    ]
    if evidence:
        parts.append(encode_long(len(evidence)))
        for e in evidence:
            parts.append(_text(e.event_id))
            parts.append(_text(e.type))
            parts.append(_encode_long(e.occurred_at_ms))
    parts.append(b"\x00")
    rec = alert.recommendation
    if rec is None:
        parts.append(b"\x00")
    else:
        parts.append(b"\x02\x00" if rec.release is None else b"\x02\x02" + _text(rec.release))
        parts.append(_text(rec.text))
    parts.append(_texts(alert.release_aliases))
    parts.append(encode_long(count))
    return b"".join(parts)
