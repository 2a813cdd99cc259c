"""Hostile lines among valid ones through ``relsec replay`` (both modes, in process).

Hypothesis draws the mutations (``tests/fuzz/hostile.py``), where they go and how the
lines end; ``derandomize`` makes every run the same (seeded), and the example counts
keep the folder well under a minute. The contract checked is
:func:`tests.fuzz.replay_harness.check_mixed_run`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .hostile import LINE_MUTATIONS, DrawChooser, RandomChooser, hostile_line
from .replay_harness import MODES, RunResult, baseline_run, check_mixed_run, valid_events

FUZZ = settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@cache
def _valid() -> tuple[dict[str, Any], ...]:
    return tuple(valid_events())


@cache
def _baseline(mode: str) -> RunResult:
    return baseline_run(_valid(), mode)


@pytest.mark.parametrize("mode", sorted(MODES))
@FUZZ
@given(data=st.data())
def test_hostile_lines_are_dead_lettered_and_change_no_alert(
    mode: str, data: st.DataObject
) -> None:
    chooser = DrawChooser(data)
    count = chooser.integer(1, 60)
    run = check_mixed_run(chooser, _valid(), _baseline(mode), mode, count)
    assert run.hostile == count


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("mutation", sorted(LINE_MUTATIONS))
def test_every_mutation_is_dead_lettered(mode: str, mutation: str) -> None:
    """Each kind of mutation on its own, 40 lines of it, so none depends on the draw."""
    import random

    class OnlyThis(RandomChooser):
        def pick(self, options: Any) -> Any:
            if tuple(options) == tuple(LINE_MUTATIONS):
                return mutation
            return super().pick(options)

    chooser = OnlyThis(random.Random(f"{mode}/{mutation}"), max_string=5_000)
    run = check_mixed_run(chooser, _valid(), _baseline(mode), mode, 40)
    assert run.by_mutation == {mutation: 40}


def test_the_baselines_exercise_the_rules() -> None:
    """The valid stream is no empty stage: it fires alerts, has duplicates, and (as it
    arrives out of order) retracts some."""
    for mode in MODES:
        base = _baseline(mode)
        assert base.counts["firing"] > 20
        assert base.counts["duplicates"] > 0
        assert len({a["rule"] for a in base.alerts}) >= 4
    assert _baseline("as-arrived").counts["retracted"] > 0


def test_hostile_lines_never_hold_a_line_feed() -> None:
    import random

    chooser = RandomChooser(random.Random(7), max_string=2_000)
    valid = _valid()
    for serial in range(2_000):
        line = hostile_line(chooser, chooser.pick(valid), serial)
        assert b"\n" not in line.raw and line.raw.strip(b" \t\r")
        assert not line.raw.endswith(b"\r")  # a CR before the LF would be read as CRLF
