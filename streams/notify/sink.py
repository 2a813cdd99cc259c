"""``relsec notify``'s Kafka loop: read alerts, group, deliver, dead-letter failures, commit.

One confluent-kafka consumer reads **every** partition of the alerts topic
(``assign``, not a group subscription: an alert storm's members are spread
over all partitions, since the topic is keyed by ``alert_id``, and one reader
must see them all to count the group and to know when its last member is
gone). Offsets are committed in the notify group (``<worker group>-notify``);
auto-commit is off. Records are handled in partition order:

1. decode (the project codec); a record that does not decode or is not an
   alert goes to the dead-letter topic (its decode reason, or ``validation``);
2. deliver it to every per-alert destination (webhooks), each with retries;
3. add it to (or, retracted, take it out of) its group
   (:mod:`streams.notify.groups`); a group's change goes to PagerDuty and Slack
   once the group has settled (no member joined or left for ``settle_ms``), as
   one notice per destination;
4. every delivery that kept failing gets one dead-letter record (reason
   ``delivery_failed``, the bytes of the record concerned, its
   topic/partition/offset, a detail naming the destination but no URL or
   secret); the producer is flushed and each write confirmed;
5. the offsets are committed, synchronously, up to the first record whose
   group change is not told yet.

So the committed offsets mean "everything before them was told". On start the
groups are rebuilt by re-reading the topic up to them without sending
anything: the same alerts give the same groups (their ids are pure functions
of the alerts), and the groups found there count as told as they are. What
can be told twice is what was sent after the last commit before a crash
(PagerDuty drops the repeat by ``dedup_key``). ``--once`` reads every
partition to its end (librdkafka's partition-EOF events), sends every settled
and unsettled change, and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from agents.errors import DecodeError, RecordAt, RelsecError
from agents.model.alerts import Alert
from agents.model.timefmt import format_rfc3339_ms
from streams.kafka.errors import TopicError
from streams.notify.deliver import DeliveryResult, Notifier, route
from streams.notify.errors import DeliveryError
from streams.notify.groups import OPEN, RESOLVE, UPDATE, Group, Grouper, RecordRef
from streams.settings import Settings

log = logging.getLogger("relsec.notify")

DELIVERY_FAILED: Final = "delivery_failed"
DLQ_FLUSH_TIMEOUT_S: Final = 30.0
METADATA_TIMEOUT_S: Final = 15.0
COORDINATOR_WAIT_S: Final = 60.0
# how much older than a forgotten group's window a record may be written (late alerts)
REBUILD_SLACK_MS: Final = 24 * 3_600_000
COMMIT_EVERY_MS: Final = 200
MIN_POLL_S: Final = 0.02


def _coordinator_not_ready_codes() -> frozenset[int]:
    from confluent_kafka import KafkaError

    return frozenset(
        {
            KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
            KafkaError.COORDINATOR_NOT_AVAILABLE,
            KafkaError._WAIT_COORD,
            KafkaError._TIMED_OUT,
            KafkaError.REQUEST_TIMED_OUT,
        }
    )


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

    ``deliveries`` and ``dead_lettered`` count (record or group notice,
    destination) pairs; ``groups_opened`` / ``group_updates`` /
    ``group_resolves`` count group notices accepted, over all destinations.
    """

    records: int = 0
    deliveries: int = 0
    dead_lettered: int = 0
    rejected: int = 0
    unrouted: int = 0
    tombstones: int = 0
    attempts: int = 0
    rebuilt_records: int = 0
    groups_opened: int = 0
    group_updates: int = 0
    group_resolves: int = 0
    per_destination: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"notify: {self.records} records, {self.deliveries} delivered, "
            f"{self.dead_lettered} dead-lettered after failed delivery, {self.rejected} "
            f"undecodable/invalid dead-lettered, {self.unrouted} routed nowhere, "
            f"{self.tombstones} tombstones skipped, {self.attempts} HTTP attempts; "
            f"groups: {self.groups_opened} opened, {self.group_updates} updated, "
            f"{self.group_resolves} resolved"
        )


class NotifySink:
    """Consumes the alerts topic, groups alerts and hands notices to a :class:`Notifier`."""

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
        monotonic_ms: Callable[[], int] | None = None,
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
        self._mono_ms = monotonic_ms or (lambda: time.monotonic_ns() // 1_000_000)
        self.report = NotifyReport()
        config = notifier.config
        self.grouper = Grouper(config.grouping, config.destinations)
        self._per_alert = tuple(d for d in config.destinations if not d.grouped)
        self._next: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        # a record delivered or dead-lettered on its own is committed at once, so a crash
        # resends only the one in flight; other positions are committed every COMMIT_EVERY_MS
        self._must_commit = False
        self._last_commit_ms = 0

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
                },
            )
        )
        producer = Producer(producer_config(self.settings))
        return consumer, producer

    def _partitions(self, consumer: Any) -> list[int]:
        topic = self.settings.topics.alerts
        meta = consumer.list_topics(topic=topic, timeout=METADATA_TIMEOUT_S)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise TopicError(
                f"alerts topic {topic!r} does not exist on {self.settings.bootstrap_servers} "
                "(create it with `relsec topics create`)"
            )
        return sorted(tmeta.partitions)

    def _read_committed(self, consumer: Any, partitions: list[int]) -> dict[int, int]:
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        topic = self.settings.topics.alerts
        deadline = time.monotonic() + COORDINATOR_WAIT_S
        wait_s = 0.1
        while True:
            try:
                found = consumer.committed(
                    [TopicPartition(topic, p) for p in partitions], timeout=METADATA_TIMEOUT_S
                )
                return {tp.partition: tp.offset for tp in found if tp.offset >= 0}
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                # a fresh broker's group coordinator answers NOT_COORDINATOR / "load in
                # progress" for a few seconds; librdkafka does not retry committed() itself
                transient = isinstance(err, KafkaError) and (
                    err.retriable() or err.code() in _coordinator_not_ready_codes()
                )
                if not transient or time.monotonic() + wait_s > deadline or self.stop.is_set():
                    raise RelsecError(
                        f"could not read the committed offsets of group {self.group_id}: {exc}"
                    ) from exc
                log.info("group coordinator not ready (%s); asking again", err)
                time.sleep(wait_s)
                wait_s = min(1.0, wait_s * 2)

    # -- the loop ------------------------------------------------------------
    def run(self, once: bool = False, poll_timeout_s: float = 0.5) -> NotifyReport:
        """Consume until stopped (or, with ``once``, until every partition is drained)."""
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, TopicPartition

        consumer, producer = self._clients()
        topic = self.settings.topics.alerts
        try:
            partitions = self._partitions(consumer)
            committed = self._read_committed(consumer, partitions)
            self._committed = dict(committed)
            self._rebuild(consumer, committed)
            default = OFFSET_BEGINNING if self.start_at == "earliest" else OFFSET_END
            consumer.assign(
                [TopicPartition(topic, p, committed.get(p, default)) for p in partitions]
            )
            log.info(
                "reading %d partition(s) of %s as group %s; %d group(s) open",
                len(partitions),
                topic,
                self.group_id,
                len(self.grouper.groups),
            )
            at_eof: set[int] = set()
            while not self.stop.is_set():
                msg = consumer.poll(self._poll_timeout_s(poll_timeout_s))
                if msg is None:
                    pass
                elif msg.error() is not None:
                    err = msg.error()
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(msg.partition())
                    elif err.fatal():
                        raise RelsecError(f"Kafka consumer failed: {err}")
                    else:
                        log.warning("consumer: %s", err)
                else:
                    at_eof.discard(msg.partition())
                    if not self._handle(msg, producer):
                        break  # stopped during a retry wait: leave the record uncommitted
                caught_up = at_eof.issuperset(partitions)
                final = once and caught_up
                if not self._flush(consumer, producer, final, caught_up):
                    break
                now = self._mono_ms()
                if self._must_commit or final or now - self._last_commit_ms >= COMMIT_EVERY_MS:
                    self._commit(consumer)
                if final:
                    break
            self._commit(consumer)  # what was handled and told, as on every turn (also on a stop)
        finally:
            try:
                consumer.close()
            finally:
                producer.flush(DLQ_FLUSH_TIMEOUT_S)
        return self.report

    def _poll_timeout_s(self, default_s: float) -> float:
        due = self.grouper.next_due_ms()
        if due is None:
            return default_s
        # a group past its time waits for the reader to catch up: poll, but do not spin
        return min(default_s, max(MIN_POLL_S, (due - self._mono_ms()) / 1000))

    def _rebuild_starts(self, consumer: Any, ends: Mapping[int, int]) -> dict[int, int]:
        """Where the rebuild starts reading each partition.

        A record written (Kafka timestamp) more than ``forget_after_ms`` plus a
        window plus a day before now can only belong to a group that would be
        forgotten as soon as anything newer is read, so the rebuild seeks past
        such records instead of decoding the topic's whole history. Partitions
        whose records are all older are not read at all.
        """
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        policy = self.notifier.config.grouping
        horizon_ms = self._wall_ms() - policy.forget_after_ms - policy.window_ms - REBUILD_SLACK_MS
        topic = self.settings.topics.alerts
        if horizon_ms <= 0:
            return {p: OFFSET_BEGINNING for p in ends}
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, p, horizon_ms) for p in ends], timeout=METADATA_TIMEOUT_S
            )
        except Exception as exc:  # confluent_kafka.KafkaException: read it all instead
            log.warning("could not look up offsets by time (%s); rebuilding from the start", exc)
            return {p: OFFSET_BEGINNING for p in ends}
        starts: dict[int, int] = {}
        for tp in found:
            if tp.error is not None:
                starts[tp.partition] = OFFSET_BEGINNING
            elif tp.offset < 0:  # no record that new: everything below the commit is older
                starts[tp.partition] = ends[tp.partition]
            else:
                starts[tp.partition] = tp.offset
        return starts

    def _rebuild(self, consumer: Any, committed: Mapping[int, int]) -> None:
        """Re-read each partition up to its committed offset into the groups, sending nothing."""
        from confluent_kafka import KafkaError, TopicPartition

        ends = {p: offset for p, offset in committed.items() if offset > 0}
        if not ends or not self.grouper.destinations:
            return
        topic = self.settings.topics.alerts
        starts = self._rebuild_starts(consumer, ends)
        ends = {p: end for p, end in ends.items() if starts[p] < 0 or starts[p] < end}
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        remaining = set(ends)
        now = self._mono_ms()
        while remaining and not self.stop.is_set():
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition())
                elif err.fatal():
                    raise RelsecError(f"Kafka consumer failed while rebuilding groups: {err}")
                continue
            p, offset = msg.partition(), msg.offset()
            if offset >= ends[p]:
                remaining.discard(p)
                continue
            if offset + 1 >= ends[p]:
                remaining.discard(p)
            raw = msg.value()
            if raw is None:
                continue
            alert, _reason, _detail = self._decode(raw)
            if alert is not None and self.grouper.wants(alert):
                self.grouper.apply(alert, RecordRef(p, offset), now, rebuilding=True)
                self.report.rebuilt_records += 1
        consumer.unassign()
        self.grouper.finish_rebuild()
        log.info(
            "rebuilt %d open group(s) from %d alert record(s) below the committed offsets",
            len(self.grouper.groups),
            self.report.rebuilt_records,
        )

    def _handle(self, msg: Any, producer: Any) -> bool:
        """Process one record; ``False`` when a stop interrupted it (nothing committed)."""
        self.report.records += 1
        raw: bytes | None = msg.value()
        partition, offset = msg.partition(), msg.offset()
        where = RecordAt(msg.topic(), partition, offset)
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
                grouped = self.grouper.wants(alert)
                if not grouped and not route(alert, self._per_alert):
                    self.report.unrouted += 1
                    log.info(
                        "alert %s (%s) has no destination for audiences %s",
                        alert.get("alert_id"),
                        alert.get("rule"),
                        alert.get("notify"),
                    )
                results = self.notifier.deliver(alert, self._per_alert)
                if any(r.outcome.interrupted for r in results):
                    for result in results:
                        if result.outcome.ok:
                            self._account(result, f"alert {alert.get('alert_id')}", where)
                    log.info(
                        "%s: stopped while retrying; not committed, sent again next run", where
                    )
                    return False
                self._must_commit = self._must_commit or bool(results)
                for result in results:
                    self._account(result, f"alert {alert.get('alert_id')}", where)
                    if not result.outcome.ok:
                        dead_letters.append(
                            self._dead_letter(msg, raw, DELIVERY_FAILED, _failure_detail(result))
                        )
                if grouped:
                    ref = RecordRef(partition, offset, msg.key(), raw)
                    self.grouper.apply(alert, ref, self._mono_ms())
        if dead_letters:
            self._produce_dead_letters(producer, dead_letters)
            self._must_commit = True
        self._next[partition] = offset + 1
        return True

    def _flush(self, consumer: Any, producer: Any, final: bool, caught_up: bool) -> bool:
        """Send the changes of every group that is due; ``False`` when a stop cut it short."""
        now = self._mono_ms()
        window_ms = self.notifier.config.grouping.window_ms
        for group in self.grouper.due(now, final=final, caught_up=caught_up):
            notices, deferred = self.grouper.plan(group, now)
            if notices:
                results = self.notifier.deliver_group(group.snapshot(window_ms), notices)
                interrupted = any(r.outcome.interrupted for r in results)
                dead_letters: list[dict[str, Any]] = []
                for result in results:
                    if interrupted and not result.outcome.ok:
                        continue
                    self._account(result, _group_label(group), "")
                    assert result.notice is not None
                    if result.outcome.ok:
                        self.grouper.mark_sent(group, result.notice, now)
                        self._count_notice(result.notice.action)
                    else:
                        dead_letters.append(self._group_dead_letter(group, result))
                if dead_letters:
                    self._produce_dead_letters(producer, dead_letters)
                if interrupted:
                    log.info(
                        "%s: stopped while retrying; not committed, told again next run",
                        _group_label(group),
                    )
                    return False
            self.grouper.settle(group, deferred)
            self._commit(consumer)
        return True

    def _count_notice(self, action: str) -> None:
        if action == OPEN:
            self.report.groups_opened += 1
        elif action == UPDATE:
            self.report.group_updates += 1
        elif action == RESOLVE:
            self.report.group_resolves += 1

    def _commit(self, consumer: Any) -> None:
        """Commit each partition up to its first record whose group change is not told yet."""
        from confluent_kafka import TopicPartition

        topic = self.settings.topics.alerts
        self._must_commit = False
        self._last_commit_ms = self._mono_ms()
        offsets = []
        for partition, next_offset in self._next.items():
            floor = self.grouper.commit_floor(partition)
            target = next_offset if floor is None else min(next_offset, floor)
            if target > self._committed.get(partition, -1):
                offsets.append(TopicPartition(topic, partition, target))
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:  # confluent_kafka.KafkaException
            where = ", ".join(f"{topic}[{tp.partition}]@{tp.offset}" for tp in offsets)
            raise RelsecError(f"could not commit {where} for group {self.group_id}: {exc}") from exc
        for tp in offsets:
            self._committed[tp.partition] = tp.offset

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

    def _account(self, result: DeliveryResult, what: str, where: RecordAt | str) -> None:
        name = result.destination.name
        outcome = result.outcome
        self.report.attempts += outcome.attempts
        action = f" ({result.notice.action})" if result.notice is not None else ""
        if outcome.ok:
            self.report.deliveries += 1
            self.report.per_destination[name] = self.report.per_destination.get(name, 0) + 1
            log.info("delivered %s%s to %s in %d attempt(s)", what, action, name, outcome.attempts)
        else:
            self.report.dead_lettered += 1
            log.warning(
                "%s%s%s not delivered to %s: %s",
                f"{where}: " if where else "",
                what,
                action,
                result.destination.describe(),
                outcome.detail,
            )

    def _group_dead_letter(self, group: Group, result: DeliveryResult) -> dict[str, Any]:
        record = group.last_record or RecordRef(-1, -1)
        assert result.notice is not None
        o, d = result.outcome, result.destination
        detail = (
            f"destination {d.name} ({d.type}): {_group_label(group)} ({result.notice.action}, "
            f"{group.count} active alert(s)): {o.attempts} attempt(s) in {o.elapsed_ms} ms: "
            f"{o.detail}"
        )
        return {
            "reason": DELIVERY_FAILED,
            "detail": detail,
            "topic": self.settings.topics.alerts,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key,
            "value": record.value,
            "detected_at": format_rfc3339_ms(self._wall_ms()),
        }

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

    def _produce_dead_letters(self, producer: Any, dead_letters: list[dict[str, Any]]) -> None:
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        topic = self.settings.topics.dlq
        for dl in dead_letters:
            producer.produce(
                topic,
                value=self.codec.encode_dead_letter(dl),
                key=dl["key"],
                on_delivery=on_delivery,
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


def _group_label(group: Group) -> str:
    k = group.key
    if k.alert_id:
        return f"alert {k.alert_id} ({k.rule})"
    return f"group {group.group_id} ({k.rule} on {k.service}/{k.environment}, release {k.release})"
