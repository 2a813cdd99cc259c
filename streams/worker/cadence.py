"""When the kafka runtime seals an at-least-once checkpoint, and of which kind.

A checkpoint is what makes applied work durable, then visible (an alert leaves only once
the state of its service is stored), then committed. Storing a state re-serializes the
whole service (its lateness log, its duplicate window), so in live traffic, where most
services see one event between two checkpoints, storing is most of a checkpoint's cost
and most of the changelog's volume. Two kinds of seal keep alerts fast without storing
every service at every checkpoint:

* **partial**, in live traffic every ``every_ms`` (10 ms by default) while anything
  was taken: it stores the services whose outputs (alerts, late dead letters) wait, so
  they may leave, and the services first touched ``store_delay_ms`` ago or more (since
  their state was last stored); the others stay touched for a later one. Its input
  offsets stop at the first record of a service not stored yet (the runtime asks the
  processor), so a commit never passes an applied record whose state is not stored;
* **full**: every touched service: while a backlog is read (every
  ``backlog_every_ms``, alerts wait for it too), after ``max_records`` records, once
  the outbox holds ``max_outbox_bytes``, and before partitions are given up.

When the input goes quiet (no record for ``every_ms``, nothing held in the merge: the end
of a backlog, or traffic too slow to gain from waiting) the seal is full, so the commit
reaches the end at once. A crash re-reads from the last commit; the services stored since
know their records by offset, the others apply them again: nothing is lost, no alert is
repeated. In busy live traffic each service's state is written about once per
``store_delay_ms`` at most (more often when it alerts), and each seal's cost stays about
even (no periodic seal of every service). ``store_delay_ms`` 0 makes every seal full.

Pure: the clock's readings are passed in (tests/worker/test_cadence.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SealKind = Literal["full", "partial"]


@dataclass(slots=True)
class CheckpointCadence:
    """The at-least-once seal schedule of one worker (see the module docstring)."""

    every_ms: int
    store_delay_ms: int
    backlog_every_ms: int
    max_records: int
    max_outbox_bytes: int
    last_ms: int = 0

    def due(
        self,
        now_ms: int,
        records_since_seal: int,
        holding_outputs: bool,
        outbox_bytes: int,
        backlog: bool,
        oldest_touch_ms: int | None = None,
        idle: bool = False,
    ) -> SealKind | None:
        """The seal due now, if any.

        ``records_since_seal``: input records taken (admitted, applied, dead-lettered)
        since the last seal; ``holding_outputs``: engine outputs wait for a seal;
        ``oldest_touch_ms``: when the service touched longest ago without its state
        stored was first touched (None: every touched service is stored); ``idle``: no
        input record came for ``every_ms`` and the merge holds none.
        """
        unstored = oldest_touch_ms is not None
        aged = oldest_touch_ms is not None and oldest_touch_ms < self.store_before_ms(now_ms)
        if not records_since_seal and not holding_outputs and not aged:
            # Nothing else to do: store the rest, so the commit reaches the end.
            return "full" if idle and unstored else None
        if records_since_seal >= self.max_records or outbox_bytes >= self.max_outbox_bytes:
            return "full"
        elapsed = now_ms - self.last_ms
        if backlog:
            return "full" if elapsed >= max(self.every_ms, self.backlog_every_ms) else None
        if elapsed < self.every_ms:
            return None
        return "partial" if self.store_delay_ms > 0 and not idle else "full"

    def store_before_ms(self, now_ms: int) -> int:
        """A partial seal at ``now_ms`` also stores the services first touched before this."""
        return now_ms - self.store_delay_ms

    def sealed(self, now_ms: int) -> None:
        """A seal happened at ``now_ms``."""
        self.last_ms = now_ms
