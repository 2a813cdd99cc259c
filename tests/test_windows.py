"""The event-time window functions and their edges (agents/engine/windows.py)."""

from __future__ import annotations

from agents.engine.windows import (
    FLIP_FLOP_WINDOW_MS,
    MAX_FUTURE_MS,
    REDEPLOY_WINDOW_MS,
    in_half_open_window,
    is_future,
    is_late,
    lateness_frontier,
    within_before,
)

D = 1_772_600_000_000


def test_window_lengths() -> None:
    assert REDEPLOY_WINDOW_MS == 7 * 24 * 3_600_000
    assert FLIP_FLOP_WINDOW_MS == 24 * 3_600_000
    assert MAX_FUTURE_MS == 5 * 60_000


def test_within_before_is_inclusive_at_the_lower_edge() -> None:
    assert within_before(D - REDEPLOY_WINDOW_MS, D, REDEPLOY_WINDOW_MS)
    assert not within_before(D - REDEPLOY_WINDOW_MS - 1, D, REDEPLOY_WINDOW_MS)
    assert within_before(D, D, REDEPLOY_WINDOW_MS)


def test_half_open_window_excludes_the_lower_edge_includes_d() -> None:
    w = FLIP_FLOP_WINDOW_MS
    assert not in_half_open_window(D - w, D, w)
    assert in_half_open_window(D - w + 1, D, w)
    assert in_half_open_window(D, D, w)
    assert not in_half_open_window(D + 1, D, w)


def test_lateness_edges() -> None:
    lateness = 3_600_000
    assert lateness_frontier(D, lateness) == D - lateness
    assert not is_late(D - lateness, D, lateness)
    assert is_late(D - lateness - 1, D, lateness)
    assert not is_late(0, None, lateness)
    assert not is_late(D, D, 0)
    assert is_late(D - 1, D, 0)


def test_future_edges() -> None:
    assert not is_future(D + MAX_FUTURE_MS, D)
    assert is_future(D + MAX_FUTURE_MS + 1, D)
    assert not is_future(D - 10**9, D)
    assert is_future(D + 1, D, 0)
