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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

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
            as_dict = alert.to_dict()
            key = alert.alert_id.encode("ascii")
            out.append(Output(self.topics.alerts, key, self.codec.encode_alert(as_dict)))
            out.append(Output(self.topics.alerts_ocsf, key, orjson.dumps(alert_to_ocsf(as_dict))))
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
_STATE_MAGIC_OUTBOX = b"RS2\n"


def pack_state(
    offsets: dict[str, int], engine_bytes: bytes, outbox: Sequence[Output] = ()
) -> bytes:
    """A stored state: the last input offset applied per topic, an outbox, the engine's state.

    The offsets let a restarted worker tell records it already applied (their effects
    were delivered before this state was stored) from new ones, whatever their age.
    The outbox holds the outputs the applied events produced, when the state is
    stored before they are sent (the confluent-kafka runtime does): whoever restores
    the state sends them if they may not have gone out.
    """
    if not outbox:
        return _STATE_MAGIC + orjson.dumps(offsets) + b"\n" + engine_bytes
    head = {
        "offsets": offsets,
        "outbox": [
            [
                o.topic,
                None if o.key is None else base64.b64encode(o.key).decode("ascii"),
                base64.b64encode(o.value).decode("ascii"),
                o.partition,
            ]
            for o in outbox
        ],
    }
    return _STATE_MAGIC_OUTBOX + orjson.dumps(head) + b"\n" + engine_bytes


def unpack_state(data: bytes) -> tuple[dict[str, int], bytes, list[Output]]:
    """``(offsets, engine bytes, outbox)`` of a stored state; StateError when malformed."""
    if data.startswith(_STATE_MAGIC):
        magic = _STATE_MAGIC
    elif data.startswith(_STATE_MAGIC_OUTBOX):
        magic = _STATE_MAGIC_OUTBOX
    else:
        raise StateError("table value is not a relsec worker state")
    head, _, engine_bytes = data[len(magic) :].partition(b"\n")
    try:
        parsed = orjson.loads(head)
        raw_offsets = parsed if magic is _STATE_MAGIC else parsed["offsets"]
        offsets = {str(k): int(v) for k, v in raw_offsets.items()}
        outbox = [
            Output(
                str(topic),
                None if key is None else base64.b64decode(key),
                base64.b64decode(value),
                None if partition is None else int(partition),
            )
            for topic, key, value, partition in (
                parsed.get("outbox", []) if magic is _STATE_MAGIC_OUTBOX else []
            )
        ]
    except (
        orjson.JSONDecodeError,
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
        binascii.Error,
    ) as exc:
        raise StateError(f"stored state header is malformed: {exc!r}") from None
    return offsets, engine_bytes, outbox
