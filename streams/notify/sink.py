"""``relsec notify``'s Kafka loop: read alerts, deliver, dead-letter failures, then commit.

One confluent-kafka consumer in its own group (``<worker group>-notify``) reads
the alerts topic with auto-commit off. Records are handled one at a time, in
partition order:

1. decode (the project codec); a record that does not decode or is not an
   alert goes to the dead-letter topic (its decode reason, or ``validation``);
2. deliver to every destination the alert routes to, each with retries;
3. every destination that kept failing gets one dead-letter record (reason
   ``delivery_failed``, the original key and bytes, topic/partition/offset, a
   detail naming the destination but no URL or secret); the producer is
   flushed and each dead-letter write confirmed;
4. only then is the record's offset committed, synchronously.

So a restart resumes after the last record whose destinations were all
delivered or dead-lettered. What can be sent twice is the record in flight
when the process died between a delivery and its commit (PagerDuty drops the
repeat by ``dedup_key``). ``--once`` mode reads every assigned partition to
the end (librdkafka's partition-EOF events) and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from agents.errors import DecodeError, DeliveryError, RelsecError, TopicError
from agents.model.alerts import Alert
from agents.model.timefmt import format_rfc3339_ms
from streams.notify.deliver import DeliveryResult, Notifier
from streams.settings import Settings

log = logging.getLogger("relsec.notify")

DELIVERY_FAILED: Final = "delivery_failed"
ASSIGNMENT_TIMEOUT_S: Final = 60.0
DLQ_FLUSH_TIMEOUT_S: Final = 30.0
SESSION_TIMEOUT_MS: Final = 10_000


class AlertCodec(Protocol):
    """The part of the project codec the sink uses."""

    def decode_alert(self, raw: bytes) -> dict[str, Any]: ...

    def encode_dead_letter(self, dl: dict[str, Any]) -> bytes: ...


def notify_group(settings: Settings) -> str:
    """The sink's consumer group: the worker's group name with ``-notify``."""
    return f"{settings.topics.consumer_group}-notify"


def make_alert_codec(settings: Settings) -> AlertCodec:
    """The project codec (``streams.codecs.make_codec``)."""
    from streams.codecs import make_codec

    codec: AlertCodec = make_codec(settings)
    return codec


@dataclass(slots=True)
class NotifyReport:
    """Counters of one run.

    ``deliveries`` and ``dead_lettered`` count (record, destination) pairs.
    """

    records: int = 0
    deliveries: int = 0
    dead_lettered: int = 0
    rejected: int = 0
    unrouted: int = 0
    tombstones: int = 0
    attempts: int = 0
    per_destination: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"notify: {self.records} records, {self.deliveries} delivered, "
            f"{self.dead_lettered} dead-lettered after failed delivery, {self.rejected} "
            f"undecodable/invalid dead-lettered, {self.unrouted} routed nowhere, "
            f"{self.tombstones} tombstones skipped, {self.attempts} HTTP attempts"
        )


def _max_poll_interval_ms(notifier: Notifier) -> int:
    retry = notifier.config.retry
    # One record may take the whole retry budget plus a last attempt's timeout.
    return max(300_000, retry.max_total_ms + 2 * retry.request_timeout_ms + 60_000)


class NotifySink:
    """Consumes the alerts topic and hands each alert to a :class:`Notifier`."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier,
        *,
        codec: AlertCodec | None = None,
        group_id: str | None = None,
        start_at: str = "earliest",
        stop: threading.Event | None = None,
        wall_clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if start_at not in ("earliest", "latest"):
            raise ValueError("start_at is 'earliest' or 'latest'")
        self.settings = settings
        self.notifier = notifier
        self.codec = codec or make_alert_codec(settings)
        self.group_id = group_id or notify_group(settings)
        self.start_at = start_at
        self.stop = stop or threading.Event()
        self._wall_ms = wall_clock_ms or (lambda: int(time.time() * 1000))
        self.report = NotifyReport()

    # -- Kafka clients -----------------------------------------------------
    def _clients(self) -> tuple[Any, Any]:
        from confluent_kafka import Consumer, Producer

        from streams.kafka.clients import consumer_config, producer_config

        consumer = Consumer(
            consumer_config(
                self.settings,
                group_id=self.group_id,
                **{
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": self.start_at,
                    "enable.partition.eof": True,
                    "max.poll.interval.ms": _max_poll_interval_ms(self.notifier),
                    # a crashed sink's partitions move to a live one after 10 s, not 45 s
                    "session.timeout.ms": SESSION_TIMEOUT_MS,
                    "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 4,
                },
            )
        )
        producer = Producer(producer_config(self.settings))
        return consumer, producer

    def _check_topic(self, consumer: Any) -> None:
        topic = self.settings.topics.alerts
        meta = consumer.list_topics(topic=topic, timeout=15)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise TopicError(
                f"alerts topic {topic!r} does not exist on {self.settings.bootstrap_servers} "
                "(create it with `relsec topics create`)"
            )

    # -- the loop ------------------------------------------------------------
    def run(self, once: bool = False, poll_timeout_s: float = 0.5) -> NotifyReport:
        """Consume until stopped (or, with ``once``, until every assigned partition is drained)."""
        from confluent_kafka import KafkaError

        consumer, producer = self._clients()
        assigned: set[tuple[str, int]] = set()
        at_eof: set[tuple[str, int]] = set()
        got_assignment = threading.Event()

        def on_assign(_consumer: Any, partitions: list[Any]) -> None:
            assigned.clear()
            assigned.update((p.topic, p.partition) for p in partitions)
            at_eof.intersection_update(assigned)
            got_assignment.set()
            log.info("assigned %d partition(s) of %s", len(partitions), self.settings.topics.alerts)

        def on_revoke(_consumer: Any, _partitions: list[Any]) -> None:
            assigned.clear()
            at_eof.clear()
            got_assignment.clear()

        try:
            self._check_topic(consumer)
            consumer.subscribe(
                [self.settings.topics.alerts], on_assign=on_assign, on_revoke=on_revoke
            )
            started = time.monotonic()
            while not self.stop.is_set():
                msg = consumer.poll(poll_timeout_s)
                if msg is None:
                    pass
                elif msg.error() is not None:
                    err = msg.error()
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add((msg.topic(), msg.partition()))
                    elif err.fatal():
                        raise RelsecError(f"Kafka consumer failed: {err}")
                    else:
                        log.warning("consumer: %s", err)
                else:
                    at_eof.discard((msg.topic(), msg.partition()))
                    if not self._handle(msg, consumer, producer):
                        break  # stopped during a retry wait: leave the record uncommitted
                if once:
                    if got_assignment.is_set() and at_eof >= assigned:
                        break
                    if (
                        not got_assignment.is_set()
                        and time.monotonic() - started > ASSIGNMENT_TIMEOUT_S
                    ):
                        raise RelsecError(
                            f"no partitions of {self.settings.topics.alerts} were assigned to "
                            f"group {self.group_id} within {ASSIGNMENT_TIMEOUT_S:.0f} s"
                        )
        finally:
            try:
                consumer.close()
            finally:
                producer.flush(DLQ_FLUSH_TIMEOUT_S)
        return self.report

    def _handle(self, msg: Any, consumer: Any, producer: Any) -> bool:
        """Process one record; ``False`` when a stop interrupted it (nothing committed)."""
        self.report.records += 1
        raw: bytes | None = msg.value()
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        dead_letters: list[dict[str, Any]] = []
        if raw is None:
            self.report.tombstones += 1
        else:
            alert, reason, detail = self._decode(raw)
            if alert is None:
                self.report.rejected += 1
                log.warning("%s: not an alert (%s): %s", where, reason, detail)
                dead_letters.append(self._dead_letter(msg, raw, reason, detail))
            else:
                results = self.notifier.deliver(alert)
                if any(r.outcome.interrupted for r in results):
                    for result in results:
                        if result.outcome.ok:
                            self._account(alert, result, where)
                    log.info(
                        "%s: stopped while retrying; not committed, sent again next run", where
                    )
                    return False
                if not results:
                    self.report.unrouted += 1
                    log.info(
                        "alert %s (%s) has no destination for audiences %s",
                        alert.get("alert_id"),
                        alert.get("rule"),
                        alert.get("notify"),
                    )
                for result in results:
                    self._account(alert, result, where)
                    if not result.outcome.ok:
                        dead_letters.append(
                            self._dead_letter(msg, raw, DELIVERY_FAILED, _failure_detail(result))
                        )
        if dead_letters:
            self._produce_dead_letters(producer, msg.key(), dead_letters)
        try:
            consumer.commit(message=msg, asynchronous=False)
        except Exception as exc:  # confluent_kafka.KafkaException
            raise RelsecError(f"could not commit {where} for group {self.group_id}: {exc}") from exc
        return True

    def _decode(self, raw: bytes) -> tuple[dict[str, Any] | None, str, str]:
        try:
            alert = self.codec.decode_alert(raw)
        except DecodeError as exc:
            return None, exc.reason, exc.detail
        except Exception as exc:  # a codec bug or exotic input must not stop the sink
            return None, "undecodable", f"{type(exc).__name__}: {exc}"
        try:
            if not isinstance(alert, dict):
                raise TypeError(f"decoded to {type(alert).__name__}, not an object")
            Alert.from_dict(alert)  # checks the shape; the dict itself is what is sent
        except (KeyError, TypeError, ValueError) as exc:
            return None, "validation", f"not an alert: {type(exc).__name__}: {exc}"
        return alert, "", ""

    def _account(self, alert: Mapping[str, Any], result: DeliveryResult, where: str) -> None:
        name = result.destination.name
        outcome = result.outcome
        self.report.attempts += outcome.attempts
        if outcome.ok:
            self.report.deliveries += 1
            self.report.per_destination[name] = self.report.per_destination.get(name, 0) + 1
            log.info(
                "delivered %s alert %s (%s) to %s in %d attempt(s)",
                alert.get("status"),
                alert.get("alert_id"),
                alert.get("rule"),
                name,
                outcome.attempts,
            )
        else:
            self.report.dead_lettered += 1
            log.warning(
                "%s: alert %s not delivered to %s: %s",
                where,
                alert.get("alert_id"),
                result.destination.describe(),
                outcome.detail,
            )

    def _dead_letter(self, msg: Any, raw: bytes, reason: str, detail: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "detail": detail,
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": msg.key(),
            "value": raw,
            "detected_at": format_rfc3339_ms(self._wall_ms()),
        }

    def _produce_dead_letters(
        self, producer: Any, key: bytes | None, dead_letters: list[dict[str, Any]]
    ) -> None:
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        topic = self.settings.topics.dlq
        for dl in dead_letters:
            producer.produce(
                topic, value=self.codec.encode_dead_letter(dl), key=key, on_delivery=on_delivery
            )
        remaining = producer.flush(DLQ_FLUSH_TIMEOUT_S)
        if remaining or errors:
            why = "; ".join(errors) or f"{remaining} record(s) not acknowledged in time"
            raise DeliveryError(f"could not write to the dead-letter topic {topic}: {why}")


def _failure_detail(result: DeliveryResult) -> str:
    o = result.outcome
    d = result.destination
    return (
        f"destination {d.name} ({d.type}): {o.attempts} attempt(s) in {o.elapsed_ms} ms: {o.detail}"
    )
