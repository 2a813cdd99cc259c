"""relsec's default codec: Avro single-object encoding, with JSON accepted on input.

A record is ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's Parsing Canonical Form, then the Avro binary datum. Readers
know the fingerprints of the current and every kept older version of every
schema (``schemas.KEPT_VERSIONS``) and resolve old-writer data to the current
one. Input is told apart by its first byte: ``C3`` single-object Avro, ``00``
Confluent wire format (only with a schema registry, see
:mod:`streams.codecs.confluent`), ``{`` (or JSON whitespace) JSON. Every
failure is a :class:`DecodeError` with one of the reasons in
:data:`DECODE_REASONS`; no fastavro or orjson exception escapes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError as FastavroValidationError
from fastavro.validation import validate

from agents.errors import DecodeError, ValidationError
from agents.model.alerts import Alert
from schemas import CURRENT_VERSIONS, EVENT_SCHEMAS, KEPT_VERSIONS, SCHEMA_NAMES, load_schema
from streams.codecs.avro_direct import (
    DirectReader,
    alert_layout_matches,
    alert_writer,
    compile_reader,
)
from streams.codecs.datum import (
    FROM_DATUM,
    alert_to_datum,
    alert_value_to_datum,
    dead_letter_to_datum,
    event_to_datum,
)
from streams.codecs.fingerprint import schema_fingerprint

SINGLE_OBJECT_MARKER: Final = b"\xc3\x01"
CONFLUENT_MAGIC: Final = 0x00
HEADER_BYTES: Final = 10  # marker (2) + fingerprint (8)

UNDECODABLE: Final = "undecodable"
UNKNOWN_SCHEMA: Final = "unknown_schema"
INVALID_JSON: Final = "invalid_json"
AVRO_ERROR: Final = "avro_error"
DECODE_REASONS: Final = (UNDECODABLE, UNKNOWN_SCHEMA, INVALID_JSON, AVRO_ERROR)

_JSON_FIRST_BYTES: Final = frozenset(b"{[ \t\r\n")


@dataclass(frozen=True, slots=True)
class KnownSchema:
    """One schema version relsec reads: its parsed writer form and the reader to resolve to."""

    name: str  # deploy, incident, security_flag, alert, dead_letter
    version: int
    fullname: str
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO
    writer: Any  # fastavro-parsed schema
    reader: Any  # the current version's parsed schema, or None when this *is* current
    origin: str = ""  # where the writer schema came from, for messages ("registry id 7")

    @property
    def label(self) -> str:
        return f"{self.fullname} {self.origin or f'v{self.version}'}"

    @property
    def header(self) -> bytes:
        return SINGLE_OBJECT_MARKER + self.fingerprint


def parse_avro(schema: dict[str, Any]) -> Any:
    # A fresh name table per parse: the current and previous versions share record names.
    return parse_schema(schema, named_schemas={})


@cache
def known_schemas() -> tuple[KnownSchema, ...]:
    """The current and every kept older version of every schema, parsed once per process."""
    out = []
    for name in SCHEMA_NAMES:
        current = load_schema(name)
        fullname = f"{current['namespace']}.{current['name']}"
        current_parsed = parse_avro(current)
        out.append(
            KnownSchema(
                name,
                CURRENT_VERSIONS[name],
                fullname,
                schema_fingerprint(current),
                current_parsed,
                None,
            )
        )
        for version in reversed(KEPT_VERSIONS[name]):
            older = load_schema(name, version=version)
            out.append(
                KnownSchema(
                    name,
                    version,
                    fullname,
                    schema_fingerprint(older),
                    parse_avro(older),
                    current_parsed,
                )
            )
    return tuple(out)


def current_schema(name: str) -> KnownSchema:
    """The current version of schema ``name``."""
    for s in known_schemas():
        if s.name == name and s.reader is None:
            return s
    raise KeyError(name)


def _what(raw: bytes) -> str:
    return f"{len(raw)}-byte record"


_DIRECT_READERS: dict[bytes, DirectReader | None] = {}
"""Direct readers by writer fingerprint (one canonical form, one reader)."""


def _direct_reader(known: KnownSchema) -> DirectReader | None:
    if known.reader is not None:
        return None  # an older writer's datum needs schema resolution: fastavro
    try:
        return _DIRECT_READERS[known.fingerprint]
    except KeyError:
        reader = _DIRECT_READERS[known.fingerprint] = compile_reader(known.writer)
        return reader


def read_datum(raw: bytes, start: int, known: KnownSchema) -> dict[str, Any]:
    """Read one datum of ``known``'s writer schema from ``raw[start:]``, resolved to current.

    A current-version datum is read by its direct reader (:mod:`streams.codecs.avro_direct`,
    the same datum, faster); anything that reader cannot read is read again by fastavro,
    which says what is wrong with it.
    """
    direct = _direct_reader(known)
    if direct is not None:
        try:
            return direct(raw, start)
        except Exception:  # fastavro reads it again and words the error
            pass
    return _read_datum_fastavro(raw, start, known)


def _read_datum_fastavro(raw: bytes, start: int, known: KnownSchema) -> dict[str, Any]:
    """:func:`read_datum` by fastavro: any writer version, every error worded."""
    buf = io.BytesIO(raw)
    buf.seek(start)
    try:
        datum = schemaless_reader(buf, known.writer, known.reader)
    except EOFError:
        raise DecodeError(
            AVRO_ERROR,
            f"{_what(raw)} is truncated: it ends inside the {known.label} datum",
        ) from None
    except Exception as exc:  # fastavro raises StructError, UnicodeDecodeError, ValueError, ...
        raise DecodeError(
            AVRO_ERROR,
            f"{_what(raw)} does not decode as {known.label}: "
            f"{type(exc).__name__}: {exc}",
        ) from None
    left = len(raw) - buf.tell()
    if left:
        raise DecodeError(
            AVRO_ERROR,
            f"{_what(raw)}: {left} byte(s) left over after the {known.label} datum "
            "(corrupt record or wrong schema)",
        )
    if not isinstance(datum, dict):
        raise DecodeError(AVRO_ERROR, f"{known.fullname} datum is not a record")
    return datum


def to_dict(name: str, datum: dict[str, Any]) -> dict[str, Any]:
    """The relsec dict of a decoded datum; impossible instants become ``avro_error``."""
    try:
        return FROM_DATUM[name](datum)
    except (ValueError, OverflowError, OSError, KeyError, TypeError) as exc:
        raise DecodeError(
            AVRO_ERROR, f"{name} record has an unusable value: {type(exc).__name__}: {exc}"
        ) from None


def write_datum(known: KnownSchema, datum: Mapping[str, Any], prefix: bytes = b"") -> bytes:
    """``prefix`` + binary Avro of ``datum``; a datum the schema rejects is a ValidationError."""
    buf = io.BytesIO()
    buf.write(prefix)
    try:
        schemaless_writer(buf, known.writer, datum)
    except Exception as exc:
        raise _encode_error(known, datum, exc) from None
    return buf.getvalue()


def _encode_error(known: KnownSchema, datum: Mapping[str, Any], exc: Exception) -> ValidationError:
    """Name the offending field of a datum fastavro refused to write."""
    try:
        validate(datum, known.writer, raise_errors=True)
    except FastavroValidationError as verr:
        fields = sorted({str(e.field).removeprefix(known.fullname + ".") for e in verr.errors})
        field = fields[0] if fields else "$"
        return ValidationError(
            field, "wrong_type", f"cannot be written as {known.fullname}: {verr.errors[0]}"
        )
    except Exception:  # validation itself failed on a strange value: report the write error
        pass
    return ValidationError("$", "wrong_type", f"cannot be written as {known.fullname}: {exc}")


class SingleObjectCodec:
    """Avro single-object encoding on output; single-object, JSON (and Confluent) on input."""

    def __init__(self) -> None:
        schemas = known_schemas()
        self._by_fingerprint: dict[bytes, KnownSchema] = {s.fingerprint: s for s in schemas}
        self._current: dict[str, KnownSchema] = {
            s.name: s for s in schemas if s.reader is None
        }
        self._headers: dict[str, bytes] = {n: s.header for n, s in self._current.items()}
        self._direct_alerts = alert_layout_matches(self._current["alert"].writer)
        """Alerts written by :func:`~streams.codecs.avro_direct.alert_writer` (single-object
        framing only: a subclass with its own ``_encode`` switches this off)."""

    # --- encoding ---------------------------------------------------------------

    def _encode(self, name: str, datum: dict[str, Any]) -> bytes:
        known = self._current[name]
        return write_datum(known, datum, self._headers[name])

    def encode_event(self, event: Mapping[str, Any]) -> bytes:
        """Encode a SPEC §1 event dict (``type`` included)."""
        kind = event.get("type")
        if kind not in EVENT_SCHEMAS:
            raise ValidationError(
                "type", "unknown_enum", f"{kind!r} is not one of {', '.join(EVENT_SCHEMAS)}"
            )
        return self._encode(str(kind), event_to_datum(str(kind), event))

    def encode_alert(self, alert: Mapping[str, Any]) -> bytes:
        """Encode an ``Alert.to_dict()`` dict."""
        return self._encode("alert", alert_to_datum(alert))

    def encode_alert_value(self, alert: Alert) -> bytes:
        """Encode an :class:`Alert` (the same bytes as ``encode_alert(alert.to_dict())``)."""
        if self._direct_alerts:
            try:
                return alert_writer(alert, self._headers["alert"])
            except (OverflowError, UnicodeEncodeError):
                pass  # fastavro refuses it below, naming the field
        return self._encode("alert", alert_value_to_datum(alert))

    def encode_dead_letter(self, dl: Mapping[str, Any]) -> bytes:
        """Encode a dead-letter dict (original key/value bytes kept as they were).

        Text that is not valid Unicode (lone surrogates in a detail) is written with
        "?" in its place rather than refused: a dead letter must always be writable.
        """
        datum = dead_letter_to_datum(dl)
        try:
            return self._encode("dead_letter", datum)
        except ValidationError:
            for field in ("reason", "detail", "topic"):
                if isinstance(datum[field], str):
                    datum[field] = datum[field].encode("utf-8", "replace").decode("utf-8")
            return self._encode("dead_letter", datum)

    # --- decoding ---------------------------------------------------------------

    def _decode_single_object(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        if raw[1:2] != b"\x01":
            raise DecodeError(
                UNDECODABLE,
                f"{_what(raw)} starts with C3 but not the Avro single-object marker C3 01",
            )
        if len(raw) < HEADER_BYTES:
            raise DecodeError(
                UNDECODABLE,
                f"{_what(raw)} is shorter than the 10-byte Avro single-object header",
            )
        fingerprint = raw[2:HEADER_BYTES]
        known = self._by_fingerprint.get(fingerprint)
        if known is None:
            raise DecodeError(
                UNKNOWN_SCHEMA,
                f"Avro single-object record with schema fingerprint {fingerprint.hex()} "
                "(CRC-64-AVRO, little-endian): not a schema version this relsec knows",
            )
        return known.name, read_datum(raw, HEADER_BYTES, known)

    def _decode_confluent(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        schema_id = int.from_bytes(raw[1:5], "big") if len(raw) >= 5 else None
        raise DecodeError(
            UNKNOWN_SCHEMA,
            f"Confluent wire-format record (schema id {schema_id}) but no schema registry is "
            "configured (set RELSEC_SCHEMA_REGISTRY_URL)",
        )

    @staticmethod
    def _decode_json(raw: bytes) -> dict[str, Any]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(INVALID_JSON, f"{_what(raw)} is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise DecodeError(
                INVALID_JSON, f"JSON record is a {type(obj).__name__}, not an object"
            )
        return obj

    def _decode(self, raw: Any, names: tuple[str, ...], what: str) -> dict[str, Any]:
        if raw is None or len(raw) == 0:
            raise DecodeError(UNDECODABLE, "empty record value (a tombstone?)")
        if type(raw) is not bytes:
            try:
                raw = bytes(raw)
            except TypeError:
                raise DecodeError(
                    UNDECODABLE, f"record value is a {type(raw).__name__}, not bytes"
                ) from None
        first = raw[0]
        if first == 0xC3:
            name, datum = self._decode_single_object(raw)
        elif first == CONFLUENT_MAGIC:
            name, datum = self._decode_confluent(raw)
        elif first in _JSON_FIRST_BYTES:
            return self._decode_json(raw)
        else:
            raise DecodeError(
                UNDECODABLE,
                f"{_what(raw)} starts with byte {first:#04x}: neither Avro single-object (C3 01), "
                "Confluent wire format (00) nor JSON ({)",
            )
        if name not in names:
            raise DecodeError(
                UNKNOWN_SCHEMA, f"record is written with the {name} schema, not an {what} schema"
            )
        return to_dict(name, datum)

    def decode_event(self, raw: bytes, event_type: str | None = None) -> dict[str, Any]:
        """Decode an input record into a SPEC §1 dict for ``parse_event``.

        ``event_type`` is the type the topic implies. An Avro record carries its
        own type (from its schema) in ``type``, so a record on the wrong topic
        reaches ``parse_event(d, expected_type=...)`` and is reported there; a
        JSON record is returned as written.
        """
        return self._decode(raw, EVENT_SCHEMAS, "event")

    def decode_alert(self, raw: bytes) -> dict[str, Any]:
        """Decode an alert record into the ``Alert.to_dict()`` shape."""
        return self._decode(raw, ("alert",), "alert")

    def decode_dead_letter(self, raw: bytes) -> dict[str, Any]:
        """Decode a dead-letter record into the dead-letter dict."""
        return self._decode(raw, ("dead_letter",), "dead-letter")
