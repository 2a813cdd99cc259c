"""Idle services kept as bytes by :class:`Engine` change no outcome.

A service whose newest event is more than ``idle_after_ms`` behind the newest event the
engine has taken is kept as its state bytes and re-inflated by its next event. Forced
here on every event (a sweep after each event, no idle time needed).
"""

from __future__ import annotations

from hypothesis import given

from agents.engine import Engine, EngineConfig, Outcome
from agents.model.events import Event

from .factory import deploy, ms
from .test_properties import (
    LATENESS_MS,
    NOW_MS,
    PROPS,
    active,
    arrivals,
    sorted_run,
    stripped,
)

CONFIG = EngineConfig(allowed_lateness_ms=LATENESS_MS)


def _feed(events: list[Event], engine: Engine) -> list[Outcome]:
    return [engine.process(e, NOW_MS) for e in events]


@PROPS
@given(arrivals())
def test_services_kept_as_bytes_between_events_change_nothing(
    case: tuple[list[Event], list[Event]],
) -> None:
    events, arrived = case
    compacting = Engine(CONFIG, idle_after_ms=0, sweep_every_events=1)
    got = _feed(arrived, compacting)
    plain = _feed(arrived, Engine(CONFIG, compact_idle=False))
    assert stripped(got) == stripped(plain)
    assert compacting.snapshot().keys() == {e.service for e in arrived}
    assert active(got) == sorted_run(events)


def test_an_idle_service_is_bytes_until_its_next_event() -> None:
    engine = Engine(EngineConfig(), idle_after_ms=24 * 3_600_000, sweep_every_events=1)
    engine.process(deploy("1.0", ms(), service="quiet"), NOW_MS)
    engine.process(deploy("1.0", ms(days=2), service="busy"), NOW_MS)
    assert set(engine.services) == {"busy"}
    assert set(engine.idle) == {"quiet"}
    data = engine.idle["quiet"]
    assert len(data) < 2_000
    outcome = engine.process(deploy("2.0", ms(days=2, hours=1), service="quiet"), NOW_MS)
    assert outcome.disposition.value == "applied"
    assert engine.reinflated == 1
    assert set(engine.services) == {"busy", "quiet"}
    assert set(engine.snapshot()) == {"busy", "quiet"}
