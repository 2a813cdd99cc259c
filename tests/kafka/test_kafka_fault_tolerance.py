"""Three brokers, RF 3, min.insync.replicas 2, acks=all idempotent producer: a crash loses nothing.

One broker (the leader of the most partitions) is SIGKILLed mid-stream; the
producer keeps going through the leader elections; the broker is restarted and
catches up. Every acknowledged message must be read back, exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from streams.kafka.clients import admin_config, consumer_config, producer_config
from streams.kafka.topics import create_topics
from streams.settings import Settings, Topics

pytestmark = pytest.mark.kafka

PARTITIONS = 6


class Stream:
    """Produces numbered messages in a thread until stopped; records what was acknowledged."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.acked: list[int] = []
        self.acked_partitions: list[int] = []
        self.failed: list[tuple[int, str]] = []
        self.sent = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.producer = Producer(
            producer_config(
                settings,
                on_delivery=self._on_delivery,
                **{"linger.ms": 2, "message.timeout.ms": 90000, "request.timeout.ms": 10000},
            )
        )
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err: object, msg: object) -> None:
        seq = int(msg.value())  # type: ignore[attr-defined]
        with self._lock:
            if err is None:
                self.acked.append(seq)
                self.acked_partitions.append(msg.partition())  # type: ignore[attr-defined]
            else:
                self.failed.append((seq, str(err)))

    def _run(self) -> None:
        while not self._stop.is_set():
            key = f"service-{self.sent % 40}".encode()
            try:
                self.producer.produce(self.topic, key=key, value=str(self.sent).encode())
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0.001 if self.sent % 50 == 0 else 0)
        self.producer.flush(120)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_acked(self, at_least: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.acked_count() < at_least:
            assert time.monotonic() < deadline, f"only {self.acked_count()} acked"
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=150)
        assert not self.thread.is_alive()


def leader_counts(admin: AdminClient, topic: str) -> Counter[int]:
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    return Counter(p.leader for p in partitions.values())


def wait_full_isr(admin: AdminClient, topic: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
        if all(len(p.isrs) == 3 for p in partitions.values()):
            return
        assert time.monotonic() < deadline, {k: p.isrs for k, p in partitions.items()}
        time.sleep(0.2)


def test_sigkill_one_broker_mid_stream_loses_no_acknowledged_message(
    kafka_cluster3: object,
) -> None:
    cluster = kafka_cluster3
    settings = Settings(
        bootstrap_servers=cluster.bootstrap,  # type: ignore[attr-defined]
        topics=Topics(f"ft-{int(time.time())}."),
    )
    create_topics(settings, partitions=PARTITIONS)  # RF 3, min.insync.replicas 2
    topic = settings.topics.deploys
    admin = AdminClient(admin_config(settings))
    wait_full_isr(admin, topic, 30)

    stream = Stream(settings, topic)
    stream.thread.start()
    victim_index: int | None = None
    try:
        stream.wait_acked(3000, timeout_s=60)
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
        victim_id = leader_counts(admin, topic).most_common(1)[0][0]
        victim_led = {p for p, md in partitions.items() if md.leader == victim_id}
        victim_index = victim_id - 1
        cluster.stop_broker(victim_index, kill=True)  # type: ignore[attr-defined]
        killed_at = stream.acked_count()

        # The controller fences the dead broker and moves its leaderships.
        deadline = time.monotonic() + 60
        while victim_id in leader_counts(admin, topic):
            assert time.monotonic() < deadline, "leaders did not move off the killed broker"
            time.sleep(0.2)
        # Writes go on with two of three replicas in sync, to every partition, including
        # those the dead broker led (once the producer has found their new leaders).
        stream.wait_acked(stream.acked_count() + 5000, timeout_s=90)
        deadline = time.monotonic() + 60
        while True:
            with stream._lock:
                outage_partitions = set(stream.acked_partitions[killed_at:])
            if victim_led <= outage_partitions:
                break
            assert time.monotonic() < deadline, (victim_led, outage_partitions)
            time.sleep(0.1)
        during_outage = stream.acked_count() - killed_at

        cluster.start_broker(victim_index)  # type: ignore[attr-defined]
        victim_index = None
        restarted_at = stream.acked_count()
        stream.wait_acked(restarted_at + 3000, timeout_s=60)
    finally:
        stream.stop()
        if victim_index is not None:
            cluster.start_broker(victim_index)  # type: ignore[attr-defined]

    wait_full_isr(admin, topic, 60)  # the restarted broker caught up
    assert stream.failed == []
    assert during_outage >= 5000

    consumer = Consumer(consumer_config(settings))
    consumer.subscribe([topic])
    seen: Counter[int] = Counter()
    deadline = time.monotonic() + 90
    try:
        while len(seen) < len(stream.acked) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                assert msg.error() is None, msg.error()
                seen[int(msg.value())] += 1
    finally:
        consumer.close()
    missing = set(stream.acked) - set(seen)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"
    duplicates = [seq for seq, n in seen.items() if n > 1]
    assert not duplicates, f"idempotent producer wrote duplicates: {duplicates[:10]}"
    assert set(seen) == set(range(stream.sent))  # nothing unacknowledged slipped in
