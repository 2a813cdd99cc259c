"""The worker's errors, raised where they happen, under relsec's one root.

Each carries where it happened as values (:class:`RecordAt`: topic, partition,
offset, key) so a message, a log line or a test can name the record, and what
the worker knew that explains it (a record's size against the limit learned at
start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.errors import ConfigError, RelsecError


@dataclass(frozen=True, slots=True)
class RecordAt:
    """Where a record is or was going: a topic, maybe a partition and an offset."""

    topic: str
    partition: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        text = self.topic
        if self.partition is not None:
            text += f"[{self.partition}]"
        if self.offset is not None:
            text += f"@{self.offset}"
        return text


@dataclass(frozen=True, slots=True)
class Refusal:
    """One record the broker (or the client) did not accept, and why."""

    at: RecordAt
    what: str
    """What the record was: ``state of service 'checkout' (part 2 of 5)``, ``alert``."""
    reason: str
    size: int | None = None
    limit: int | None = None

    @property
    def refused_for_size_within_limit(self) -> bool:
        """Too large for the broker, though within the limit the worker knew."""
        return (
            "too large" in self.reason.lower()
            and self.size is not None
            and self.limit is not None
            and self.size <= self.limit
        )

    def __str__(self) -> str:
        text = f"{self.what} to {self.at}: {self.reason}"
        if self.size is not None:
            text += f" ({self.size:,} bytes"
            if self.limit is not None:
                text += f"; the limit learned at start is {self.limit:,}"
            text += ")"
        return text


class WorkerError(RelsecError):
    """Root of the errors the stream worker raises."""


class DeliveryRefused(WorkerError):
    """Records were not delivered: the worker stops without committing what they held.

    Its in-memory state is ahead of what is stored; only a restart from the stored
    state and the committed offsets is consistent again (and re-sends the outputs).
    """

    stage = "output records were not delivered"

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals = tuple(refusals)
        shown = "; ".join(str(r) for r in self.refusals[:5])
        more = len(self.refusals) - 5
        if more > 0:
            shown += f"; and {more} more"
        hint = ""
        if any(r.refused_for_size_within_limit for r in self.refusals):
            hint = (
                ". The broker's limit is below the one the worker read at start (was it "
                "lowered?): a restart reads the limits again and cuts records to them"
            )
        super().__init__(f"{self.stage}, not committing: {shown}{hint}")


class OutputsRefused(DeliveryRefused):
    """Alerts, OCSF findings or dead letters were refused."""


class CheckpointNotStored(DeliveryRefused):
    """A checkpoint's changelog records (states, their parts, outboxes) were refused."""

    stage = "checkpoint not stored (state changelog records were not delivered)"


class TransactionFailed(WorkerError):
    """An exactly-once checkpoint's transaction was not committed (and was aborted)."""


class StopOverdue(WorkerError):
    """A stop waited ``shutdown_timeout_ms`` for Kafka (or was asked twice)."""


class ConsumerFailed(WorkerError):
    """The consumer reported a fatal error."""

    def __init__(self, at: RecordAt | None, reason: str) -> None:
        self.at = at
        self.reason = reason
        where = f" at {at}" if at is not None else ""
        super().__init__(f"consumer failed{where}: {reason}")


class RestoreFailed(WorkerError):
    """The state changelog could not be read back (timeout, fatal read error)."""

    def __init__(self, topic: str, partitions: Sequence[int], reason: str) -> None:
        self.topic = topic
        self.partitions = tuple(partitions)
        self.reason = reason
        super().__init__(f"restoring {topic} partitions {sorted(partitions)}: {reason}")


class RecordLimitError(ConfigError, WorkerError):
    """A topic's record size limit is too small for what the worker must write there."""

    def __init__(self, topic: str, limit: int, needed: int) -> None:
        self.topic = topic
        self.limit = limit
        self.needed = needed
        super().__init__(
            f"{topic}: records may be at most {limit:,} bytes (max.message.bytes, or the "
            f"producer's message.max.bytes); the worker needs at least {needed:,}"
        )
