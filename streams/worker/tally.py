"""Lock-free counters of the worker's per-record path (compiled with it).

A :class:`Tally` is a plain integer, or a family of them by label values, incremented by
the worker's loop thread only and read by the collector of
:mod:`streams.worker.metrics` when ``/metrics`` is scraped. A Prometheus client counter
takes a lock on every increment, a few percent of the worker's time at thousands of
records a second; an interpreted counter still costs a Python call per increment, so
this module is compiled with the worker's core (``MODULES`` in ``agents/model/_pure.py``).
"""

from __future__ import annotations


class Tally:
    """A counter with optional labels, counted without a lock."""

    __slots__ = ("_children", "documentation", "label_names", "name", "value")

    def __init__(self, name: str, documentation: str, label_names: tuple[str, ...] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = label_names
        self.value = 0
        self._children: dict[tuple[str, ...], Tally] = {}

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def labels(self, *values: str) -> Tally:
        """The child counting these label values (made on first use)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.label_names):
                raise ValueError(f"{self.name} takes labels {self.label_names}, got {values}")
            child = self._children[values] = Tally(self.name, self.documentation)
        return child

    def samples(self) -> list[tuple[list[str], int]]:
        """``(label values, count)`` of every child, or of this counter when unlabelled."""
        if self.label_names:
            return [(list(values), child.value) for values, child in list(self._children.items())]
        return [([], self.value)]
