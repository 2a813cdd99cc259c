"""Bytes <-> relsec dicts for Kafka records: events, alerts, dead letters.

``make_codec(settings)`` gives the codec for a deployment: Avro single-object
encoding by default, the Confluent Schema Registry wire format when
``settings.schema_registry_url`` is set. Every codec decodes all three input
formats (Avro single-object ``C3 01``, Confluent ``00``, JSON ``{``), told apart by
the first byte, and raises :class:`agents.errors.DecodeError` with a reason in
:data:`DECODE_REASONS` for anything it cannot decode. See docs/schemas.md.

:func:`decode_input_event` is the one call from an input record's bytes to a validated
:class:`~agents.model.events.Event` (JSON records on the fast path of
:mod:`agents.model.wire`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from agents.model.alerts import Alert
from agents.model.events import Event, parse_event
from agents.model.wire import event_from_json
from streams.codecs.single_object import (
    AVRO_ERROR,
    DECODE_REASONS,
    INVALID_JSON,
    UNDECODABLE,
    UNKNOWN_SCHEMA,
    SingleObjectCodec,
)
from streams.settings import Settings

__all__ = [
    "AVRO_ERROR",
    "DECODE_REASONS",
    "FAUST_CODEC_NAMES",
    "INVALID_JSON",
    "UNDECODABLE",
    "UNKNOWN_SCHEMA",
    "Codec",
    "SingleObjectCodec",
    "decode_input_event",
    "make_codec",
    "register_faust_codecs",
]

#: Names under which :func:`register_faust_codecs` registers codecs with Faust.
FAUST_CODEC_NAMES = {
    "event": "relsec_event",
    "alert": "relsec_alert",
    "dead_letter": "relsec_dead_letter",
}


class Codec(Protocol):
    """What every relsec codec does (the agreed interface)."""

    def encode_event(self, event: Mapping[str, Any]) -> bytes: ...

    def decode_event(self, raw: bytes, event_type: str | None = None) -> dict[str, Any]: ...

    def encode_alert(self, alert: Mapping[str, Any]) -> bytes: ...

    def encode_alert_value(self, alert: Alert) -> bytes: ...

    def decode_alert(self, raw: bytes) -> dict[str, Any]: ...

    def encode_dead_letter(self, dl: Mapping[str, Any]) -> bytes: ...

    def decode_dead_letter(self, raw: bytes) -> dict[str, Any]: ...


def decode_input_event(codec: Codec, raw: bytes, event_type: str | None = None) -> Event:
    """The validated event of an input record's value, in one call.

    The same as ``parse_event(codec.decode_event(raw, event_type), expected_type=event_type)``
    and raising what that raises (:class:`~agents.errors.DecodeError`,
    :class:`~agents.errors.ValidationError`, with the same messages), but a JSON record
    the fast path accepts is decoded and validated by msgspec in one pass.
    """
    if type(raw) is bytes and raw[:1] == b"{":
        event = event_from_json(raw, event_type)
        if event is not None:
            return event
    return parse_event(codec.decode_event(raw, event_type), expected_type=event_type)


def make_codec(settings: Settings | None = None) -> Codec:
    """The codec for ``settings``: Confluent wire format with a registry URL, else single-object."""
    if settings is not None and settings.schema_registry_url:
        from streams.codecs.confluent import ConfluentCodec

        return ConfluentCodec(settings)
    return SingleObjectCodec()


def register_faust_codecs(
    settings: Settings | None = None, codec: Codec | None = None
) -> dict[str, str]:
    """Register relsec's codecs with Faust by name (see :data:`FAUST_CODEC_NAMES`).

    Faust's codec registry is process-wide: the last registration wins. Returns
    the names registered, by kind.
    """
    from streams.codecs.faust_codecs import register

    register(codec if codec is not None else make_codec(settings), FAUST_CODEC_NAMES)
    return dict(FAUST_CODEC_NAMES)
