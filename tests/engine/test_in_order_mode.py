"""In-order mode (sorted replay) gives what the general engine gives on sorted input."""

from __future__ import annotations

from hypothesis import given

from agents.engine import Disposition, Engine, EngineConfig
from agents.model.events import order_key
from tests.engine.test_properties import NOW_MS, PROPS, event_sets, feed, stripped


@PROPS
@given(event_sets())
def test_in_order_mode_equals_the_general_engine_on_sorted_input(events: list) -> None:
    ordered = sorted({e.event_id: e for e in events}.values(), key=order_key)
    _, general = feed(ordered, EngineConfig(allowed_lateness_ms=0))
    _, in_order = feed(ordered, EngineConfig(allowed_lateness_ms=0, in_order=True))
    assert stripped(in_order) == stripped(general)


@PROPS
@given(event_sets())
def test_in_order_snapshots_round_trip(events: list) -> None:
    ordered = sorted({e.event_id: e for e in events}.values(), key=order_key)
    config = EngineConfig(allowed_lateness_ms=0, in_order=True)

    def restore(engine: Engine, _n: int) -> Engine:
        return Engine.restore(engine.snapshot(), config, NOW_MS)

    _, straight = feed(ordered, config)
    _, restored = feed(ordered, config, after_each=restore)
    assert stripped(restored) == stripped(straight)


def test_out_of_order_event_is_late_and_a_repeat_is_a_duplicate() -> None:
    from tests.engine.factory import deploy

    engine = Engine(EngineConfig(allowed_lateness_ms=0, in_order=True))
    first = deploy("1.0.0", "2026-03-04T10:00:00Z", event_id="b")
    earlier = deploy("1.0.0", "2026-03-04T09:00:00Z", event_id="a")
    assert engine.process(first, NOW_MS).disposition == Disposition.APPLIED
    assert engine.process(first, NOW_MS).disposition == Disposition.DUPLICATE
    assert engine.process(earlier, NOW_MS).disposition == Disposition.LATE
