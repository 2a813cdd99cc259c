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

Forgetting is judged by age when asked, not by presence, so when
:meth:`DuplicateWindow.prune` runs never changes an answer.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from agents.model.events import Event

BUCKET_MS: Final = 3_600_000
"""Ids are kept (and serialized) in buckets of an hour of their ``occurred_at``."""


class DuplicateWindow:
    """The remembered event ids of one service, each with the time of its first copy.

    The caller keeps the newest event time taken for the service and passes it in. Ids
    are also filed by hour: expiry drops whole hours, and the serialized form of an hour
    that can no longer change (before the caller's frontier, after the window's edge) is
    kept, so storing a busy service's state does not re-render a week of ids each time.
    """

    __slots__ = ("_by_hour", "_first_ms", "_prune_at", "_rendered", "window_ms")

    def __init__(self, window_ms: int, *, stored: bool = True) -> None:
        self.window_ms = window_ms
        self._first_ms: dict[str, int] = {}
        self._by_hour: dict[int, list[str]] | None = {} if stored else None
        """hour -> ids filed there (an id re-remembered later stays listed: filtered by
        ``_first_ms`` when read); ``None`` for a window that is never stored (sorted
        replay's), which prunes by scanning when its memory doubled instead."""
        self._rendered: dict[int, orjson.Fragment] = {}
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
        before = self._first_ms.get(event_id)
        if before is not None:  # a repeat after the window: its old hour changes
            self._rendered.pop(before // BUCKET_MS, None)
        self._first_ms[event_id] = occurred_at_ms
        by_hour = self._by_hour
        if by_hour is None:
            if len(self._first_ms) >= self._prune_at:
                self.prune(newest_ms)
            return
        hour = occurred_at_ms // BUCKET_MS
        ids = by_hour.get(hour)
        if ids is None:
            by_hour[hour] = [event_id]
            if len(by_hour) > 2 * (self.window_ms // BUCKET_MS + 2):
                self.prune(newest_ms)
        else:
            ids.append(event_id)
            self._rendered.pop(hour, None)

    def prune(self, newest_ms: int | None) -> None:
        """Forget the hours wholly older than the window (ids of the hour at the edge
        are judged by age when asked)."""
        if newest_ms is None:
            return
        edge_ms = newest_ms - self.window_ms
        by_hour = self._by_hour
        if by_hour is None:
            if any(ms < edge_ms for ms in self._first_ms.values()):
                self._first_ms = {k: v for k, v in self._first_ms.items() if v >= edge_ms}
            self._prune_at = max(64, 2 * len(self._first_ms))
            return
        edge_hour = edge_ms // BUCKET_MS
        for hour in [h for h in by_hour if h < edge_hour]:
            for event_id in by_hour.pop(hour):
                ms = self._first_ms.get(event_id)
                if ms is not None and ms // BUCKET_MS == hour:
                    del self._first_ms[event_id]
            self._rendered.pop(hour, None)

    def __len__(self) -> int:
        return len(self._first_ms)

    # -- serialization ---------------------------------------------------------

    def _groups(self, hour: int, edge_ms: int, before_ms: int) -> list[list[Any]]:
        """The hour's remembered ids in ``[edge_ms, before_ms)`` as ``[[ms, id, …], …]``."""
        first_ms = self._first_ms
        by_ms: dict[int, list[Any]] = {}
        assert self._by_hour is not None
        for event_id in dict.fromkeys(self._by_hour[hour]):
            ms = first_ms.get(event_id)
            if ms is None or ms // BUCKET_MS != hour or not edge_ms <= ms < before_ms:
                continue
            by_ms.setdefault(ms, [ms]).append(event_id)
        return [by_ms[ms] for ms in sorted(by_ms)]

    def to_obj(self, newest_ms: int | None, before_ms: int | None) -> list[Any]:
        """The ids remembered with a time before ``before_ms``, as hour buckets oldest
        first, each ``[[ms, id, …], …]``.

        The caller stores the rest otherwise: ``before_ms`` is its frontier, and every id
        at or after it is an event of its lateness log. An hour wholly before it can no
        longer change (no event behind the frontier is ever taken) and, unless it holds
        the window's edge, is rendered once and reused."""
        if self._by_hour is None:
            raise ValueError("this duplicate window is not stored")
        if newest_ms is None or before_ms is None:
            return []
        self.prune(newest_ms)
        edge_ms = newest_ms - self.window_ms
        edge_hour = edge_ms // BUCKET_MS
        out: list[Any] = []
        for hour in sorted(self._by_hour):
            if hour * BUCKET_MS >= before_ms:
                break
            if hour > edge_hour and (hour + 1) * BUCKET_MS <= before_ms:
                rendered = self._rendered.get(hour)
                if rendered is None:
                    groups = self._groups(hour, edge_ms, before_ms)
                    rendered = self._rendered[hour] = orjson.Fragment(orjson.dumps(groups).decode())
                out.append(rendered)
            else:
                groups = self._groups(hour, edge_ms, before_ms)
                if groups:
                    out.append(groups)
        return out

    def load(self, obj: list[Any]) -> None:
        """Add ids from :meth:`to_obj`."""
        if self._by_hour is None:
            raise ValueError("this duplicate window is not stored")
        for bucket in obj:
            for group in bucket:
                ms = int(group[0])
                for event_id in group[1:]:
                    if not isinstance(event_id, str):
                        raise TypeError("an event id must be a string")
                    self._first_ms[event_id] = ms
                    self._by_hour.setdefault(ms // BUCKET_MS, []).append(event_id)


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
            window = self._windows[service] = DuplicateWindow(self.window_ms, stored=False)
        elif window.first_seen_ms(event.event_id, newest) is not None:
            return False
        if newest is None or event.occurred_at_ms > newest:
            newest = self._newest[service] = event.occurred_at_ms
        window.remember(event.event_id, event.occurred_at_ms, newest)
        return True
