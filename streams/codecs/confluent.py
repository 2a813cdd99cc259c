"""The Confluent Schema Registry codec: byte ``00``, a 4-byte big-endian schema id, the datum.

Used when ``settings.schema_registry_url`` is set. Encoding goes through
confluent-kafka's ``AvroSerializer`` with the topic subject strategy
(``<topic>-value``; the schema is registered on first use). Decoding fetches the
writer schema by id through confluent-kafka's ``SchemaRegistryClient`` (cached
per id), recognises it by its record full name, and resolves the datum to
relsec's current schema with fastavro, so any compatible writer version reads.
Avro single-object and JSON input stay accepted, as in the default codec.

Errors: a registry that does not know an id gives ``unknown_schema``; so does a
registry that cannot be reached while decoding (the record is dead-lettered with
its bytes and can be replayed). While encoding, a datum the schema rejects is a
:class:`ValidationError`; a registry failure is a :class:`ConfigError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agents.errors import ConfigError, DecodeError, RelsecError
from schemas import SCHEMA_NAMES, schema_text
from streams.codecs.fingerprint import schema_fingerprint
from streams.codecs.single_object import (
    UNDECODABLE,
    UNKNOWN_SCHEMA,
    KnownSchema,
    SingleObjectCodec,
    known_schemas,
    parse_avro,
    read_datum,
    write_datum,
)
from streams.settings import Settings, Topics

CONFLUENT_HEADER_BYTES = 5  # magic byte 00 + 4-byte big-endian schema id


def topic_for_schema(topics: Topics, name: str) -> str:
    """The topic whose ``-value`` subject carries schema ``name``."""
    return {
        "deploy": topics.deploys,
        "incident": topics.incidents,
        "security_flag": topics.security_flags,
        "alert": topics.alerts,
        "dead_letter": topics.dlq,
    }[name]


class ConfluentCodec(SingleObjectCodec):
    """Confluent wire format out; Confluent, single-object Avro and JSON in."""

    def __init__(
        self,
        settings: Settings,
        client: Any = None,
        registry_conf: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._direct_alerts = False  # alerts go through the registry's serializer
        try:
            from confluent_kafka.schema_registry import (
                SchemaRegistryClient,
                topic_subject_name_strategy,
            )
            from confluent_kafka.schema_registry.avro import AvroSerializer
            from confluent_kafka.serialization import MessageField, SerializationContext
        except ImportError as exc:
            raise ConfigError(
                "a schema registry URL is set but confluent-kafka's schema-registry support "
                f"is not installed ({exc}); install it with: pip install 'relsec[registry]'"
            ) from None

        if client is None:
            if not settings.schema_registry_url:
                raise ConfigError("the Confluent codec needs a schema registry URL")
            conf: dict[str, Any] = {"url": settings.schema_registry_url}
            conf.update(registry_conf or {})
            client = SchemaRegistryClient(conf)
        self._client = client
        self._serializers = {
            name: AvroSerializer(
                client,
                schema_text(name),
                conf={
                    # the callable form works on old and new confluent-kafka alike
                    "subject.name.strategy": topic_subject_name_strategy,
                    "auto.register.schemas": True,
                },
            )
            for name in SCHEMA_NAMES
        }
        self._contexts = {
            name: SerializationContext(topic_for_schema(settings.topics, name), MessageField.VALUE)
            for name in SCHEMA_NAMES
        }
        self._by_fullname: dict[str, KnownSchema] = {
            s.fullname: s for s in known_schemas() if s.reader is None
        }
        self._by_id: dict[int, KnownSchema] = {}

    @property
    def client(self) -> Any:
        """The confluent-kafka ``SchemaRegistryClient`` in use."""
        return self._client

    def _encode(self, name: str, datum: dict[str, Any]) -> bytes:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            out = self._serializers[name](datum, self._contexts[name])
        except SchemaRegistryError as exc:
            raise ConfigError(f"schema registry refused the {name} schema: {exc}") from None
        except Exception as exc:
            # A bad datum: let the plain writer name the field (raises ValidationError).
            write_datum(self._current[name], datum)
            raise ConfigError(
                f"could not encode a {name} record through the schema registry: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if not out:
            raise RelsecError(f"the Avro serializer produced no bytes for a {name} record")
        return bytes(out)

    def _writer_for_id(self, schema_id: int) -> KnownSchema:
        known = self._by_id.get(schema_id)
        if known is not None:
            return known
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            raise DecodeError(
                UNKNOWN_SCHEMA, f"schema registry has no schema id {schema_id}: {exc}"
            ) from None
        except Exception as exc:  # unreachable registry, TLS, timeouts: not cached
            raise DecodeError(
                UNKNOWN_SCHEMA,
                f"schema id {schema_id} could not be fetched from the schema registry: "
                f"{type(exc).__name__}: {exc}",
            ) from None
        if (schema.schema_type or "AVRO") != "AVRO":
            raise DecodeError(
                UNKNOWN_SCHEMA, f"schema id {schema_id} is a {schema.schema_type} schema, not Avro"
            )
        try:
            writer_json = json.loads(schema.schema_str)
            fullname = (
                f"{writer_json['namespace']}.{writer_json['name']}"
                if writer_json.get("namespace") and "." not in writer_json["name"]
                else writer_json["name"]
            )
            writer = parse_avro(writer_json)
            fingerprint = schema_fingerprint(writer_json)
        except Exception as exc:
            raise DecodeError(
                UNKNOWN_SCHEMA, f"schema id {schema_id} is not a usable Avro record schema: {exc}"
            ) from None
        current = self._by_fullname.get(fullname)
        if current is None:
            raise DecodeError(
                UNKNOWN_SCHEMA,
                f"schema id {schema_id} is {fullname}, none of relsec's records "
                f"({', '.join(sorted(self._by_fullname))})",
            )
        known = KnownSchema(
            name=current.name,
            version=current.version,
            fullname=fullname,
            fingerprint=fingerprint,
            writer=writer,
            reader=None if fingerprint == current.fingerprint else current.writer,
            origin=f"(registry schema id {schema_id})",
        )
        self._by_id[schema_id] = known
        return known

    def _decode_confluent(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        if len(raw) <= CONFLUENT_HEADER_BYTES:
            raise DecodeError(
                UNDECODABLE,
                f"{len(raw)}-byte record is too short for the Confluent wire format "
                "(00, 4-byte schema id, datum)",
            )
        known = self._writer_for_id(int.from_bytes(raw[1:CONFLUENT_HEADER_BYTES], "big"))
        return known.name, read_datum(raw, CONFLUENT_HEADER_BYTES, known)
