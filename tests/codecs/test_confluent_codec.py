"""The Confluent wire-format codec against a Schema Registry REST stand-in on 127.0.0.1.

What is real here: confluent-kafka's ``SchemaRegistryClient`` (HTTP), its
``AvroSerializer`` / ``AvroDeserializer``, fastavro, the bytes on the wire.
What is not: the registry server itself (see relsec_registry_stub.py for the
subset it speaks); no Confluent Schema Registry was run.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator

import pytest
from codec_samples import EVENTS, make_alert, make_dead_letter
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_writer
from relsec_registry_stub import RegistryStub

from agents.errors import ConfigError, DecodeError, ValidationError
from agents.model.alerts import Alert
from agents.model.events import parse_event
from schemas import load_schema, schema_text
from streams.codecs import UNDECODABLE, UNKNOWN_SCHEMA, SingleObjectCodec, make_codec
from streams.codecs.confluent import ConfluentCodec
from streams.codecs.datum import event_to_datum
from streams.settings import Settings, Topics

FAST_FAIL = {"max.retries": 0, "retries.wait.ms": 10, "timeout": 2}


@pytest.fixture
def registry() -> Iterator[RegistryStub]:
    stub = RegistryStub(first_id=100).start()
    yield stub
    stub.stop()


@pytest.fixture
def settings(registry: RegistryStub) -> Settings:
    return Settings(schema_registry_url=registry.url, topics=Topics("team-a."))


def _wire(schema_id: int, schema: dict[str, object], datum: dict[str, object]) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
    schemaless_writer(buf, parse_schema(schema, named_schemas={}), datum)
    return buf.getvalue()


def test_make_codec_picks_confluent_when_a_registry_is_set(settings: Settings) -> None:
    assert isinstance(make_codec(settings), ConfluentCodec)


def test_round_trip_registers_under_topic_subjects(
    settings: Settings, registry: RegistryStub
) -> None:
    codec = ConfluentCodec(settings)
    for event in EVENTS.values():
        raw = codec.encode_event(event)
        assert raw[0] == 0
        schema_id = int.from_bytes(raw[1:5], "big")
        assert json.loads(registry.schemas[schema_id]) == load_schema(event["type"])
        decoded = codec.decode_event(raw, event["type"])
        assert parse_event(decoded, expected_type=event["type"]) == parse_event(event)
    alert = make_alert()
    assert Alert.from_dict(codec.decode_alert(codec.encode_alert(alert.to_dict()))) == alert
    dl = make_dead_letter()
    assert codec.decode_dead_letter(codec.encode_dead_letter(dl)) == dl
    assert set(registry.subjects) == {
        "team-a.deploys-value",
        "team-a.incidents-value",
        "team-a.security-flags-value",
        "team-a.alerts-value",
        "team-a.dlq-value",
    }
    # one registration per subject, not one per record
    posts = [p for m, p in registry.requests if m == "POST"]
    assert len(posts) == 5


def test_a_second_process_fetches_the_writer_schema_once(
    settings: Settings, registry: RegistryStub
) -> None:
    raw = ConfluentCodec(settings).encode_event(EVENTS["incident_full"])
    reader = ConfluentCodec(settings)
    before = len(registry.requests)
    for _ in range(50):
        reader.decode_event(raw, "incident")
    gets = [p for m, p in registry.requests[before:] if m == "GET"]
    assert gets == [f"/schemas/ids/{int.from_bytes(raw[1:5], 'big')}"]


def test_confluents_own_deserializer_reads_relsec_bytes(settings: Settings) -> None:
    raw = ConfluentCodec(settings).encode_event(EVENTS["flag_full"])
    client = SchemaRegistryClient({"url": settings.schema_registry_url})
    record = AvroDeserializer(client)(raw, None)
    assert record == event_to_datum("security_flag", EVENTS["flag_full"])


def test_bytes_from_confluents_serializer_with_the_previous_schema(
    settings: Settings, registry: RegistryStub
) -> None:
    """Another producer still on v0, through confluent-kafka's serializer: read as current."""
    client = SchemaRegistryClient({"url": settings.schema_registry_url})
    old_serializer = AvroSerializer(
        client,
        schema_text("deploy", version=0),
        conf={"subject.name.strategy.type": "TOPIC"},
    )
    newer = ("incident_id", "release_aliases")
    event = {k: v for k, v in EVENTS["deploy_full"].items() if k not in newer}
    datum = event_to_datum("deploy", event)
    del datum["incident_id"]
    raw = old_serializer(datum, SerializationContext("team-a.deploys", MessageField.VALUE))
    assert raw is not None and raw[0] == 0
    decoded = ConfluentCodec(settings).decode_event(raw, "deploy")
    assert decoded["incident_id"] is None
    assert parse_event(decoded, expected_type="deploy") == parse_event(event)
    # and relsec's own v1 then registers as a compatible second version of the subject
    ConfluentCodec(settings).encode_event(EVENTS["deploy_full"])
    assert len(registry.subjects["team-a.deploys-value"]) == 2


def test_hand_built_wire_bytes_with_a_newer_compatible_writer(
    settings: Settings, registry: RegistryStub
) -> None:
    """A v2 writer (one more optional field) is resolved to relsec's current schema."""
    v2 = load_schema("incident")
    v2["fields"].append(
        {"name": "pager_url", "type": ["null", "string"], "default": None, "doc": "new"}
    )
    schema_id = registry.add_schema(v2)
    datum = {**event_to_datum("incident", EVENTS["incident_full"]), "pager_url": "https://x"}
    decoded = ConfluentCodec(settings).decode_event(_wire(schema_id, v2, datum), "incident")
    assert "pager_url" not in decoded
    assert parse_event(decoded) == parse_event(EVENTS["incident_full"])


def test_unknown_schema_id(settings: Settings) -> None:
    codec = ConfluentCodec(settings)
    with pytest.raises(DecodeError) as err:
        codec.decode_event(b"\x00\x00\x00\x03\xe7" + b"\x02a" * 10, "deploy")
    assert err.value.reason == UNKNOWN_SCHEMA
    assert "999" in err.value.detail


def test_foreign_record_schema(settings: Settings, registry: RegistryStub) -> None:
    foreign = {"type": "record", "name": "Payment", "namespace": "com.example", "fields": [
        {"name": "id", "type": "string"}]}
    schema_id = registry.add_schema(foreign)
    with pytest.raises(DecodeError) as err:
        ConfluentCodec(settings).decode_event(_wire(schema_id, foreign, {"id": "p1"}), "deploy")
    assert err.value.reason == UNKNOWN_SCHEMA
    assert "com.example.Payment" in err.value.detail


def test_event_schema_on_the_alert_decoder(settings: Settings) -> None:
    codec = ConfluentCodec(settings)
    raw = codec.encode_event(EVENTS["deploy_minimal"])
    with pytest.raises(DecodeError) as err:
        codec.decode_alert(raw)
    assert err.value.reason == UNKNOWN_SCHEMA


@pytest.mark.parametrize("raw", [b"\x00", b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x01"])
def test_short_confluent_header_is_undecodable(settings: Settings, raw: bytes) -> None:
    with pytest.raises(DecodeError) as err:
        ConfluentCodec(settings).decode_event(raw, "deploy")
    assert err.value.reason == UNDECODABLE


def test_truncated_confluent_datum_is_an_avro_error(settings: Settings) -> None:
    codec = ConfluentCodec(settings)
    raw = codec.encode_event(EVENTS["deploy_full"])
    for cut in range(6, len(raw)):
        with pytest.raises(DecodeError) as err:
            codec.decode_event(raw[:cut], "deploy")
        assert err.value.reason == "avro_error"


def test_confluent_codec_still_reads_single_object_and_json(settings: Settings) -> None:
    codec = ConfluentCodec(settings)
    single = SingleObjectCodec().encode_event(EVENTS["flag_minimal"])
    assert parse_event(codec.decode_event(single, "security_flag")) == parse_event(
        EVENTS["flag_minimal"]
    )
    assert codec.decode_event(json.dumps(EVENTS["flag_minimal"]).encode()) == EVENTS["flag_minimal"]


def test_bad_datum_is_a_validation_error_naming_the_field(settings: Settings) -> None:
    with pytest.raises(ValidationError) as err:
        ConfluentCodec(settings).encode_event({**EVENTS["deploy_full"], "release": 7})
    assert err.value.field == "release"


def test_incompatible_registered_subject_is_a_config_error(
    settings: Settings, registry: RegistryStub
) -> None:
    # Someone registered a schema under our subject that ours cannot read.
    registry.add_schema(
        {"type": "record", "name": "Deploy", "namespace": "io.relsec.v1", "doc": "x",
         "fields": [{"name": "only", "type": "int"}]},
        subject="team-a.deploys-value",
    )
    with pytest.raises(ConfigError) as err:
        ConfluentCodec(settings).encode_event(EVENTS["deploy_full"])
    assert "incompatible" in str(err.value)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_registry(registry: RegistryStub) -> None:
    down = Settings(schema_registry_url=_closed_port_url())
    codec = ConfluentCodec(down, registry_conf=FAST_FAIL)
    with pytest.raises(DecodeError) as err:
        codec.decode_event(b"\x00\x00\x00\x00\x07" + b"\x02a" * 10, "deploy")
    assert err.value.reason == UNKNOWN_SCHEMA
    assert "could not be fetched" in err.value.detail
    with pytest.raises(ConfigError):
        codec.encode_event(EVENTS["deploy_full"])
