"""The Faust app: one agent over the three co-partitioned input topics, state in a Table.

Flow for each input record: stage one of the :class:`Processor` (decode,
validate, partition check) runs on arrival; valid events wait in the
:class:`~streams.pipeline.merge.PartitionMerge` of their partition; released
events go through the engine in batches. For a batch, every output record is
sent and its delivery awaited, then the touched services' states are written
to the table (whose changelog topic restores them on restart or rebalance),
and only then are the input records acked. Faust commits acked offsets after
flushing its producer, so an offset is never committed before the record's
effects were produced (at-least-once; alert ids are deterministic, so a
redelivery re-sends the same alert ids).

Faust settings that matter here: agent concurrency 1 (upstream #606), acks
taken over by us (``noack``), ``stream_wait_empty=False`` (records held in the
merge are never acked before a rebalance; they are redelivered to the new
owner), web server bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.engine import EngineConfig
from agents.errors import RelsecError
from streams.codecs import make_codec
from streams.kafka.clients import producer_config, ssl_context
from streams.pipeline.acks import Delivered, OffsetOrderedAcks
from streams.pipeline.kafka_runtime import send_outputs
from streams.pipeline.merge import CAUGHT_UP, LAGGING, UNKNOWN, PartitionMerge
from streams.pipeline.metrics import PipelineMetrics
from streams.pipeline.options import WorkerOptions, wall_ms
from streams.pipeline.processor import Admitted, InputRecord, Output, Processor
from streams.settings import Settings

log = logging.getLogger("relsec.worker")

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


class Runtime:
    """The worker's mutable parts: merges per partition, the processor, acks."""

    def __init__(self, app: faust.App, settings: Settings, options: WorkerOptions) -> None:
        self.app = app
        self.settings = settings
        self.options = options
        self.metrics = PipelineMetrics()
        self.table: Any = None
        self.stream: Any = None
        self.processor = Processor(
            settings.topics,
            make_codec(settings),
            EngineConfig(allowed_lateness_ms=settings.allowed_lateness_ms),
            options.partitions,
            self._load_state,
            wall_ms,
            self.metrics,
        )
        self.merges: dict[int, PartitionMerge[tuple[Any, Admitted, Delivered[Any]]]] = {}
        self.next_offset: dict[TP, int] = {}
        self.positions: dict[TP, int] = {}
        self.lock = asyncio.Lock()
        self.acks: OffsetOrderedAcks[TP, Any] = OffsetOrderedAcks()
        self.pending: list[Any] = []
        self.last_event_of_partition: dict[int, Any] = {}
        # At-least-once: outputs go through librdkafka (much faster per record than
        # Faust's producer); exactly-once: through Faust's transactional producer.
        self.direct = None if options.exactly_once else DirectProducer(settings)
        self.output_topics: dict[str, Any] = {}

    # -- state ---------------------------------------------------------------

    def _load_state(self, service: str) -> bytes | None:
        value = self.table.get(service.encode("utf-8"))
        return bytes(value) if value is not None else None

    def _store_states(
        self, touched: Sequence[tuple[str, int, bytes]], events: dict[int, Any]
    ) -> None:
        for service, partition, data in touched:
            token = _current_event.set(weakref.ref(events[partition]))
            try:
                self.table[service.encode("utf-8")] = data
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
        entry = self.acks.deliver(tp, message.offset, event, start=self._committed_offset(tp))
        record = InputRecord(
            message.topic, message.partition, message.offset, message.key, message.value
        )
        admitted = self.processor.admit(record)
        if isinstance(admitted, Admitted):
            merge = self.merges.get(record.partition)
            if merge is None:
                merge = self.merges[record.partition] = PartitionMerge(self.settings.topics.inputs)
            merge.add(record.topic, admitted.key, wall_ms(), (event, admitted, entry))
            if len(merge) >= self.options.batch_records:
                await self.drain()
            return
        async with self.lock:
            await self._send_all(admitted)
            self.acks.finish(entry)

    def _input_pending(self) -> int:
        """Records Faust has fetched and queued for the agent but not handed to it yet."""
        try:
            return int(self.stream.channel.queue.qsize())
        except Exception:  # no stream yet, or a Faust without that queue
            return 0

    def _lag_state(self, partition: int) -> Any:
        consumer = self.app.consumer
        pending = self._input_pending()

        def state(topic: str) -> str:
            tp = TP(topic, partition)
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # not assigned or no fetch yet
                return UNKNOWN
            if highwater is None:
                return UNKNOWN
            # What was delivered to us counts; the fetch position runs ahead of it.
            delivered = self.next_offset.get(tp)
            position = self.positions.get(tp)
            if delivered is not None:
                if delivered >= highwater:
                    return CAUGHT_UP
                # A transactional producer's commit markers are never delivered: read to
                # the high watermark with nothing queued for the agent is caught up.
                if position is not None and position >= highwater and not pending:
                    return CAUGHT_UP
                return LAGGING
            if position is None:
                return UNKNOWN
            if position < highwater:
                return LAGGING
            # Fetched up to the high watermark but nothing delivered yet: caught up unless
            # records are still queued for the agent (they may be this partition's).
            return UNKNOWN if pending else CAUGHT_UP

        return state

    async def drain(self) -> int:
        """Run the events the merge releases through the engine and send their outputs."""
        async with self.lock:
            now = wall_ms()
            released = 0
            for partition, merge in self.merges.items():
                for _, (event, admitted, entry) in merge.release(
                    self._lag_state(partition),
                    now,
                    self.options.merge_idle_ms,
                    self.options.merge_lagging_max_ms,
                    limit=self.options.batch_records - released,
                    caught_up_grace_ms=self.options.merge_caught_up_grace_ms,
                    far_ahead_ms=self.settings.allowed_lateness_ms // 2,
                    far_ahead_grace_ms=self.options.merge_far_ahead_grace_ms,
                ):
                    await self._send_all(self.processor.apply(admitted))
                    self.last_event_of_partition[admitted.record.partition] = event
                    self.acks.finish(entry)
                    released += 1
            self.metrics.merge_buffered.set(sum(len(m) for m in self.merges.values()))
        if self.acks.finished >= self.options.checkpoint_records:
            await self.checkpoint()
        return released

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
            self._store_states(self.processor.take_dirty(), self.last_event_of_partition)
            # In offset order per partition: a record still in the merge holds back
            # the acks of the finished records behind it (module docstring of acks).
            for tp, entry in self.acks.take_ready():
                if entry.skipped:
                    self._ack_never_delivered(tp, entry.skipped, entry.offset)
                await self.stream.ack(entry.item)

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
        consumer = self.app.consumer
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
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, highwater - position)
                )
        self.metrics.services.set(len(self.processor.engines))

    def on_assigned(self, assigned: Any) -> None:
        """Forget Faust's read offsets of the assigned input partitions.

        Faust drops fetched messages below its per-partition read offset. When a
        fetch of a partition is still being handed out while the partition is
        revoked, that offset is written again after the revocation cleared it;
        if the partition later comes back with no committed offset, every record
        below the stale offset is silently dropped (seen with two workers and a
        kill). The seek to committed offsets that follows sets it afresh.
        """
        read_offsets = getattr(self.app.consumer, "_read_offset", None)
        if read_offsets is None:
            return
        inputs = set(self.settings.topics.inputs)
        for tp in assigned:
            if tp.topic in inputs:
                read_offsets.pop(tp, None)

    def on_revoked(self) -> None:
        # Unacked records are redelivered to the partitions' next owner.
        self.acks.clear()
        self.pending.clear()
        self.last_event_of_partition.clear()
        for merge in self.merges.values():
            merge.clear()
        self.merges.clear()
        self.processor.forget()
        self.next_offset.clear()
        self.positions.clear()


class DirectProducer:
    """A confluent-kafka producer for outputs; delivery is checked at each checkpoint."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(
            producer_config(settings, **{"linger.ms": 5, "on_delivery": self._on_delivery})
        )
        self.errors: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err}")

    def send(self, outputs: Sequence[Output]) -> None:
        send_outputs(self.producer, outputs)

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = await loop.run_in_executor(None, self.producer.flush, 5.0)
            if not remaining:
                break
            log.warning("waiting for %d output record(s) to be delivered", remaining)
        if self.errors:
            detail = "; ".join(self.errors[:5])
            raise RelsecError(f"output records were not delivered, not committing: {detail}")


def build_app(
    settings: Settings, options: WorkerOptions | None = None
) -> tuple[faust.App, Runtime]:
    """The Faust app of the worker and its runtime."""
    options = options or WorkerOptions()
    topics = settings.topics
    conf: dict[str, Any] = dict(
        broker=_broker_urls(settings.bootstrap_servers),
        store=options.store,
        topic_partitions=options.partitions,
        topic_replication_factor=options.replication_factor,
        topic_allow_declare=True,
        web_host=options.web_host,
        web_bind=options.web_host,
        web_port=options.web_port,
        web_in_thread=False,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="exactly_once" if options.exactly_once else "at_least_once",
        table_standby_replicas=0,
        producer_acks=-1,
        producer_linger=0.005,
        table_key_serializer="raw",
        table_value_serializer="raw",
    )
    credentials = _credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    if options.data_dir:
        conf["datadir"] = options.data_dir
    app = faust.App(topics.consumer_group, **conf)
    runtime = Runtime(app, settings, options)
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
        runtime.stream = stream.noack()
        async for event in runtime.stream.events():
            await runtime.on_event(event)

    @app.timer(options.drain_interval_ms / 1000)
    async def drain_timer() -> None:
        if runtime.stream is not None:
            # A full batch means more may be releasable: go on, letting input in between.
            while await runtime.drain() >= options.batch_records:
                await asyncio.sleep(0)

    @app.timer(options.checkpoint_every_ms / 1000)
    async def checkpoint_timer() -> None:
        if runtime.stream is not None:
            await runtime.checkpoint()

    @app.timer(1.0)
    async def refresh_timer() -> None:
        await runtime.refresh()

    @app.on_partitions_revoked.connect
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        runtime.on_revoked()

    @app.on_partitions_assigned.connect
    async def on_assigned(app_: Any, assigned: Any, **kwargs: Any) -> None:
        runtime.on_assigned(assigned)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp wants the charset apart from the content type.
        return web.bytes(
            generate_latest(runtime.metrics.registry),
            content_type=CONTENT_TYPE_LATEST.split(";")[0],
        )

    @app.page("/healthz")
    async def health_page(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "services_cached": len(runtime.processor.engines)})

    return app, runtime


def limit_fetch_wait(fetch_max_wait_ms: int) -> None:
    """Cap the fetch wait of the consumer Faust creates (Faust hard-codes 1500 ms).

    The event-time merge holds a record until every other input partition has shown
    its next one; with long-poll fetches of 1.5 s that wait is what alert latency is
    made of. Patches the class in this process only: call it from the worker's entry.
    """
    import aiokafka
    import faust.transport.drivers.aiokafka as driver

    base = driver.aiokafka.AIOKafkaConsumer
    if getattr(base, "_relsec_fetch_cap", None) is not None:
        return

    class CappedConsumer(base):  # type: ignore[misc, valid-type]
        _relsec_fetch_cap = fetch_max_wait_ms

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(
                int(kwargs.get("fetch_max_wait_ms", fetch_max_wait_ms)), fetch_max_wait_ms
            )
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = CappedConsumer  # type: ignore[misc]


def run_worker(settings: Settings, options: WorkerOptions, loglevel: str = "warning") -> None:
    """Run the worker until SIGINT/SIGTERM."""
    limit_fetch_wait(options.fetch_max_wait_ms)
    app, _ = build_app(settings, options)
    level = {"warning": "warn", "critical": "crit"}.get(loglevel.lower(), loglevel.lower())
    worker = faust.Worker(app, loglevel=level, quiet=True)
    worker.execute_from_commandline()
