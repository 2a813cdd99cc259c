"""Reading the alerts topic: from its beginning to its current end, or following it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from agents.errors import DecodeError, RecordAt, RelsecError
from streams.codecs import make_codec
from streams.kafka.clients import consumer_config
from streams.settings import Settings


def read_alerts(
    settings: Settings,
    follow: bool = False,
    poll_timeout_s: float = 0.5,
    metadata_timeout_s: float = 10.0,
) -> Iterator[dict[str, Any]]:
    """Alert dicts in topic order (per partition); stops at the end unless ``follow``."""
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        TopicPartition,
    )

    codec = make_codec(settings)
    topic = settings.topics.alerts
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=f"relsec-alerts-reader-{uuid.uuid4().hex[:8]}",
            # EOF, not the high watermark, ends a partition: with exactly-once workers the
            # last offsets are transaction markers a committed read never returns.
            **{
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            },
        )
    )
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=metadata_timeout_s)
        except KafkaException as exc:
            raise RelsecError(
                f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
            ) from None
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise RelsecError(f"topic {topic} does not exist (run `relsec topics create`)")
        partitions = sorted(info.partitions)
        ends = {
            p: _high_watermark(consumer, TopicPartition(topic, p), metadata_timeout_s)
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = {p for p in partitions if ends[p] > 0}
        while follow or remaining:
            msg = consumer.poll(poll_timeout_s)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition())
                    continue
                raise RelsecError(f"reading {topic}: {err}")
            p, offset = msg.partition(), msg.offset()
            if p is None or offset is None:
                raise RelsecError(f"reading {topic}: a record without partition or offset")
            if not follow and offset + 1 >= ends[p]:
                remaining.discard(p)
            value = msg.value()
            if value is None:
                continue
            try:
                yield codec.decode_alert(value)
            except DecodeError as exc:
                raise exc.located(RecordAt(topic, p, offset)) from None
    finally:
        consumer.close()


def active_alerts(alerts: Iterator[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The final active set: the last record per alert_id, retracted ones removed."""
    active: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        if alert["status"] == "firing":
            active[alert["alert_id"]] = alert
        else:
            active.pop(alert["alert_id"], None)
    return active


def _transient(error: Any) -> bool:
    """Whether a broker error passes by itself: a retriable one, or a partition's leader
    moving or not elected yet (a broker restarting, a loaded machine)."""
    from confluent_kafka import KafkaError

    if bool(getattr(error, "retriable", lambda: False)()):
        return True
    code = getattr(error, "code", lambda: None)()
    return code in (
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    )


def _high_watermark(consumer: Any, partition: Any, timeout_s: float) -> int:
    """The partition's high watermark, asked again while the broker answers with a
    transient error (:func:`_transient`) until ``timeout_s``."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(
                partition, timeout=max(0.1, deadline - time.monotonic())
            )
            return int(high)
        except KafkaException as exc:
            if not _transient(exc.args[0] if exc.args else None) or (
                time.monotonic() >= deadline
            ):
                raise RelsecError(
                    f"cannot read the end of {partition.topic} [{partition.partition}]: {exc}"
                ) from None
            time.sleep(0.1)
