"""Event-time window arithmetic as plain functions (all instants in UTC epoch ms).

Kept apart so each edge (inclusive or exclusive) is stated once and tested
without a broker or an engine.
"""

from __future__ import annotations

from typing import Final

from agents.model.timefmt import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE

REDEPLOY_WINDOW_MS: Final = 7 * MS_PER_DAY
"""SPEC §3: an incident-linked rollback counts for 7 days, lower edge inclusive."""

FLIP_FLOP_WINDOW_MS: Final = 24 * MS_PER_HOUR
"""SPEC §3: reversals are counted over (d - 24 h, d], lower edge exclusive."""

MAX_FUTURE_MS: Final = 5 * MS_PER_MINUTE
"""SPEC §5: an event more than 5 minutes ahead of the wall clock is dead-lettered."""


def within_before(x_ms: int, d_ms: int, window_ms: int) -> bool:
    """``d - window <= x``: the closed lower edge of "within N before d".

    The caller guarantees x is before d in order, so there is no upper check.
    """
    return d_ms - window_ms <= x_ms


def in_half_open_window(x_ms: int, d_ms: int, window_ms: int) -> bool:
    """``x`` in ``(d - window, d]``."""
    return d_ms - window_ms < x_ms <= d_ms


def lateness_frontier(max_seen_ms: int, allowed_lateness_ms: int) -> int:
    """The earliest event time still accepted: anything strictly older is late."""
    return max_seen_ms - allowed_lateness_ms


def is_late(event_ms: int, max_seen_ms: int | None, allowed_lateness_ms: int) -> bool:
    """An event older than the allowed lateness behind the newest seen for its service."""
    if max_seen_ms is None:
        return False
    return event_ms < lateness_frontier(max_seen_ms, allowed_lateness_ms)


def is_future(event_ms: int, now_ms: int, max_future_ms: int = MAX_FUTURE_MS) -> bool:
    """An event more than ``max_future_ms`` ahead of the wall clock ``now_ms``."""
    return event_ms > now_ms + max_future_ms
