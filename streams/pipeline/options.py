"""The worker's settings, shared by both runtimes (Faust agent and confluent-kafka loop)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from agents.errors import ConfigError

RUNTIMES: Final = ("kafka", "faust")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How the worker runs; units in the names.

    ``runtime`` picks what drives the engine: ``kafka`` (a confluent-kafka consumer
    loop, the default) or ``faust`` (a Faust agent with a Table). Both keep the
    engine's state in the same changelog topic with the same record format.
    """

    partitions: int = 6
    replication_factor: int = 1
    runtime: str = "kafka"
    store: str = "memory://"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    merge_idle_ms: int = 2_000
    merge_lagging_max_ms: int = 60_000
    merge_caught_up_grace_ms: int = 10
    merge_far_ahead_grace_ms: int = 250
    fetch_max_wait_ms: int = 100
    batch_records: int = 500
    drain_interval_ms: int = 50
    checkpoint_interval_ms: int | None = None
    checkpoint_records: int = 5_000
    commit_interval_ms: int = 100
    backlog_checkpoint_interval_ms: int = 250
    shutdown_timeout_ms: int = 25_000
    exactly_once: bool = False
    data_dir: str | None = None
    instance_id: str | None = None
    transaction_timeout_ms: int = 30_000

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}")
        for name in ("partitions", "replication_factor", "batch_records", "checkpoint_records"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in (
            "merge_idle_ms",
            "merge_lagging_max_ms",
            "merge_caught_up_grace_ms",
            "merge_far_ahead_grace_ms",
            "checkpoint_every_ms",
            "commit_interval_ms",
            "backlog_checkpoint_interval_ms",
            "shutdown_timeout_ms",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")

    @property
    def checkpoint_every_ms(self) -> int:
        """How often applied work is made durable (and, in the kafka runtime, visible).

        The kafka runtime sends an alert only once the state behind it is stored, so
        its checkpoint interval is part of alert latency: 10 ms by default (while a
        backlog is read, ``backlog_checkpoint_interval_ms``). Its at-least-once
        checkpoints do not stop the loop; an exactly-once checkpoint is a transaction
        the loop waits for, so that mode checkpoints every 100 ms. The Faust runtime
        sends at once and checkpoints every second.
        """
        if self.checkpoint_interval_ms is not None:
            return self.checkpoint_interval_ms
        if self.runtime == "faust":
            return 1_000
        return 100 if self.exactly_once else 10


def wall_ms() -> int:
    """The worker's clock (the engine gets it passed in; it never reads one itself)."""
    return time.time_ns() // 1_000_000
