"""What the worker does with input records, without Kafka: decode, route, engine, outputs.

Stage one (:meth:`Processor.admit`) runs when a record arrives: it decodes and
validates it, checks that it sits on the partition its service key hashes to,
and returns either an :class:`Admitted` event for the event-time merge or the
outputs that dispose of it (a dead letter, or a re-keyed copy). Stage two
(:meth:`Processor.apply_batch`) runs when the merge releases events: the events
of one service go to its engine in one turn (``ServiceEngine.process_batch``),
and the alerts and dead letters to produce come back as :class:`Output` values.

The processor caches each service's engine, loaded from the stored state on first
use; :meth:`Processor.take_dirty` hands the touched services' states to the
checkpoint, and :meth:`Processor.evict_idle` drops engines nobody touched for a
while once their state is stored (the stored bytes stay in the store).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import orjson

from agents.engine import EngineConfig, ServiceEngine
from agents.errors import DecodeError, StateError, ValidationError
from agents.model.alerts import Alert
from agents.model.events import Event, order_key
from agents.model.timefmt import format_rfc3339_ms
from streams.codecs import Codec, decode_input_event
from streams.kafka.clients import murmur2_partition
from streams.ocsf import alert_value_to_ocsf
from streams.settings import Topics
from streams.worker.metrics import PipelineMetrics
from streams.worker.records import InputRecord, Output
from streams.worker.state_records import StoredState

log = logging.getLogger("relsec.worker")

PARTITION_CACHE_LIMIT = 100_000
"""Services whose partition number is remembered (murmur2 is pure Python)."""


class Admitted(NamedTuple):
    """A valid event on the right partition, waiting for the merge (a named tuple, like
    :class:`~streams.worker.records.InputRecord`: one per record).

    ``token`` is the runtime's own handle of the record (the Faust runtime keeps its
    event and acknowledgement entry there)."""

    record: InputRecord
    event: Event
    token: Any = None

    @property
    def key(self) -> tuple[int, int, str]:
        return order_key(self.event)


class StateToStore(NamedTuple):
    """A touched service's state, for the checkpoint to store."""

    service: str
    partition: int
    offsets: dict[str, int]
    engine: bytes


StateLoader = Callable[[str], StoredState | None]


class Processor:
    """Engine state per service (cached, loaded from the store on first use) and the outputs."""

    def __init__(
        self,
        topics: Topics,
        codec: Codec,
        config: EngineConfig,
        num_partitions: int,
        load_state: StateLoader,
        clock: Callable[[], int],
        metrics: PipelineMetrics | None = None,
        dead_letter_budget: int | None = None,
    ) -> None:
        self.topics = topics
        self.codec = codec
        self.config = config
        self.num_partitions = num_partitions
        self.load_state = load_state
        self.clock = clock
        self.metrics = metrics or PipelineMetrics()
        self.dead_letter_budget = dead_letter_budget
        self.engines: dict[str, ServiceEngine] = {}
        self.dirty: dict[str, int] = {}  # service -> partition of its last event
        # Touched services in the order they were first touched since their state was last
        # taken, with when; per service and input topic the first record applied since;
        # per input partition those first records in a heap by offset (a slice applies
        # its events service by service, not in offset order; entries of services taken
        # since are dropped when they come to the top): what the commit may not pass.
        self._dirty_since_ms: dict[str, int] = {}
        self._first_unstored: dict[str, dict[str, int]] = {}
        self._unstored: dict[tuple[str, int], list[tuple[int, str]]] = {}
        self.offsets: dict[str, dict[str, int]] = {}  # service -> topic -> last offset applied
        self.last_used_ms: dict[str, int] = {}
        self._partition_of: dict[str, int] = {}
        self._records_in = {t: self.metrics.records_in.labels(t) for t in topics.inputs}

    # -- stage one -----------------------------------------------------------

    def admit(self, record: InputRecord, token: object = None) -> Admitted | list[Output]:
        counter = self._records_in.get(record.topic)
        (counter or self.metrics.records_in.labels(record.topic)).inc()
        event_type = self.topics.type_for_input(record.topic)
        if event_type is None:
            return [self.dead_letter(record, "validation", f"{record.topic} is not an input topic")]
        if record.value is None:
            return [self.dead_letter(record, "undecodable", "record has no value (tombstone)")]
        try:
            event = decode_input_event(self.codec, record.value, event_type)
        except DecodeError as exc:
            return [self.dead_letter(record, exc.reason, exc.detail)]
        except ValidationError as exc:
            return [self.dead_letter(record, "validation", str(exc))]
        expected = self.partition_of(event.service)
        if expected != record.partition:
            # Never judged against another partition's state: re-keyed onto the partition
            # its service hashes to, where it is processed when it comes back.
            self.metrics.rerouted.inc()
            return [Output(record.topic, event.service.encode("utf-8"), record.value, expected)]
        return Admitted(record, event, token)

    def partition_of(self, service: str) -> int:
        expected = self._partition_of.get(service)
        if expected is None:
            if len(self._partition_of) > PARTITION_CACHE_LIMIT:
                self._partition_of.clear()
            expected = murmur2_partition(service.encode("utf-8"), self.num_partitions)
            self._partition_of[service] = expected
        return expected

    # -- stage two -----------------------------------------------------------

    def engine_for(self, service: str) -> ServiceEngine:
        engine = self.engines.get(service)
        if engine is None:
            stored = self.load_state(service)
            offsets: dict[str, int] = {}
            engine = None
            if stored is not None:
                try:
                    engine = ServiceEngine.from_bytes(stored.engine, self.config, self.clock())
                    offsets = dict(stored.offsets)
                except StateError as exc:
                    # A state we cannot read must not stop the pipeline: the service
                    # starts afresh (and says so), its later events judged on their own.
                    log.error("stored state of service %r is unreadable: %s", service, exc)
            if engine is None:
                engine = ServiceEngine(service, self.config)
            self.engines[service] = engine
            self.offsets[service] = offsets
            self.last_used_ms[service] = self.clock()
        return engine

    def apply(self, admitted: Admitted) -> list[Output]:
        """One event (the batch of one)."""
        return self.apply_batch(admitted.event.service, [admitted])

    def apply_batch(self, service: str, batch: Sequence[Admitted]) -> list[Output]:
        """The events of one ``service``, in the order the merge released them, in one turn
        of its engine; their outputs in order."""
        engine = self.engine_for(service)
        offsets = self.offsets[service]
        fresh: list[Admitted] = []
        for admitted in batch:
            record = admitted.record
            if record.offset <= offsets.get(record.topic, -1):
                # Processed before a restart or rebalance and already in the restored
                # state (its effects were delivered before that state was stored).
                self.metrics.duplicates.inc()
                continue
            offsets[record.topic] = record.offset
            fresh.append(admitted)
        if not fresh:
            return []
        now = self.clock()
        if service not in self.dirty:
            self._dirty_since_ms[service] = now
        self.dirty[service] = fresh[-1].record.partition
        self.last_used_ms[service] = now
        firsts = self._first_unstored.get(service)
        if firsts is None:
            firsts = self._first_unstored[service] = {}
        for admitted in fresh:
            record = admitted.record
            if record.topic not in firsts:
                firsts[record.topic] = record.offset
                where = (record.topic, record.partition)
                heap = self._unstored.get(where)
                if heap is None:
                    heap = self._unstored[where] = []
                heapq.heappush(heap, (record.offset, service))
        outcomes = engine.process_batch([a.event for a in fresh], now)
        out: list[Output] = []
        for admitted, outcome in zip(fresh, outcomes, strict=True):
            if outcome.disposition.dead_letter:
                out.append(
                    self.dead_letter(admitted.record, outcome.disposition.value, outcome.detail)
                )
            elif outcome.disposition == "duplicate":
                self.metrics.duplicates.inc()
            else:
                self.metrics.applied.inc()
                if outcome.alerts:
                    out.extend(self.alert_outputs(outcome.alerts))
        return out

    def alert_outputs(self, alerts: Iterable[Alert]) -> list[Output]:
        out: list[Output] = []
        for alert in alerts:
            self.metrics.alerts.labels(alert.rule, alert.status).inc()
            key = alert.alert_id.encode("ascii")
            out.append(Output(self.topics.alerts, key, self.codec.encode_alert_value(alert)))
            ocsf = alert_value_to_ocsf(alert)
            out.append(Output(self.topics.alerts_ocsf, key, orjson.dumps(ocsf)))
        return out

    def dead_letter(self, record: InputRecord, reason: str, detail: str) -> Output:
        """The dead letter of ``record``: its original bytes, where it was, why.

        A dead letter that would not fit the dead-letter topic (an input record near
        its own topic's limit, plus the reason) keeps the start of the value and says
        how long it was: refused, it would stop the worker at every restart.
        """
        self.metrics.dead_letters.labels(reason).inc()
        at = record.at
        letter = {
            "reason": reason,
            "detail": detail,
            "topic": at.topic,
            "partition": at.partition,
            "offset": at.offset,
            "key": record.key,
            "value": record.value,
            "detected_at": format_rfc3339_ms(self.clock()),
        }
        value = self.codec.encode_dead_letter(letter)
        budget = self.dead_letter_budget
        if budget is not None and len(value) > budget and record.value is not None:
            keep = max(0, len(record.value) - (len(value) - budget) - 256)
            letter["value"] = record.value[:keep]
            letter["detail"] = (
                f"{detail} (value truncated to its first {keep} of {len(record.value)} bytes "
                "to fit the dead-letter topic)"
            )
            value = self.codec.encode_dead_letter(letter)
        return Output(self.topics.dlq, record.key, value)

    # -- state ---------------------------------------------------------------

    def take_dirty(self, only: Iterable[str] | None = None) -> list[StateToStore]:
        """The touched services' states to store (and forget that they were touched);
        with ``only``, just those of these services that were touched (the others stay
        touched)."""
        dirty = self.dirty
        if only is None:
            taken = list(dirty.items())
            dirty.clear()
            self._dirty_since_ms.clear()
            self._first_unstored.clear()
            self._unstored.clear()
        else:
            taken = [(s, dirty.pop(s)) for s in only if s in dirty]
            for s, _ in taken:
                del self._dirty_since_ms[s]
                self._first_unstored.pop(s, None)
        return [
            StateToStore(s, p, dict(self.offsets[s]), self.engines[s].to_bytes()) for s, p in taken
        ]

    def touched_before(self, since_ms: int) -> list[str]:
        """The touched services first touched before ``since_ms`` (since their state was
        last taken), oldest first."""
        out: list[str] = []
        for service, first_ms in self._dirty_since_ms.items():
            if first_ms >= since_ms:
                break
            out.append(service)
        return out

    def oldest_touch_ms(self) -> int | None:
        """When the touched service touched longest ago was first touched (None: none)."""
        for first_ms in self._dirty_since_ms.values():
            return first_ms
        return None

    def unstored_from(self, topic: str, partition: int) -> int | None:
        """The offset of the first record applied from ``topic`` partition ``partition``
        whose service's state has not been taken since (None: there is none): input
        offsets may be committed up to it, not past it."""
        heap = self._unstored.get((topic, partition))
        if not heap:
            return None
        firsts = self._first_unstored
        while heap:
            offset, service = heap[0]
            first = firsts.get(service)
            if first is not None and first.get(topic) == offset:
                return offset
            heapq.heappop(heap)
        return None

    def evict_idle(self, idle_before_ms: int) -> int:
        """Drop the engines of services not touched since ``idle_before_ms`` whose state is
        stored (not dirty). Returns how many were dropped; they are loaded again from
        the store on their next event."""
        idle = [
            s
            for s, used in self.last_used_ms.items()
            if used < idle_before_ms and s not in self.dirty
        ]
        for service in idle:
            self.engines.pop(service, None)
            self.offsets.pop(service, None)
            del self.last_used_ms[service]
        return len(idle)

    def forget(self) -> None:
        """Drop cached state (after a rebalance the store is the truth)."""
        self.engines.clear()
        self.offsets.clear()
        self.dirty.clear()
        self._dirty_since_ms.clear()
        self._first_unstored.clear()
        self._unstored.clear()
        self.last_used_ms.clear()
