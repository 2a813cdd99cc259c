"""The worker's options, each declared once (:class:`~streams.settings.Setting`).

:data:`WORKER_SETTINGS` is the single list: ``relsec worker``'s flags are built from
it (:func:`streams.settings.add_flags`), ``RELSEC_*`` environment variables are read
through it, and :class:`WorkerOptions` takes its defaults from it, so a default,
a help text or a check is written in one place only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Final

from agents.errors import ConfigError
from streams.settings import (
    BOOLEAN,
    DEFAULT_PARTITIONS,
    INTEGER,
    NUMBER,
    TEXT,
    Setting,
    at_least,
    check_values,
)

RUNTIMES: Final = ("kafka", "faust")
STORES: Final = ("memory", "rocksdb")


def _ms(name: str, env: str, default: int | None, help: str, minimum: int = 0) -> Setting[int]:
    """A duration in milliseconds (the flag is named after the setting: ``--NAME-ms``)."""
    return Setting(name, INTEGER, default, help, env=env, check=at_least(minimum), metavar="MS")


def _count(name: str, env: str, default: int, help: str, minimum: int = 1) -> Setting[int]:
    return Setting(name, INTEGER, default, help, env=env, check=at_least(minimum), metavar="N")


WORKER_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting(
        "runtime",
        TEXT,
        "kafka",
        "what drives the engine: a confluent-kafka consumer loop, or a Faust agent with a "
        "Table; both use the same changelog topic and consumer group (never run both in one "
        "group at once)",
        env="RELSEC_RUNTIME",
        choices=RUNTIMES,
    ),
    Setting(
        "instance_id",
        TEXT,
        None,
        "a stable name for this worker (the transactional id with --exactly-once; default "
        "the host name and a random suffix)",
        env="RELSEC_INSTANCE_ID",
    ),
    Setting(
        "exactly_once",
        BOOLEAN,
        False,
        "one Kafka transaction per checkpoint (states, outputs and input offsets)",
        env="RELSEC_EXACTLY_ONCE",
    ),
    Setting(
        "web_host",
        TEXT,
        "127.0.0.1",
        "bind address of /metrics and /healthz",
        env="RELSEC_WEB_HOST",
    ),
    Setting("web_port", INTEGER, 6066, "port of /metrics and /healthz", env="RELSEC_WEB_PORT"),
    _count(
        "web_max_connections",
        "RELSEC_WEB_MAX_CONNECTIONS",
        16,
        "most HTTP connections /metrics and /healthz serve at once (one more is closed "
        "at once)",
    ),
    _ms(
        "web_read_timeout_ms",
        "RELSEC_WEB_READ_TIMEOUT_MS",
        5_000,
        "how long the web endpoint waits for a client's request before closing it",
        minimum=1,
    ),
    _ms(
        "health_stall_ms",
        "RELSEC_HEALTH_STALL_MS",
        15_000,
        "/healthz answers 503 when the worker has made no progress (a loop turn, a restored "
        "batch of state) for this long",
        minimum=1,
    ),
    Setting(
        "store",
        TEXT,
        "memory",
        "Faust runtime's table store (rocksdb needs rocksdict; memory is rebuilt from the "
        "changelog)",
        env="RELSEC_STORE",
        choices=STORES,
    ),
    Setting(
        "data_dir",
        TEXT,
        None,
        "Faust data directory (the tables' local state)",
        env="RELSEC_DATA_DIR",
    ),
    Setting(
        "replication_factor",
        INTEGER,
        None,
        "replication of the state changelog topic when the worker creates it (default: "
        "min(3, brokers))",
        env="RELSEC_REPLICATION_FACTOR",
        check=at_least(1),
    ),
    Setting(
        "wait_for_topics_s",
        NUMBER,
        60.0,
        "how long to wait at start for the input topics to exist",
        env="RELSEC_WAIT_FOR_TOPICS",
        flag="--wait-for-topics",
        check=at_least(0),
        metavar="SECONDS",
    ),
    _ms(
        "merge_idle_ms",
        "RELSEC_MERGE_IDLE_MS",
        2_000,
        "longest wait for a silent input partition in the event-time merge",
    ),
    _ms(
        "merge_lagging_max_ms",
        "RELSEC_MERGE_LAGGING_MAX_MS",
        60_000,
        "longest wait for an input partition known to be behind (a safety limit)",
    ),
    _ms(
        "merge_caught_up_grace_ms",
        "RELSEC_MERGE_CAUGHT_UP_GRACE_MS",
        10,
        "how long a record waits ahead of a caught-up but empty input partition (absorbs "
        "bursts whose topics arrive a fetch apart)",
    ),
    _ms(
        "merge_far_ahead_grace_ms",
        "RELSEC_MERGE_FAR_AHEAD_GRACE_MS",
        250,
        "the same wait when the record is more than half the allowed lateness ahead of "
        "that partition's newest record (a burst, not a live stream)",
    ),
    _ms(
        "fetch_max_wait_ms",
        "RELSEC_FETCH_MAX_WAIT_MS",
        100,
        "longest a fetch waits for new records (Faust's own is 1500 ms; alert latency "
        "follows it through the event-time merge)",
    ),
    _count("batch_records", "RELSEC_BATCH_RECORDS", 500, "records consumed per loop turn at most"),
    _count(
        "merge_buffer_records",
        "RELSEC_MERGE_BUFFER_RECORDS",
        10_000,
        "records an input partition may hold in the merge before the kafka runtime pauses "
        "fetching it (the engine works a burst off slice by slice)",
    ),
    _count(
        "slice_events",
        "RELSEC_SLICE_EVENTS",
        2_000,
        "events the engine takes per loop turn at most: a scanner's burst is worked off "
        "in slices, so heartbeats, acknowledgements, commits and /healthz go on",
    ),
    _ms(
        "slice_target_ms",
        "RELSEC_SLICE_TARGET_MS",
        1_000,
        "how long the engine's share of one loop turn should take: a slice that took "
        "longer makes the next one smaller (down to 500 events), a quick one lets it grow "
        "back to --slice-events",
        minimum=1,
    ),
    _ms(
        "drain_interval_ms",
        "RELSEC_DRAIN_INTERVAL_MS",
        50,
        "Faust runtime: how often held records are looked at",
        minimum=1,
    ),
    _ms(
        "checkpoint_interval_ms",
        "RELSEC_CHECKPOINT_INTERVAL_MS",
        None,
        "how often applied work is stored (kafka runtime: 10, or 100 with --exactly-once; "
        "its alerts go out at checkpoints; faust runtime: 1000)",
    ),
    _count(
        "checkpoint_records",
        "RELSEC_CHECKPOINT_RECORDS",
        20_000,
        "a checkpoint is sealed after this many records at most (each checkpoint stores "
        "every service it touched: while a backlog is read, fewer and larger ones cost less)",
    ),
    _count(
        "checkpoint_bytes",
        "RELSEC_CHECKPOINT_BYTES",
        8 << 20,
        "a checkpoint is sealed once its outputs hold this many bytes (a scanner's report "
        "fires thousands of alerts at once)",
    ),
    _ms(
        "backlog_checkpoint_interval_ms",
        "RELSEC_BACKLOG_CHECKPOINT_INTERVAL_MS",
        1_000,
        "the checkpoint interval while a backlog is read (full batches, thousands of "
        "records behind): each checkpoint "
        "serializes every service it touched, so this sets how often a busy service's "
        "state is written",
    ),
    _ms(
        "state_store_delay_ms",
        "RELSEC_STATE_STORE_DELAY_MS",
        1_000,
        "kafka runtime, at-least-once, live traffic: how long a touched service's state may "
        "wait to be stored when none of its alerts wait (those go at the next checkpoint); "
        "input offsets are committed up to its first unstored record (0: every checkpoint "
        "stores every touched service)",
    ),
    _ms(
        "commit_interval_ms",
        "RELSEC_COMMIT_INTERVAL_MS",
        100,
        "input offsets are committed at most this often",
    ),
    _count(
        "max_checkpoints_in_flight",
        "RELSEC_MAX_CHECKPOINTS_IN_FLIGHT",
        8,
        "sealed checkpoints on their way before the loop waits for the oldest (backpressure)",
    ),
    _ms(
        "shutdown_timeout_ms",
        "RELSEC_SHUTDOWN_TIMEOUT_MS",
        25_000,
        "kafka runtime: how long SIGTERM waits for the last checkpoint before the worker "
        "exits without it (its input is then read again; a second signal: at once)",
    ),
    _ms(
        "transaction_timeout_ms",
        "RELSEC_TRANSACTION_TIMEOUT_MS",
        30_000,
        "with --exactly-once: the transaction timeout the broker aborts an open one after",
        minimum=1_000,
    ),
    _ms(
        "idle_service_evict_ms",
        "RELSEC_IDLE_SERVICE_EVICT_MS",
        60_000,
        "a service untouched this long (wall clock) is dropped from the engine cache once "
        "its state is stored; its stored bytes stay (they are the store)",
    ),
    _count(
        "producer_max_message_bytes",
        "RELSEC_PRODUCER_MAX_MESSAGE_BYTES",
        1_000_000,
        "the producer's message.max.bytes: with each topic's max.message.bytes, the record "
        "size the worker splits states and outboxes to",
        minimum=4_096,
    ),
    Setting("loglevel", TEXT, "warning", "log level", env="RELSEC_LOGLEVEL", check=None),
)
"""Every option of ``relsec worker`` (beyond the Kafka connection of :mod:`streams.settings`)."""

_DEFAULTS: Final[dict[str, Any]] = {s.name: s.default for s in WORKER_SETTINGS}


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How the worker runs; units in the names. Defaults and checks: :data:`WORKER_SETTINGS`.

    ``partitions`` is not an option: it is read from the input topics at start.
    """

    partitions: int = DEFAULT_PARTITIONS
    runtime: str = _DEFAULTS["runtime"]
    instance_id: str | None = _DEFAULTS["instance_id"]
    exactly_once: bool = _DEFAULTS["exactly_once"]
    web_host: str = _DEFAULTS["web_host"]
    web_port: int = _DEFAULTS["web_port"]
    web_max_connections: int = _DEFAULTS["web_max_connections"]
    web_read_timeout_ms: int = _DEFAULTS["web_read_timeout_ms"]
    health_stall_ms: int = _DEFAULTS["health_stall_ms"]
    store: str = _DEFAULTS["store"]
    data_dir: str | None = _DEFAULTS["data_dir"]
    replication_factor: int | None = _DEFAULTS["replication_factor"]
    wait_for_topics_s: float = _DEFAULTS["wait_for_topics_s"]
    merge_idle_ms: int = _DEFAULTS["merge_idle_ms"]
    merge_lagging_max_ms: int = _DEFAULTS["merge_lagging_max_ms"]
    merge_caught_up_grace_ms: int = _DEFAULTS["merge_caught_up_grace_ms"]
    merge_far_ahead_grace_ms: int = _DEFAULTS["merge_far_ahead_grace_ms"]
    fetch_max_wait_ms: int = _DEFAULTS["fetch_max_wait_ms"]
    batch_records: int = _DEFAULTS["batch_records"]
    merge_buffer_records: int = _DEFAULTS["merge_buffer_records"]
    slice_events: int = _DEFAULTS["slice_events"]
    slice_target_ms: int = _DEFAULTS["slice_target_ms"]
    drain_interval_ms: int = _DEFAULTS["drain_interval_ms"]
    checkpoint_interval_ms: int | None = _DEFAULTS["checkpoint_interval_ms"]
    checkpoint_records: int = _DEFAULTS["checkpoint_records"]
    checkpoint_bytes: int = _DEFAULTS["checkpoint_bytes"]
    backlog_checkpoint_interval_ms: int = _DEFAULTS["backlog_checkpoint_interval_ms"]
    state_store_delay_ms: int = _DEFAULTS["state_store_delay_ms"]
    commit_interval_ms: int = _DEFAULTS["commit_interval_ms"]
    max_checkpoints_in_flight: int = _DEFAULTS["max_checkpoints_in_flight"]
    shutdown_timeout_ms: int = _DEFAULTS["shutdown_timeout_ms"]
    transaction_timeout_ms: int = _DEFAULTS["transaction_timeout_ms"]
    idle_service_evict_ms: int = _DEFAULTS["idle_service_evict_ms"]
    producer_max_message_bytes: int = _DEFAULTS["producer_max_message_bytes"]
    loglevel: str = _DEFAULTS["loglevel"]

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigError(f"partitions must be at least 1, got {self.partitions}")
        # Values built in code get the same checks as flags and environment variables.
        check_values(WORKER_SETTINGS, {f.name: getattr(self, f.name) for f in fields(self)})

    @staticmethod
    def from_values(values: dict[str, Any], partitions: int) -> WorkerOptions:
        """From :func:`streams.settings.resolve` over :data:`WORKER_SETTINGS`."""
        return WorkerOptions(partitions=partitions, **values)

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

    @property
    def faust_store_url(self) -> str:
        return f"{self.store}://"


def wall_ms() -> int:
    """The worker's clock (the engine gets it passed in; it never reads one itself)."""
    return time.time_ns() // 1_000_000
