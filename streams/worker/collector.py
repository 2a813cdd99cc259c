"""The kafka runtime's policy for Python's cyclic garbage collector.

The worker's per-record path makes no cyclic garbage (tests/worker/test_gc_policy.py,
bad input included): reference counting frees everything it drops. What survives is
the services' state, which only the cyclic collector would walk, over and over, finding
nothing. So while the loop runs:

* **no automatic collection.** At a young-generation threshold of 50,000 allocations the
  collector still took 11% of a backlog's CPU in the worker core (10 collections of about
  50 ms for 100,000 events; docs/performance.md §27), all of it walking live state;
* **freeze once a second** (``gc.freeze()``): what was allocated since and still lives
  moves to the permanent generation without being walked, so a sweep (below) or a
  library's own ``gc.collect()`` never walks it;
* **a sweep, rarely**: unfreeze, one full collection, freeze again. It is the guard
  against a cycle made off the per-record path (an error path, a library's callback):
  such a cycle would otherwise stay until the process ends. A sweep walks the whole
  state (0.4 s at 2,000 services, 1.5 s at 10,000 on the project's machine), so it is
  taken at an idle moment (no input for a checkpoint interval, nothing in the merge)
  once ``sweep_every_ms`` have passed, and at ``sweep_at_most_ms`` whatever the traffic.
  Whatever it finds is counted (``relsec_gc_collected_objects_total``): a count that
  grows names a path that makes cycles.

:class:`CollectorPolicy` decides (pure: the clock's readings are passed in);
:func:`collector_step` does what it decided.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Literal, Protocol

CollectorStep = Literal["freeze", "sweep"]

FREEZE_EVERY_MS = 1_000
"""How often what the loop allocated and still holds moves out of the collector's sight."""
SWEEP_EVERY_MS = 600_000
"""From this long after the last sweep, a sweep is taken at the next idle moment."""
SWEEP_AT_MOST_MS = 3_600_000
"""A worker that is never idle still sweeps this often (a pause of a full collection)."""


@dataclass(slots=True)
class CollectorPolicy:
    """When the loop freezes and when it sweeps (see the module docstring)."""

    freeze_every_ms: int = FREEZE_EVERY_MS
    sweep_every_ms: int = SWEEP_EVERY_MS
    sweep_at_most_ms: int = SWEEP_AT_MOST_MS
    last_freeze_ms: int | None = None
    last_sweep_ms: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.freeze_every_ms <= self.sweep_every_ms <= self.sweep_at_most_ms:
            raise ValueError("need 0 < freeze_every_ms <= sweep_every_ms <= sweep_at_most_ms")

    def due(self, now_ms: int, idle: bool) -> CollectorStep | None:
        """The step due now, if any, and it counts as taken. ``idle``: no input record
        came for a checkpoint interval and the merge holds none. The first call starts
        the clocks and takes no step."""
        if self.last_freeze_ms is None or self.last_sweep_ms is None:
            self.last_freeze_ms = self.last_sweep_ms = now_ms
            return None
        since_sweep = now_ms - self.last_sweep_ms
        if since_sweep >= self.sweep_at_most_ms or (idle and since_sweep >= self.sweep_every_ms):
            self.last_freeze_ms = self.last_sweep_ms = now_ms
            return "sweep"
        if now_ms - self.last_freeze_ms >= self.freeze_every_ms:
            self.last_freeze_ms = now_ms
            return "freeze"
        return None


class SweepMetrics(Protocol):
    """What a sweep reports to (``PipelineMetrics`` has both)."""

    def sweep_took(self, seconds: float, collected: int) -> None: ...


def collector_step(step: CollectorStep, metrics: SweepMetrics | None = None) -> int:
    """Freeze, or sweep (unfreeze, collect everything, freeze again); the number of
    unreachable objects the sweep found (0 for a freeze)."""
    if step == "freeze":
        gc.freeze()
        return 0
    started = time.perf_counter()
    gc.unfreeze()
    try:
        collected = gc.collect()
    finally:
        gc.freeze()
    if metrics is not None:
        metrics.sweep_took(time.perf_counter() - started, collected)
    return collected
