"""Building read models for the API tests from events, without a broker.

Events go through the engine the worker runs (``Engine``); each service's state is
stored the way the worker stores it (``encode_state`` of ``ServiceEngine.to_bytes``) and
fed to the read model through the same :class:`RecordSink` the consumer uses, with
the alerts the engine emitted (encoded by the worker's codec) and the events
themselves (encoded as they are published).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import orjson

from agents.engine import Engine, EngineConfig
from agents.model.alerts import Alert
from agents.model.events import Event, event_to_dict, parse_event
from agents.model.timefmt import MS_PER_DAY
from streams.api.history import HistoryStore
from streams.api.readmodel import ReadModel
from streams.api.source import RecordSink, topic_kinds
from streams.codecs import make_codec
from streams.settings import Settings
from streams.worker.state_records import StoredState, encode_state

REPO = Path(__file__).resolve().parents[2]
SEED_STORY = REPO / "streams" / "data" / "seed-story.jsonl"


class Clock:
    """A settable wall clock (epoch ms)."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def load_events(path: Path) -> list[Event]:
    return [parse_event(orjson.loads(x)) for x in path.read_bytes().splitlines() if x.strip()]


class Built:
    """A read model fed from events, and what the engine emitted on the way."""

    def __init__(self, model: ReadModel, engine: Engine, alerts: list[Alert], sink: RecordSink):
        self.model = model
        self.engine = engine
        self.alerts = alerts
        self.sink = sink


def build_model(
    events: Iterable[Event],
    now_ms: int,
    settings: Settings | None = None,
    caught_up: bool = True,
    state_value_budget: int = 1_000_000,
) -> Built:
    """Feed ``events`` through an engine, then its states, alerts and the events into a
    read model as the consumer would. ``caught_up`` marks every topic read to its end;
    a state bigger than ``state_value_budget`` is stored in parts, as the worker does."""
    settings = settings or Settings()
    config = EngineConfig(allowed_lateness_ms=settings.allowed_lateness_ms)
    engine = Engine(config)
    alerts: list[Alert] = []
    event_list = list(events)
    for event in event_list:
        alerts.extend(engine.process(event, now_ms).alerts)
    clock = Clock(now_ms)
    topics = topic_kinds(settings)
    model = ReadModel(config, clock, topics, HistoryStore(400 * MS_PER_DAY, 500_000))
    codec = make_codec(settings)
    sink = RecordSink(model, codec, topics)
    offsets = itertools.count()
    changelog_offsets = itertools.count()
    for event in event_list:
        topic = settings.topics.input_for_type(event.type)
        sink.record(
            topic,
            0,
            next(offsets),
            event.service.encode(),
            codec.encode_event(event_to_dict(event)),
            0,
        )
    for alert in alerts:
        sink.record(
            settings.topics.alerts,
            0,
            next(offsets),
            alert.alert_id.encode(),
            codec.encode_alert_value(alert),
            0,
        )
    for name, service_engine in engine.services.items():
        stored = StoredState({settings.topics.deploys: 1}, service_engine.to_bytes())
        topic = settings.topics.state_changelog
        for record in encode_state(topic, name.encode(), stored, "c1", 0, state_value_budget):
            sink.record(topic, 0, next(changelog_offsets), record.key, record.value, now_ms)
    if caught_up:
        for progress in model.progress.values():
            progress.assign([0])
            progress.at_end(0, 10_000, now_ms)
    return Built(model, engine, alerts, sink)
