"""The worker's liveness: when it last made progress, as its loop (not its web thread) saw it.

The loop calls :meth:`Progress.beat` on every turn, and a changelog restore on every
batch it reads; the web thread only reads. ``/healthz`` answers 503 once the worker
has made no progress for ``stall_ms``: a worker stuck in one long call (a blocking
wait on Kafka, an engine turn that never ends) is not healthy, and a liveness probe
should restart it. Both runtimes use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

OK = "ok"
STALLED = "stalled"


class Progress:
    """The monotonic time of the last progress. Written by one thread, read by others
    (a float attribute: reads and writes are atomic in CPython)."""

    __slots__ = ("clock", "last", "stall_ms")

    def __init__(self, stall_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_ms = stall_ms
        self.clock = clock
        self.last = clock()

    def beat(self) -> None:
        self.last = self.clock()

    def idle_ms(self) -> int:
        return round((self.clock() - self.last) * 1000)

    def report(self, **details: Any) -> dict[str, Any]:
        """The health report: ``status`` ok or stalled, how long since the last progress,
        the limit, and the runtime's ``details``."""
        idle = self.idle_ms()
        return {
            "status": OK if idle < self.stall_ms else STALLED,
            "last_loop_ms_ago": idle,
            "stall_limit_ms": self.stall_ms,
            **details,
        }
