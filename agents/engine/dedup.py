"""The duplicate window (SPEC §1): which event ids of a service are remembered.

"A repeated ``event_id`` of the same service is a duplicate and is ignored, whatever else
it says, while relsec remembers the first: for the duplicate window (by default 7 days of
event time behind the newest event of the service; configurable) ... A repeat after that
is judged like any other event."

:class:`DuplicateWindow` is that memory for one service; the engine keeps one per service
(in its state bytes) and sorted replay keeps one per service while it reads the files in
order (:class:`DuplicateFilter`), so both modes and the worker apply one rule:

* the first copy is remembered with its ``occurred_at``; a later copy is a duplicate
  while that time is no more than the window behind the newest event of the service seen
  before the copy;
* only events that are taken count: a dead-lettered record (future, late) and a
  duplicate register nothing and do not move the newest time.

Forgetting is judged by age when asked, not by presence, so when :meth:`prune` runs
never changes an answer.
"""

from __future__ import annotations

from typing import Any

from agents.model.events import Event


class DuplicateWindow:
    """The remembered event ids of one service, each with the time of its first copy.

    The caller keeps the newest event time taken for the service and passes it in.
    """

    __slots__ = ("_first_ms", "_prune_at", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._first_ms: dict[str, int] = {}
        self._prune_at = 64

    def first_seen_ms(self, event_id: str, newest_ms: int | None) -> int | None:
        """When the remembered first copy of ``event_id`` occurred, if it is still
        remembered with ``newest_ms`` the newest event time taken before the copy."""
        first = self._first_ms.get(event_id)
        if first is None or newest_ms is None or first < newest_ms - self.window_ms:
            return None
        return first

    def remember(self, event_id: str, occurred_at_ms: int, newest_ms: int) -> None:
        """Record a taken event (a first copy, or a repeat after the window);
        ``newest_ms`` is the newest event time taken, this one included."""
        self._first_ms[event_id] = occurred_at_ms
        if len(self._first_ms) >= self._prune_at:
            self.prune(newest_ms)

    def prune(self, newest_ms: int | None) -> None:
        """Forget ids older than the window (amortized: runs when the memory doubled)."""
        if newest_ms is not None:
            edge = newest_ms - self.window_ms
            if any(ms < edge for ms in self._first_ms.values()):
                self._first_ms = {k: v for k, v in self._first_ms.items() if v >= edge}
        self._prune_at = max(64, 2 * len(self._first_ms))

    def __len__(self) -> int:
        return len(self._first_ms)

    # -- serialization ---------------------------------------------------------

    def to_obj(
        self, newest_ms: int | None, skip: set[str] | frozenset[str] = frozenset()
    ) -> list[list[Any]]:
        """Remembered ids grouped by time, ``[[ms, id, id, …], …]`` oldest first; ids in
        ``skip`` (those the caller stores otherwise, with the same time) are left out."""
        self.prune(newest_ms)
        by_ms: dict[int, list[Any]] = {}
        for event_id, ms in self._first_ms.items():
            if event_id not in skip:
                by_ms.setdefault(ms, [ms]).append(event_id)
        return [by_ms[ms] for ms in sorted(by_ms)]

    def load(self, obj: list[list[Any]]) -> None:
        """Add ids from :meth:`to_obj`."""
        for group in obj:
            ms = int(group[0])
            for event_id in group[1:]:
                if not isinstance(event_id, str):
                    raise TypeError("an event id must be a string")
                self._first_ms[event_id] = ms
        self._prune_at = max(64, 2 * len(self._first_ms))


class DuplicateFilter:
    """Duplicate windows of many services, for input read in arrival order (sorted
    replay's pass over its files, before it sorts)."""

    __slots__ = ("_newest", "_windows", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._windows: dict[str, DuplicateWindow] = {}
        self._newest: dict[str, int] = {}

    def take(self, event: Event) -> bool:
        """``True`` for an event to process (now remembered), ``False`` for a duplicate."""
        service = event.service
        window = self._windows.get(service)
        newest = self._newest.get(service)
        if window is None:
            window = self._windows[service] = DuplicateWindow(self.window_ms)
        elif window.first_seen_ms(event.event_id, newest) is not None:
            return False
        if newest is None or event.occurred_at_ms > newest:
            newest = self._newest[service] = event.occurred_at_ms
        window.remember(event.event_id, event.occurred_at_ms, newest)
        return True
