"""What the worker does with one input record, without Faust: decode, route, engine, outputs.

Stage one (:meth:`Processor.admit`) runs when a record arrives: it decodes and
validates it, checks that it sits on the partition its service key hashes to,
and returns either an :class:`Admitted` event for the event-time merge or the
outputs that dispose of it (a dead letter, or a re-keyed copy). Stage two
(:meth:`Processor.apply`) runs when the merge releases the event: the engine
decides, and the alerts and dead letters to produce come back as
:class:`Output` values. The Faust agent sends them, waits for delivery, then
stores the touched services' state and acks the records.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agents.engine import EngineConfig, ServiceEngine
from agents.errors import DecodeError, StateError, ValidationError
from agents.model.alerts import Alert
from agents.model.events import Event, order_key, parse_event
from agents.model.timefmt import format_rfc3339_ms
from streams.codecs import Codec
from streams.kafka.clients import murmur2_partition
from streams.ocsf import alert_to_ocsf
from streams.pipeline.metrics import PipelineMetrics
from streams.settings import Topics


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One consumed record and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Output:
    """A record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    """A valid event on the right partition, waiting for the merge."""

    record: InputRecord
    event: Event

    @property
    def key(self) -> tuple[int, int, str]:
        return order_key(self.event)


StateLoader = Callable[[str], bytes | None]


class Processor:
    """Engine state per service (cached, loaded from the table on first use) and the outputs."""

    def __init__(
        self,
        topics: Topics,
        codec: Codec,
        config: EngineConfig,
        num_partitions: int,
        load_state: StateLoader,
        clock: Callable[[], int],
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.topics = topics
        self.codec = codec
        self.config = config
        self.num_partitions = num_partitions
        self.load_state = load_state
        self.clock = clock
        self.metrics = metrics or PipelineMetrics()
        self.engines: dict[str, ServiceEngine] = {}
        self.dirty: dict[str, int] = {}  # service -> partition of its last event
        self.offsets: dict[str, dict[str, int]] = {}  # service -> topic -> last offset applied
        self._partition_of: dict[str, int] = {}  # murmur2 is pure Python: once per service
        self._records_in = {t: self.metrics.records_in.labels(t) for t in topics.inputs}

    # -- stage one -----------------------------------------------------------

    def admit(self, record: InputRecord) -> Admitted | list[Output]:
        counter = self._records_in.get(record.topic)
        (counter or self.metrics.records_in.labels(record.topic)).inc()
        event_type = self.topics.type_for_input(record.topic)
        if event_type is None:
            return [self.dead_letter(record, "validation", f"{record.topic} is not an input topic")]
        if record.value is None:
            return [self.dead_letter(record, "undecodable", "record has no value (tombstone)")]
        try:
            obj = self.codec.decode_event(record.value, event_type)
            event = parse_event(obj, expected_type=event_type)
        except DecodeError as exc:
            return [self.dead_letter(record, exc.reason, exc.detail)]
        except ValidationError as exc:
            return [self.dead_letter(record, "validation", str(exc))]
        expected = self._partition_of.get(event.service)
        if expected is None:
            if len(self._partition_of) > 100_000:
                self._partition_of.clear()
            expected = murmur2_partition(event.service.encode("utf-8"), self.num_partitions)
            self._partition_of[event.service] = expected
        if expected != record.partition:
            service_key = event.service.encode("utf-8")
            # Never judged against another partition's state: re-keyed onto the partition
            # its service hashes to, where it is processed when it comes back.
            self.metrics.rerouted.inc()
            return [Output(record.topic, service_key, record.value, expected)]
        return Admitted(record, event)

    # -- stage two -----------------------------------------------------------

    def engine_for(self, service: str) -> ServiceEngine:
        engine = self.engines.get(service)
        if engine is None:
            data = self.load_state(service)
            offsets: dict[str, int] = {}
            if data is None:
                engine = ServiceEngine(service, self.config)
            else:
                try:
                    offsets, engine_bytes, _ = unpack_state(data)
                    engine = ServiceEngine.from_bytes(engine_bytes, self.config, self.clock())
                except StateError:
                    # A state we cannot read must not stop the pipeline; start afresh.
                    engine = ServiceEngine(service, self.config)
            self.engines[service] = engine
            self.offsets[service] = offsets
        return engine

    def apply(self, admitted: Admitted) -> list[Output]:
        event = admitted.event
        record = admitted.record
        engine = self.engine_for(event.service)
        offsets = self.offsets[event.service]
        if record.offset <= offsets.get(record.topic, -1):
            # Processed before a restart or rebalance and already in the restored state
            # (its effects were delivered before that state was stored): a duplicate.
            self.metrics.duplicates.inc()
            return []
        offsets[record.topic] = record.offset
        self.dirty[event.service] = record.partition
        outcome = engine.process(event, self.clock())
        if outcome.disposition.dead_letter:
            return [self.dead_letter(record, outcome.disposition.value, outcome.detail)]
        if outcome.disposition == "duplicate":
            self.metrics.duplicates.inc()
            return []
        self.metrics.applied.inc()
        return self.alert_outputs(outcome.alerts)

    def alert_outputs(self, alerts: Iterable[Alert]) -> list[Output]:
        out: list[Output] = []
        for alert in alerts:
            self.metrics.alerts.labels(alert.rule, alert.status).inc()
            key = alert.alert_id.encode("ascii")
            out.append(Output(self.topics.alerts, key, self.codec.encode_alert_value(alert)))
            ocsf = alert_to_ocsf(alert.to_dict(), alert)
            out.append(Output(self.topics.alerts_ocsf, key, orjson.dumps(ocsf)))
        return out

    def dead_letter(self, record: InputRecord, reason: str, detail: str) -> Output:
        self.metrics.dead_letters.labels(reason).inc()
        value = self.codec.encode_dead_letter(
            {
                "reason": reason,
                "detail": detail,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "key": record.key,
                "value": record.value,
                "detected_at": format_rfc3339_ms(self.clock()),
            }
        )
        return Output(self.topics.dlq, record.key, value)

    def take_dirty(
        self, outbox: Mapping[str, Sequence[Output]] | None = None
    ) -> list[tuple[str, int, bytes]]:
        """The touched services' states to store: ``(service, partition, bytes)``.

        ``outbox``: per service, the outputs not yet sent, stored with its state.
        """
        outbox = outbox or {}
        out = [
            (s, p, pack_state(self.offsets[s], self.engines[s].to_bytes(), outbox.get(s, ())))
            for s, p in self.dirty.items()
        ]
        self.dirty.clear()
        return out

    def forget(self) -> None:
        """Drop cached state (after a rebalance the table is the truth)."""
        self.engines.clear()
        self.offsets.clear()
        self.dirty.clear()


_STATE_MAGIC = b"RS1\n"
_STATE_MAGIC_OUTBOX_JSON = b"RS2\n"  # written until 2026-11-26: still read
_STATE_MAGIC_OUTBOX = b"RS3\n"
# Per output: topic length, key length (-1: none), value length, partition (-1: none).
_OUTPUT_HEAD = struct.Struct(">HiIi")


def pack_state(
    offsets: dict[str, int], engine_bytes: bytes, outbox: Sequence[Output] = ()
) -> bytes:
    """A stored state: the last input offset applied per topic, an outbox, the engine's state.

    The offsets let a restarted worker tell records it already applied (their effects
    were delivered before this state was stored) from new ones, whatever their age.
    The outbox holds the outputs the applied events produced, when the state is
    stored before they are sent (the confluent-kafka runtime does): whoever restores
    the state sends them if they may not have gone out.

    Layout: ``RS1\n`` + offsets JSON + ``\n`` + engine bytes without an outbox; with
    one, ``RS3\n`` + offsets JSON + ``\n`` + the output count (4 bytes) + per output
    a fixed head (:data:`_OUTPUT_HEAD`) and its topic, key and value bytes, then the
    engine bytes. Binary, because the outbox is on the checkpoint's hot path.
    """
    head = orjson.dumps(offsets)
    if not outbox:
        return b"".join((_STATE_MAGIC, head, b"\n", engine_bytes))
    parts = [_STATE_MAGIC_OUTBOX, head, b"\n", len(outbox).to_bytes(4, "big")]
    pack = _OUTPUT_HEAD.pack
    for o in outbox:
        topic = o.topic.encode("utf-8")
        key = o.key
        parts.append(
            pack(
                len(topic),
                -1 if key is None else len(key),
                len(o.value),
                -1 if o.partition is None else o.partition,
            )
        )
        parts.append(topic)
        if key is not None:
            parts.append(key)
        parts.append(o.value)
    parts.append(engine_bytes)
    return b"".join(parts)


def unpack_state(data: bytes) -> tuple[dict[str, int], bytes, list[Output]]:
    """``(offsets, engine bytes, outbox)`` of a stored state; StateError when malformed."""
    for magic in (_STATE_MAGIC, _STATE_MAGIC_OUTBOX, _STATE_MAGIC_OUTBOX_JSON):
        if data.startswith(magic):
            break
    else:
        raise StateError("table value is not a relsec worker state")
    end = data.find(b"\n", len(magic))
    if end < 0:
        raise StateError("stored state header is malformed: no end of header")
    try:
        parsed = orjson.loads(data[len(magic) : end])
        if magic is _STATE_MAGIC_OUTBOX_JSON:
            return _unpack_json_outbox(parsed, data[end + 1 :])
        offsets = {str(k): int(v) for k, v in parsed.items()}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise StateError(f"stored state header is malformed: {exc!r}") from None
    if magic is _STATE_MAGIC:
        return offsets, data[end + 1 :], []
    return (offsets, *_unpack_binary_outbox(data, end + 1))


def _unpack_binary_outbox(data: bytes, pos: int) -> tuple[bytes, list[Output]]:
    view = memoryview(data)
    try:
        count = int.from_bytes(view[pos : pos + 4], "big")
        pos += 4
        outbox = []
        for _ in range(count):
            topic_len, key_len, value_len, partition = _OUTPUT_HEAD.unpack_from(view, pos)
            pos += _OUTPUT_HEAD.size
            topic = bytes(view[pos : pos + topic_len]).decode("utf-8")
            pos += topic_len
            key = None
            if key_len >= 0:
                key = bytes(view[pos : pos + key_len])
                pos += key_len
            value = bytes(view[pos : pos + value_len])
            pos += value_len
            if pos > len(data):
                raise ValueError("outbox runs past the end of the state")
            outbox.append(Output(topic, key, value, None if partition < 0 else partition))
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise StateError(f"stored state outbox is malformed: {exc!r}") from None
    return bytes(view[pos:]), outbox


def _unpack_json_outbox(
    parsed: Any, engine_bytes: bytes
) -> tuple[dict[str, int], bytes, list[Output]]:
    """The ``RS2`` layout: offsets and a base64 outbox in one JSON header."""
    try:
        offsets = {str(k): int(v) for k, v in parsed["offsets"].items()}
        outbox = [
            Output(
                str(topic),
                None if key is None else base64.b64decode(key),
                base64.b64decode(value),
                None if partition is None else int(partition),
            )
            for topic, key, value, partition in parsed.get("outbox", [])
        ]
    except (AttributeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise StateError(f"stored state header is malformed: {exc!r}") from None
    return offsets, engine_bytes, outbox
