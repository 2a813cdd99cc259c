"""Following the worker's topics into the read model: one consumer, all partitions.

The consumer is assigned every partition of the state changelog, the alerts topic and
the three input topics, from their beginning, and follows them. It belongs to no
consumer group (nothing is committed; a restart reads everything again) and calls
nothing in the workers, so any number of API replicas can run. Topics that do not
exist yet (the worker creates the changelog on its first start) and partitions added
later are picked up by a metadata refresh every ``metadata_interval_s``.

librdkafka's own log lines go through the ``relsec.api.kafka`` logger (warnings and
up by default), not to the terminal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from agents.errors import DecodeError, ValidationError
from agents.model.events import parse_event
from streams.api.changelog import is_part_key, is_service_key
from streams.api.readmodel import ReadModel
from streams.codecs import Codec, make_codec
from streams.kafka.clients import consumer_config
from streams.settings import Settings

log = logging.getLogger("relsec.api")
KAFKA_LOG: Final = logging.getLogger("relsec.api.kafka")

CHANGELOG: Final = "changelog"
ALERTS: Final = "alerts"
DEPLOYS: Final = "deploys"
INCIDENTS: Final = "incidents"
SECURITY_FLAGS: Final = "security_flags"
INPUT_TYPES: Final = {DEPLOYS: "deploy", INCIDENTS: "incident", SECURITY_FLAGS: "security_flag"}


def topic_kinds(settings: Settings) -> dict[str, str]:
    """Each kind of topic the read model follows, and its name under the settings' prefix."""
    t = settings.topics
    return {
        CHANGELOG: t.state_changelog,
        ALERTS: t.alerts,
        DEPLOYS: t.deploys,
        INCIDENTS: t.incidents,
        SECURITY_FLAGS: t.security_flags,
    }


class RecordSink:
    """Turns consumed records into read-model updates (no Kafka here: testable alone)."""

    def __init__(self, model: ReadModel, codec: Codec, topics: dict[str, str]) -> None:
        self.model = model
        self.codec = codec
        self.kind_of = {name: kind for kind, name in topics.items()}

    def record(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int,
    ) -> None:
        kind = self.kind_of.get(topic)
        where = f"{topic}[{partition}]@{offset}"
        if kind == CHANGELOG:
            if is_part_key(key):
                assert key is not None
                self.model.parts.put(key, value)
                return
            if not is_service_key(key):
                return
            assert key is not None
            try:
                service = key.decode("utf-8")
            except UnicodeDecodeError:
                self.model.count_bad(kind, f"{where}: key is not UTF-8")
                return
            self.model.put_state(service, value, partition, offset, timestamp_ms)
        elif kind == ALERTS:
            if value is None:
                if key is not None:
                    self.model.alerts.delete(key.decode("ascii", "replace"))
                return
            try:
                self.model.alerts.put(self.codec.decode_alert(value))
            except (DecodeError, KeyError, TypeError) as exc:
                self.model.count_bad(kind, f"{where}: {exc}")
        elif kind in INPUT_TYPES:
            if value is None:
                return
            event_type = INPUT_TYPES[kind]
            try:
                obj = self.codec.decode_event(value, event_type)
                event = parse_event(obj, expected_type=event_type)
            except (DecodeError, ValidationError) as exc:
                # The worker dead-letters it; the timeline only counts it.
                self.model.count_bad(kind, f"{where}: {exc}")
                return
            self.model.history.add(event)


class TopicFollower:
    """A thread that consumes the topics into a :class:`ReadModel` until stopped."""

    def __init__(
        self,
        settings: Settings,
        model: ReadModel,
        clock: Callable[[], int],
        metadata_interval_s: float = 10.0,
        watermark_interval_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.model = model
        self.clock = clock
        self.topics = topic_kinds(settings)
        self.sink = RecordSink(model, make_codec(settings), self.topics)
        self.metadata_interval_s = metadata_interval_s
        self.watermark_interval_s = watermark_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.alive = False
        self.turned_ms = 0
        """Wall-clock time of the last turn of the consume loop (a stalled loop is unhealthy)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="relsec-api-source", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        self.alive = True
        try:
            self._loop()
        except Exception as exc:  # the thread's last word: reported by /healthz
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("the read model's consumer stopped")
        finally:
            self.alive = False

    def _loop(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        conf: dict[str, Any] = consumer_config(
            self.settings,
            None,
            **{
                "enable.partition.eof": True,
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                "logger": KAFKA_LOG,
            },
        )
        consumer = Consumer(conf)
        assigned: dict[str, set[int]] = {name: set() for name in self.topics.values()}
        next_metadata = 0.0
        next_watermarks = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                self.turned_ms = self.clock()
                if now >= next_metadata:
                    next_metadata = now + self.metadata_interval_s
                    self._refresh_assignment(consumer, assigned, TopicPartition, OFFSET_BEGINNING)
                messages = consumer.consume(num_messages=2000, timeout=0.2)
                for msg in messages:
                    err = msg.error()
                    topic = str(msg.topic())
                    partition = int(msg.partition() or 0)
                    progress = self.model.progress.get(topic)
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            if progress is not None:
                                progress.at_end(partition, int(msg.offset() or 0), self.clock())
                        elif err.fatal():
                            raise RuntimeError(f"{topic}[{partition}]: {err.str()}")
                        else:
                            log.warning("reading %s[%d]: %s", topic, partition, err.str())
                        continue
                    offset = int(msg.offset() or 0)
                    _kind, ts = msg.timestamp()
                    self.sink.record(topic, partition, offset, msg.key(), msg.value(), int(ts))
                    if progress is not None:
                        progress.read(partition, offset)
                if now >= next_watermarks:
                    next_watermarks = now + self.watermark_interval_s
                    self._update_watermarks(consumer, assigned, TopicPartition)
        finally:
            consumer.close()

    def _refresh_assignment(
        self, consumer: Any, assigned: dict[str, set[int]], tp: Any, beginning: int
    ) -> None:
        from confluent_kafka import KafkaException

        try:
            metadata = consumer.list_topics(timeout=5.0)
        except KafkaException as exc:
            log.warning("cannot list topics on %s: %s", self.settings.bootstrap_servers, exc)
            return
        new = []
        for name, have in assigned.items():
            info = metadata.topics.get(name)
            if info is None or info.error is not None:
                continue
            partitions = set(info.partitions)
            fresh = sorted(partitions - have)
            if fresh or not self.model.progress[name].known:
                self.model.progress[name].assign(sorted(partitions))
            for p in fresh:
                new.append(tp(name, p, beginning))
            have.update(fresh)
        if new:
            consumer.incremental_assign(new)

    def _update_watermarks(self, consumer: Any, assigned: dict[str, set[int]], tp: Any) -> None:
        parts = [tp(name, p) for name, ps in assigned.items() for p in ps]
        if not parts:
            return
        positions = {(x.topic, x.partition): x.offset for x in consumer.position(parts)}
        for part in parts:
            _low, high = consumer.get_watermark_offsets(part, cached=True)
            if high is None or high < 0:
                continue
            self.model.progress[part.topic].watermark(
                part.partition, int(high), positions.get((part.topic, part.partition))
            )
