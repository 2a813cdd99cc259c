"""The kafka runtime's collector policy (streams.worker.collector): when it freezes and
sweeps, and that a sweep finds a cycle the frozen generation hid."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.collector import CollectorPolicy, collector_step
from streams.worker.metrics import PipelineMetrics


def test_the_first_reading_starts_the_clocks() -> None:
    policy = CollectorPolicy(freeze_every_ms=10, sweep_every_ms=100, sweep_at_most_ms=1_000)
    assert policy.due(5_000, idle=True) is None
    assert policy.due(5_009, idle=True) is None
    assert policy.due(5_010, idle=False) == "freeze"
    assert policy.due(5_015, idle=False) is None


def test_a_sweep_waits_for_an_idle_moment_but_not_past_its_bound() -> None:
    policy = CollectorPolicy(freeze_every_ms=10, sweep_every_ms=100, sweep_at_most_ms=1_000)
    policy.due(0, idle=False)
    steps = {t: policy.due(t, idle=False) for t in range(10, 1_000, 10)}
    assert set(steps.values()) == {"freeze"}  # busy: freezes only
    assert policy.due(1_000, idle=False) == "sweep"  # the bound
    assert policy.due(1_050, idle=True) == "freeze"  # idle, but too soon after a sweep
    assert policy.due(1_100, idle=True) == "sweep"
    assert policy.due(1_105, idle=True) is None  # a sweep freezes too


def test_a_policy_refuses_bounds_out_of_order() -> None:
    with pytest.raises(ValueError):
        CollectorPolicy(freeze_every_ms=0)
    with pytest.raises(ValueError):
        CollectorPolicy(freeze_every_ms=10, sweep_every_ms=100, sweep_at_most_ms=50)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 400), st.booleans()), min_size=1, max_size=300),
    st.integers(1, 50),
    st.integers(50, 400),
    st.integers(400, 2_000),
)
def test_sweeps_and_freezes_keep_their_bounds(
    turns: list[tuple[int, bool]], freeze_ms: int, sweep_ms: int, at_most_ms: int
) -> None:
    policy = CollectorPolicy(freeze_ms, sweep_ms, at_most_ms)
    now = 0
    policy.due(now, idle=False)
    last_step = last_sweep = 0
    for gap, idle in turns:
        previous, now = now, now + gap
        step = policy.due(now, idle)
        if step is None:
            # Nothing was due: neither bound was passed before this reading.
            assert now - last_step < freeze_ms
            assert now - last_sweep < at_most_ms
            assert not (idle and now - last_sweep >= sweep_ms)
            continue
        assert now - last_step >= freeze_ms or step == "sweep"
        if step == "sweep":
            assert now - last_sweep >= (sweep_ms if idle else at_most_ms)
            # Never later than the first reading past the bound.
            assert previous - last_sweep < at_most_ms
            last_sweep = now
        last_step = now


class _Recorder:
    def __init__(self) -> None:
        self.sweeps: list[tuple[float, int]] = []

    def sweep_took(self, seconds: float, collected: int) -> None:
        self.sweeps.append((seconds, collected))


def _make_cycle() -> None:
    a: list[object] = []
    b: list[object] = [a]
    a.append(b)


def test_a_sweep_finds_cycles_a_freeze_hid_and_freezes_what_lives() -> None:
    was_on = gc.isenabled()
    gc.disable()
    gc.collect()
    try:
        live = [[i] for i in range(1_000)]
        _make_cycle()
        assert collector_step("freeze") == 0
        assert gc.collect() == 0  # the cycle is frozen: out of a collection's sight
        recorder = _Recorder()
        assert collector_step("sweep", recorder) == 2
        assert [collected for _, collected in recorder.sweeps] == [2]
        assert gc.get_freeze_count() >= len(live)  # what lives is frozen again
        assert not gc.isenabled()  # a step never turns automatic collection back on
    finally:
        gc.unfreeze()
        if was_on:
            gc.enable()


def test_the_worker_metrics_count_sweeps_and_what_they_found() -> None:
    from prometheus_client import generate_latest

    metrics = PipelineMetrics()
    metrics.sweep_took(0.25, 3)
    metrics.sweep_took(0.5, 0)
    text = generate_latest(metrics.registry).decode()
    assert "relsec_gc_collected_objects_total 3.0" in text
    assert "relsec_gc_sweep_seconds_count 2.0" in text
