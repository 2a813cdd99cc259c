"""The Faust runtime: the worker core on one Faust agent, state in a Faust Table.

This module is the client wiring: a Faust app whose one agent (``correlate``,
concurrency 1) reads the three co-partitioned input topics, a Table whose
changelog is the worker's state changelog, a confluent-kafka producer for the
outputs, and what only Faust needs — acknowledging records in offset order
(:mod:`streams.worker.acks`), and the lag of a partition as Faust's consumer
knows it. What to do with the records is the core's (:mod:`streams.worker.core`).

For each input record the core admits it (a bad record's dead letter is sent at
once) or holds it in the merge; the drain timer releases one slice at a time
through the engine and sends the outputs at once. Every second (or every
``checkpoint_records`` records) the checkpoint waits for every output to be
delivered, writes the touched services' states to the Table (split into parts
when a state is bigger than a record may be), and only then acks the inputs;
Faust commits acked offsets after flushing its producer (which also carries the
Table's changelog), so a committed offset always has its alerts, dead letters
and state behind it (at-least-once; alert ids are deterministic, so a
redelivery re-sends the same ids).

Faust settings that matter here: agent concurrency 1 (upstream #606), acks
taken over by us (``noack``), ``stream_wait_empty=False`` (records held in the
merge are never acked before a rebalance; they are redelivered to the new
owner), Faust's own web server off: ``/metrics`` and ``/healthz`` are the
worker's threaded endpoint (:mod:`streams.worker.web`), so ``/healthz`` answers
503 even while the event loop is stuck.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from typing import Any, cast

import faust
from faust.streams import _current_event
from faust.types import TP

from agents.errors import TopicError
from streams.kafka.clients import producer_config, ssl_context
from streams.kafka.topics import max_message_bytes
from streams.settings import Settings
from streams.worker.acks import Delivered, OffsetOrderedAcks
from streams.worker.core import WorkerCore
from streams.worker.delivery import RecordLimits, refusal, send
from streams.worker.errors import OutputsRefused, Refusal
from streams.worker.merge import CAUGHT_UP, LAGGING, UNKNOWN
from streams.worker.metrics import PipelineMetrics
from streams.worker.options import WorkerOptions, wall_ms
from streams.worker.processor import StateToStore
from streams.worker.records import InputRecord, Output
from streams.worker.state_records import StoredState, decode_state, encode_state, head_parts
from streams.worker.web import WorkerWeb

log = logging.getLogger("relsec.worker")

MARKER_QUIET_MS = 1_000
"""How long a partition fetched to its high watermark must deliver nothing before the
offsets still missing count as transaction markers (see FaustRuntime.lag_state)."""
FAUST_MAX_REQUEST_BYTES = 1_000_000
"""Faust's ``producer_max_request_size`` default: the Table's records must fit it too."""

try:
    from faust.types.tuples import ack_lock
except ImportError:  # a Faust that acks without a lock
    ack_lock = threading.RLock()


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]


def _credentials(settings: Settings) -> Any:
    sec = settings.security
    if sec.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            mechanism=sec.sasl_mechanism,
            ssl_context=ssl_context(sec) if sec.uses_tls() else None,
        )
    if sec.uses_tls():
        return faust.SSLCredentials(ssl_context(sec))
    return None


def faust_limits(settings: Settings, options: WorkerOptions) -> RecordLimits:
    """Record size limits: each topic's, the output producer's, and Faust's own producer
    (which writes the Table's changelog)."""
    topics = settings.topics
    names = [topics.alerts, topics.alerts_ocsf, topics.dlq, topics.state_changelog]
    try:
        per_topic = max_message_bytes(settings, names)
    except TopicError as exc:
        log.warning("record size limits unknown (%s): assuming the producer's", exc)
        per_topic = {}
    changelog = per_topic.get(topics.state_changelog, FAUST_MAX_REQUEST_BYTES)
    per_topic[topics.state_changelog] = min(changelog, FAUST_MAX_REQUEST_BYTES)
    return RecordLimits.learned(per_topic, options.producer_max_message_bytes)


Token = tuple[Any, Delivered[Any]]
"""What the Faust runtime keeps with a held record: its Faust event and its ack entry."""


class FaustRuntime:
    """The worker's Faust side: the core, the Table, acks in offset order, outputs."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        options: WorkerOptions,
        limits: RecordLimits | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.options = options
        self.metrics = PipelineMetrics()
        self.limits = limits or RecordLimits(FAUST_MAX_REQUEST_BYTES)
        self.table: Any = None
        self.stream: Any = None
        self.core = WorkerCore(
            settings, options, self._load_state, "faust", wall_ms, self.metrics, self.limits
        )
        self.next_offset: dict[TP, int] = {}
        self.positions: dict[TP, int] = {}
        self.quiet_since: dict[TP, int] = {}  # last delivery on the partition (see lag_state)
        self.lock = asyncio.Lock()
        self.acks: OffsetOrderedAcks[TP, Any] = OffsetOrderedAcks()
        self.pending: list[Any] = []
        self.last_event_of_partition: dict[int, Any] = {}
        # At-least-once: outputs go through librdkafka (much faster per record than
        # Faust's producer); exactly-once: through Faust's transactional producer.
        self.direct = None if options.exactly_once else DirectProducer(settings, self.limits)
        self.output_topics: dict[str, Any] = {}
        self.epoch = uuid.uuid4().hex[:12]
        self.seq = 0

    # -- state ---------------------------------------------------------------

    def _table_get(self, key: bytes) -> bytes | None:
        value = self.table.get(key)
        return bytes(value) if value is not None else None

    def _load_state(self, service: str) -> StoredState | None:
        key = service.encode("utf-8")
        head = self._table_get(key)
        return None if head is None else decode_state(key, head, self._table_get)

    def _store_states(self, states: Sequence[StateToStore], events: dict[int, Any]) -> None:
        """Write each state to the Table, as parts and a head when it is too big for one
        record; the parts of the state it replaces are deleted after the new head."""
        self.seq += 1
        uid = f"{self.epoch}.{self.seq}"
        topic = self.settings.topics.state_changelog
        for state in states:
            key = state.service.encode("utf-8")
            previous = self._table_get(key)
            records = encode_state(
                topic,
                key,
                StoredState(state.offsets, state.engine),
                uid,
                state.partition,
                self.limits.value_budget(topic, len(key)),
            )
            replaced = head_parts(previous) if previous is not None else None
            token = _current_event.set(weakref.ref(events[state.partition]))
            try:
                for record in records:
                    self.table[record.key] = record.value
                if replaced is not None:
                    for part_key in replaced.part_keys(key):
                        self.table.pop(part_key, None)
            finally:
                _current_event.reset(token)

    # -- input ---------------------------------------------------------------

    def _topic(self, name: str) -> Any:
        topic = self.output_topics.get(name)
        if topic is None:
            topic = self.output_topics[name] = self.app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                internal=False,
            )
        return topic

    async def on_event(self, event: Any) -> None:
        message = event.message
        tp = message.tp
        self.next_offset[tp] = message.offset + 1
        self.quiet_since[tp] = wall_ms()
        entry = self.acks.deliver(tp, message.offset, event, start=self._committed_offset(tp))
        record = InputRecord(
            message.topic, message.partition, message.offset, message.key, message.value
        )
        disposal = self.core.admit(record, wall_ms(), token=(event, entry))
        self.core.progress.beat()
        if not disposal:
            merge = self.core.merges[record.partition]
            if len(merge) >= self.options.batch_records:
                await self.drain()
            return
        async with self.lock:
            await self._send_all(disposal)
            self.acks.finish(entry)

    def _input_pending(self) -> int:
        """Records Faust has fetched and queued for the agent but not handed to it yet."""
        try:
            return int(self.stream.channel.queue.qsize())
        except Exception:  # no stream yet, or a Faust without that queue
            return 0

    def lag_state(self, topic: str, partition: int) -> str:
        """Where an input partition stands, for the merge.

        Faust's fetch position runs ahead of what the agent was handed: records fetched
        sit in aiokafka's and Faust's buffers, where the agent's queue does not show
        them. So "fetched to the high watermark" is believed only when what is missing
        could be transaction markers (never delivered): at most one offset short, or
        nothing delivered on the partition for :data:`MARKER_QUIET_MS`. Believing it
        sooner let a backfill's topics run days ahead of each other (17 000 of 30 000
        records dead-lettered as late, tests/worker/test_real_traffic.py).
        """
        tp = TP(topic, partition)
        try:
            highwater = self.app.consumer.highwater(tp)
        except Exception:  # not assigned or no fetch yet
            return UNKNOWN
        if highwater is None:
            return UNKNOWN
        delivered = self.next_offset.get(tp)
        if delivered is not None and delivered >= highwater:
            return CAUGHT_UP
        position = self.positions.get(tp)
        if position is None:
            return UNKNOWN if delivered is None else LAGGING
        if position < highwater:
            return LAGGING
        if self._input_pending():
            return UNKNOWN if delivered is None else LAGGING
        start = delivered if delivered is not None else self._committed_offset(tp)
        if start is not None and highwater - start <= 1:
            return CAUGHT_UP  # one transaction marker after the last record
        now = wall_ms()
        quiet_since = self.quiet_since.setdefault(tp, now)
        if now - quiet_since >= MARKER_QUIET_MS:
            return CAUGHT_UP  # fetched to the end and nothing came for a while
        return UNKNOWN if delivered is None else LAGGING

    async def drain(self) -> int:
        """Release one slice from the merge through the engine and send its outputs."""
        started = time.perf_counter()
        async with self.lock:
            released = self.core.release(wall_ms(), self, limit=self.options.batch_records)
            for outputs in released.outputs.values():
                await self._send_all(outputs)
            for admitted in released.items:
                event, entry = cast(Token, admitted.token)
                self.last_event_of_partition[admitted.record.partition] = event
                self.acks.finish(entry)
            self.metrics.merge_buffered.set(self.core.buffered())
        self.core.progress.beat()
        self.metrics.turn_seconds.observe(time.perf_counter() - started)
        if self.acks.finished >= self.options.checkpoint_records:
            await self.checkpoint()
        return len(released.items)

    async def checkpoint(self) -> None:
        """Wait for every output to be delivered, store touched states, then ack the inputs.

        Faust commits acked offsets only after flushing its producer (which also
        carries the table's changelog), so a committed offset always has its
        alerts, dead letters and state behind it.
        """
        async with self.lock:
            if not self.acks.finished:
                return
            await self._wait_delivered()
            self._store_states(self.core.take_states(), self.last_event_of_partition)
            # In offset order per partition: a record still in the merge holds back
            # the acks of the finished records behind it (module docstring of acks).
            for tp, entry in self.acks.take_ready():
                if entry.skipped:
                    self._ack_never_delivered(tp, entry.skipped, entry.offset)
                await self.stream.ack(entry.item)
            self.core.evict_idle(wall_ms())

    def _committed_offset(self, tp: TP) -> int | None:
        committed = getattr(self.app.consumer, "_committed_offset", None)
        return committed.get(tp) if committed is not None else None

    def _ack_never_delivered(self, tp: TP, offsets: range, record_offset: int) -> None:
        """Acknowledge offsets that were never delivered (transaction markers, aborted or
        compacted records) in Faust's books, so its run of consecutive acked offsets goes
        on past them.

        Faust tracks such gaps itself, but its record of a gap also holds the offset of
        the record after it; merged into the acked offsets, that offset appears twice
        and the run stops there (commits advance one record per commit). Its record of
        the gaps up to this record is dropped: these offsets are in the books now.
        """
        consumer: Any = self.app.consumer  # Faust's private books (see the docstring)
        try:
            acked, index = consumer._acked[tp], consumer._acked_index[tp]
            committed, gaps = consumer._committed_offset[tp], consumer._gap[tp]
        except (AttributeError, KeyError):  # another Faust: its own gap handling stays
            return
        with ack_lock:
            for offset in offsets:
                if offset not in index and (committed is None or offset >= committed):
                    index.add(offset)
                    acked.append(offset)
            gaps.chop(0, record_offset + 1)

    async def _send_all(self, outputs: Sequence[Output]) -> None:
        if self.direct is not None:
            self.direct.send(outputs)
            return
        for o in outputs:
            self.pending.append(
                await self._topic(o.topic).send(key=o.key, value=o.value, partition=o.partition)
            )

    async def _wait_delivered(self) -> None:
        if self.direct is not None:
            await self.direct.flush()
        if self.pending:
            await asyncio.gather(*self.pending)
            self.pending.clear()

    async def refresh(self) -> None:
        """Positions of assigned input partitions (for the merge) and lag (for metrics)."""
        consumer = self.app.consumer
        inputs = set(self.settings.topics.inputs)
        lags: list[tuple[str, int, int]] = []
        for tp in list(consumer.assignment()):
            if tp.topic not in inputs:
                continue
            try:
                fetched = await consumer.position(tp)
            except Exception:
                continue
            if fetched is not None:
                self.positions[tp] = fetched
            highwater = consumer.highwater(tp)
            position = self.next_offset.get(tp, self.positions.get(tp))
            if position is not None and fetched is not None and not self._input_pending():
                position = max(position, fetched)  # past transaction markers
            if highwater is not None and position is not None:
                lags.append((tp.topic, tp.partition, highwater - position))
        self.core.refresh_metrics(lags)

    def health(self) -> dict[str, Any]:
        return self.core.health(held_for_ack=self.acks.unfinished())

    def on_assigned(self, assigned: Any) -> None:
        """Forget Faust's read offsets of the assigned input partitions.

        Faust drops fetched messages below its per-partition read offset. When a
        fetch of a partition is still being handed out while the partition is
        revoked, that offset is written again after the revocation cleared it;
        if the partition later comes back with no committed offset, every record
        below the stale offset is silently dropped (seen with two workers and a
        kill). The seek to committed offsets that follows sets it afresh.
        """
        inputs = set(self.settings.topics.inputs)
        self.core.assigned_partitions(tp.partition for tp in assigned if tp.topic in inputs)
        self.core.progress.beat()
        read_offsets = getattr(self.app.consumer, "_read_offset", None)
        if read_offsets is None:
            return
        for tp in assigned:
            if tp.topic in inputs:
                read_offsets.pop(tp, None)

    def on_revoked(self) -> None:
        # Unacked records are redelivered to the partitions' next owner.
        self.acks.clear()
        self.pending.clear()
        self.last_event_of_partition.clear()
        self.core.drop_partitions()
        self.core.merges.clear()
        self.next_offset.clear()
        self.positions.clear()
        self.quiet_since.clear()


class DirectProducer:
    """A confluent-kafka producer for outputs; delivery is checked at each checkpoint."""

    def __init__(self, settings: Settings, limits: RecordLimits) -> None:
        from confluent_kafka import Producer

        self.topics = settings.topics
        self.limits = limits
        self.producer = Producer(
            producer_config(settings, **{"linger.ms": 5, "on_delivery": self._on_delivery})
        )
        self.refusals: list[Refusal] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.refusals.append(refusal(err, msg, self.topics, self.limits))

    def send(self, outputs: Sequence[Output]) -> None:
        send(self.producer, outputs)

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = await loop.run_in_executor(None, self.producer.flush, 5.0)
            if not remaining:
                break
            log.warning("waiting for %d output record(s) to be delivered", remaining)
        if self.refusals:
            raise OutputsRefused(self.refusals)


def build_app(
    settings: Settings, options: WorkerOptions | None = None, limits: RecordLimits | None = None
) -> tuple[faust.App, FaustRuntime]:
    """The Faust app of the worker and its runtime."""
    options = options or WorkerOptions(runtime="faust")
    topics = settings.topics
    conf: dict[str, Any] = dict(
        broker=_broker_urls(settings.bootstrap_servers),
        store=options.faust_store_url,
        topic_partitions=options.partitions,
        topic_replication_factor=options.replication_factor or 1,
        topic_allow_declare=True,
        web_enabled=False,  # the worker's own threaded endpoint serves /metrics, /healthz
        web_host=options.web_host,
        web_bind=options.web_host,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="exactly_once" if options.exactly_once else "at_least_once",
        table_standby_replicas=0,
        producer_acks=-1,
        producer_linger=0.005,
        producer_max_request_size=FAUST_MAX_REQUEST_BYTES,
        table_key_serializer="raw",
        table_value_serializer="raw",
    )
    credentials = _credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    if options.data_dir:
        conf["datadir"] = options.data_dir
    app = faust.App(topics.consumer_group, **conf)
    runtime = FaustRuntime(app, settings, options, limits)
    inputs = app.topic(
        *topics.inputs,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )
    runtime.table = app.Table(
        "service-state",
        default=None,
        partitions=options.partitions,
        key_type=bytes,
        value_type=bytes,
    )

    @app.agent(inputs, concurrency=1)
    async def correlate(stream: Any) -> None:
        """The stream agent: every input record goes to the worker core."""
        runtime.stream = stream.noack()
        async for event in runtime.stream.events():
            await runtime.on_event(event)

    @app.timer(options.drain_interval_ms / 1000)  # type: ignore[untyped-decorator]
    async def drain_timer() -> None:
        if runtime.stream is not None:
            # A full slice means more may be releasable: go on, letting input in between.
            while await runtime.drain() >= options.batch_records:
                await asyncio.sleep(0)
        runtime.core.progress.beat()

    @app.timer(options.checkpoint_every_ms / 1000)  # type: ignore[untyped-decorator]
    async def checkpoint_timer() -> None:
        if runtime.stream is not None:
            await runtime.checkpoint()

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def refresh_timer() -> None:
        await runtime.refresh()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        runtime.on_revoked()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app_: Any, assigned: Any, **kwargs: Any) -> None:
        runtime.on_assigned(assigned)

    return app, runtime


def limit_fetch_wait(fetch_max_wait_ms: int) -> None:
    """Cap the fetch wait of the consumer Faust creates (Faust hard-codes 1500 ms).

    The event-time merge holds a record until every other input partition has shown
    its next one; with long-poll fetches of 1.5 s that wait is what alert latency is
    made of. Patches the class in this process only: call it from the worker's entry.
    """
    import aiokafka  # type: ignore[import-untyped]
    import faust.transport.drivers.aiokafka as driver

    base = driver.aiokafka.AIOKafkaConsumer  # type: ignore[attr-defined]
    if getattr(base, "_relsec_fetch_cap", None) is not None:
        return

    class CappedConsumer(base):  # type: ignore[misc, valid-type]
        _relsec_fetch_cap = fetch_max_wait_ms

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(
                int(kwargs.get("fetch_max_wait_ms", fetch_max_wait_ms)), fetch_max_wait_ms
            )
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = CappedConsumer


def serve(settings: Settings, options: WorkerOptions) -> None:
    """Run the Faust runtime with the worker's web endpoint until SIGINT/SIGTERM."""
    limit_fetch_wait(options.fetch_max_wait_ms)
    app, runtime = build_app(settings, options, faust_limits(settings, options))
    web = WorkerWeb(
        options.web_host,
        options.web_port,
        runtime.metrics,
        runtime.health,
        read_timeout_s=options.web_read_timeout_ms / 1000,
        max_connections=options.web_max_connections,
    )
    level = options.loglevel.lower()
    level = {"warning": "warn", "critical": "crit"}.get(level, level)
    worker = faust.Worker(app, loglevel=level, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        web.close()
