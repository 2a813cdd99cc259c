"""The worker freezes what survives into the permanent generation (``gc.freeze``), so the
cyclic collector never walks the services' state. That is safe only while the
worker's per-record path makes no cyclic garbage: checked here, bad input included."""

from __future__ import annotations

import gc
import random

from agents.engine import EngineConfig
from agents.model.events import parse_event
from streams.codecs import make_codec
from streams.kafka.clients import murmur2_partition
from streams.settings import Settings, Topics
from streams.synthetic import SyntheticSpec, generate
from streams.worker.checkpoint import AtLeastOnceCheckpoints
from streams.worker.delivery import RecordLimits
from streams.worker.processor import Admitted, Processor
from streams.worker.records import InputRecord
from tests.worker.fakes import FakeProducer, store


def _records(settings: Settings, count: int) -> list[InputRecord]:
    codec = make_codec()
    spec = SyntheticSpec(services=50, events=count, out_of_order_share=0.2, duplicate_share=0.05)
    records = []
    for offset, obj in enumerate(generate(spec)):
        event = parse_event(obj)
        topic = settings.topics.input_for_type(event.type)
        key = event.service.encode()
        partition = murmur2_partition(key, 3)
        records.append(InputRecord(topic, partition, offset, key, codec.encode_event(obj)))
    rng = random.Random(5)
    bad = [b"\xc3\x01garbage", b"{not json", b'{"type": "deploy"}', None]
    for i, value in enumerate(bad):
        record = InputRecord(settings.topics.deploys, 0, 10**6 + i, b"k", value)
        records.insert(rng.randrange(len(records)), record)
    # A record on a partition its key does not hash to (re-keyed).
    first = records[0]
    elsewhere = (first.partition + 1) % 3
    records.append(InputRecord(first.topic, elsewhere, 10**7, first.key, first.value))
    return records


def test_the_per_record_path_makes_no_cyclic_garbage() -> None:
    settings = Settings(topics=Topics("gc."))
    records = _records(settings, 3_000)
    clock = lambda: 1_900_000_000_000  # noqa: E731
    changelog = store("gc.")
    processor = Processor(
        settings.topics, make_codec(), EngineConfig(), 3, changelog.state_of, clock
    )
    # Small records: states and outboxes are split into parts and chunks too.
    producer = FakeProducer(auto_ack=True)
    checkpoints = AtLeastOnceCheckpoints(producer, changelog, settings.topics, RecordLimits(4_096))
    gc.collect()
    gc.disable()
    try:
        for i, record in enumerate(records):
            admitted = processor.admit(record)
            if isinstance(admitted, Admitted):
                service = admitted.event.service
                checkpoints.hold(service, processor.apply_batch(service, [admitted]))
            else:
                checkpoints.send_durable(admitted)
            if i % 50 == 0:
                checkpoints.seal(processor.take_dirty(), {("gc.deploys", 0): i})
                producer.poll(0)
                checkpoints.advance()
            if i % 400 == 0:
                processor.evict_idle(clock() + 1)  # loaded again from the store
        checkpoints.drain()
        found = gc.collect()
    finally:
        gc.enable()
    assert processor.metrics.dead_letters.labels("undecodable").value >= 1
    assert processor.metrics.rerouted.value == 1
    assert found == 0, f"{found} objects were cyclic garbage"
    assert len(changelog.values) > 50 and checkpoints.in_flight == 0


def test_the_frozen_object_count_is_read_at_scrape_time_not_by_the_loop() -> None:
    # gc.get_freeze_count() walks every frozen object: the loop must not call it; the
    # gauge counts when /metrics is scraped, and then says what is frozen at that moment.
    from prometheus_client import generate_latest

    from streams.worker.core import WorkerCore
    from streams.worker.metrics import PipelineMetrics
    from streams.worker.options import WorkerOptions

    calls = []
    real = gc.get_freeze_count

    def counting() -> int:
        calls.append(1)
        return real()

    gc.get_freeze_count = counting  # type: ignore[assignment]
    try:
        metrics = PipelineMetrics()
        settings = Settings(bootstrap_servers="127.0.0.1:1", topics=Topics("gcm."))
        options = WorkerOptions(partitions=3)
        core = WorkerCore(settings, options, store().state_of, "kafka", metrics=metrics)
        core.refresh_metrics([("gcm.deploys", 0, 5)], 0)
        assert not calls
        keep = [[i] for i in range(1_000)]
        gc.freeze()
        try:
            scraped = generate_latest(metrics.registry).decode()
        finally:
            gc.unfreeze()
        assert calls
        line = next(x for x in scraped.splitlines() if x.startswith("relsec_gc_frozen_objects "))
        assert float(line.split()[1]) >= len(keep)
    finally:
        gc.get_freeze_count = real  # type: ignore[assignment]
