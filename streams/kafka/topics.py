"""relsec's topics (SPEC §7): their settings, idempotent creation and the co-partitioning check.

The three input topics are read side by side and joined per service, so they
must have the same partition count (co-partitioned) and be keyed by service
with murmur2. The worker's state changelog is created here too (the worker
creates it as well if it is missing), compacted, co-partitioned with the inputs,
with its record size limit set: the worker splits states and outboxes to the
limits it reads at start (:func:`max_message_bytes`).

:func:`create_topics` creates what is missing and refuses to go on when existing
input topics are not co-partitioned, since creating the rest would make the join
wrong. Replication is ``min(3, brokers)`` unless given;
with three or more replicas ``min.insync.replicas=2``, so an ``acks=all``
write survives the loss of one broker.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from agents.errors import TopicError
from streams.kafka.clients import admin_config
from streams.settings import DEFAULT_PARTITIONS, Settings, Topics

MS_PER_DAY = 24 * 60 * 60 * 1000
INPUT_RETENTION_MS = 7 * MS_PER_DAY
ALERTS_OCSF_RETENTION_MS = 7 * MS_PER_DAY
DLQ_RETENTION_MS = 30 * MS_PER_DAY
METADATA_TIMEOUT_S = 15.0
METADATA_SETTLE_S = 3.0
CHANGELOG_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's own default, written out so every cluster gives the changelog the same limit."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic relsec needs: name, partition count, replication factor, topic configs."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicState:
    """What :func:`create_topics` found or made for one topic (for ``relsec topics create``)."""

    name: str
    partitions: int
    replication_factor: int
    created: bool


def _min_insync(replication_factor: int) -> str:
    return "2" if replication_factor >= 3 else "1"


def changelog_spec(
    topics: Topics, partitions: int = DEFAULT_PARTITIONS, replication_factor: int = 1
) -> TopicSpec:
    """The worker's state changelog: one record per service (and its parts), compacted."""
    return TopicSpec(
        topics.state_changelog,
        partitions,
        replication_factor,
        {
            "cleanup.policy": "compact",
            "min.insync.replicas": _min_insync(replication_factor),
            "max.message.bytes": str(CHANGELOG_MAX_MESSAGE_BYTES),
        },
    )


def topic_specs(
    topics: Topics, partitions: int = DEFAULT_PARTITIONS, replication_factor: int = 1
) -> list[TopicSpec]:
    """The specs of every relsec topic under ``topics.prefix``: inputs first, then outputs,
    then the worker's state changelog."""
    if partitions < 1:
        raise TopicError(f"partitions must be at least 1, got {partitions}")
    if replication_factor < 1:
        raise TopicError(f"replication factor must be at least 1, got {replication_factor}")
    isr = _min_insync(replication_factor)

    def spec(name: str, **config: str) -> TopicSpec:
        conf = {"min.insync.replicas": isr, **config}
        return TopicSpec(name, partitions, replication_factor, conf)

    inputs = [
        spec(
            name,
            **{
                "cleanup.policy": "delete",
                "retention.ms": str(INPUT_RETENTION_MS),
                "message.timestamp.type": "CreateTime",
            },
        )
        for name in topics.inputs
    ]
    return [
        *inputs,
        # Keyed by alert_id: compaction keeps each alert's latest status (firing/retracted).
        spec(topics.alerts, **{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.5"}),
        spec(
            topics.alerts_ocsf,
            **{"cleanup.policy": "delete", "retention.ms": str(ALERTS_OCSF_RETENTION_MS)},
        ),
        spec(topics.dlq, **{"cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS)}),
        changelog_spec(topics, partitions, replication_factor),
    ]


def _admin(settings: Settings) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient(admin_config(settings))


def _reachable(bootstrap: str) -> bool:
    """True when at least one bootstrap address accepts a TCP connection (fails fast)."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        host = host.strip("[]") or "localhost"
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                return True
        except (OSError, ValueError):
            continue
    return False


def _metadata(admin: Any, bootstrap: str) -> Any:
    from confluent_kafka import KafkaException

    if not _reachable(bootstrap):
        raise TopicError(
            f"cannot reach Kafka at {bootstrap}: no bootstrap address accepts connections"
        )
    try:
        return admin.list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap}: {exc.args[0]}") from None


def check_copartitioned(
    partition_counts: dict[str, int], requested: int | None = None
) -> int | None:
    """The common partition count of the existing input topics; TopicError when they differ.

    ``partition_counts`` maps each *existing* input topic to its partition count.
    With ``requested``, existing inputs must also have that many partitions.
    """
    counts = set(partition_counts.values())
    if len(counts) > 1:
        detail = ", ".join(f"{name}: {n}" for name, n in sorted(partition_counts.items()))
        raise TopicError(
            f"input topics are not co-partitioned ({detail}); the join needs equal partition "
            "counts: recreate them, or add partitions so they match"
        )
    if not counts:
        return None
    existing = counts.pop()
    if requested is not None and existing != requested:
        detail = ", ".join(sorted(partition_counts))
        raise TopicError(
            f"existing input topics ({detail}) have {existing} partitions, not {requested}: "
            f"creating the others with {requested} would break co-partitioning "
            f"(use --partitions {existing})"
        )
    return existing


def input_partitions(settings: Settings, settle_s: float = METADATA_SETTLE_S) -> int:
    """The partition count shared by the three input topics; TopicError if missing or unequal.

    A topic just created may be missing from one broker's metadata for a moment (each
    broker learns of it on its own): a missing topic is asked about again for up to
    ``settle_s`` before it counts as missing.
    """
    admin = _admin(settings)
    deadline = time.monotonic() + settle_s
    while True:
        metadata = _metadata(admin, settings.bootstrap_servers)
        counts = {
            name: len(metadata.topics[name].partitions)
            for name in settings.topics.inputs
            if name in metadata.topics and metadata.topics[name].error is None
        }
        common = check_copartitioned(counts)
        missing = [name for name in settings.topics.inputs if name not in counts]
        if not missing and common is not None:
            return common
        if time.monotonic() >= deadline:
            raise TopicError(
                f"input topics missing: {', '.join(missing)} (run `relsec topics create`)"
            )
        time.sleep(0.2)


def ensure_topics(
    settings: Settings, partitions: int = DEFAULT_PARTITIONS, replication_factor: int | None = None
) -> list[TopicState]:
    """Create the missing relsec topics and report every topic's partitions and replicas."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    admin = _admin(settings)
    metadata = _metadata(admin, settings.bootstrap_servers)
    brokers = len(metadata.brokers)
    rf = replication_factor if replication_factor is not None else min(3, max(brokers, 1))
    if rf > brokers:
        raise TopicError(
            f"replication factor {rf} needs at least {rf} brokers; {settings.bootstrap_servers} "
            f"has {brokers}"
        )
    specs = topic_specs(settings.topics, partitions, rf)
    missing_names = [s.name for s in specs if s.name not in metadata.topics]
    if missing_names:
        # A topic created a moment ago can be absent from a broker's metadata still:
        # ask the broker to validate the creation first (it creates nothing) and read
        # again what it says already exists, so a stale view never creates inputs with
        # another partition count than existing ones.
        known = _already_existing(admin, [s for s in specs if s.name in missing_names])
        if known:
            metadata = _wait_for_leaders(admin, settings.bootstrap_servers, known)
    existing_inputs = {
        name: len(metadata.topics[name].partitions)
        for name in settings.topics.inputs
        if name in metadata.topics and metadata.topics[name].error is None
    }
    # Only when an input is still to be created must the existing ones match ``partitions``.
    inputs_missing = len(existing_inputs) < len(settings.topics.inputs)
    check_copartitioned(existing_inputs, partitions if inputs_missing else None)

    missing = [s for s in specs if s.name not in metadata.topics]
    created: set[str] = set()
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    config=dict(s.config),
                )
                for s in missing
            ],
            request_timeout=30,
            operation_timeout=30,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.add(name)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise TopicError(f"cannot create topic {name}: {error.str()}") from None
        metadata = _wait_for_leaders(admin, settings.bootstrap_servers, [s.name for s in specs])
        # A concurrent creator may have used another partition count: check again.
        check_copartitioned({n: len(metadata.topics[n].partitions) for n in settings.topics.inputs})

    states = []
    for s in specs:
        topic = metadata.topics[s.name]
        replicas = len(next(iter(topic.partitions.values())).replicas) if topic.partitions else 0
        states.append(TopicState(s.name, len(topic.partitions), replicas, s.name in created))
    return states


def create_topics(
    settings: Settings, partitions: int = DEFAULT_PARTITIONS, replication_factor: int | None = None
) -> list[str]:
    """Create the missing relsec topics (idempotent); return the names created by this call.

    Raises :class:`TopicError` when existing input topics are not co-partitioned
    (or have another partition count than ``partitions``), when Kafka cannot be
    reached, or when there are fewer brokers than the replication factor.
    """
    states = ensure_topics(settings, partitions, replication_factor)
    return [s.name for s in states if s.created]


def _already_existing(admin: Any, specs: list[TopicSpec]) -> list[str]:
    """The topics of ``specs`` the broker says exist (a validate-only creation)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    futures = admin.create_topics(
        [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor)
            for s in specs
        ],
        validate_only=True,
        request_timeout=30,
    )
    existing = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                existing.append(name)
    return existing


def _wait_for_leaders(admin: Any, bootstrap: str, names: list[str]) -> Any:
    """Wait until every partition of ``names`` has a leader, so producers can write at once.

    Returns the metadata that showed it (brokers learn of new topics one by one).
    """
    deadline = time.monotonic() + METADATA_TIMEOUT_S
    while True:
        metadata = _metadata(admin, bootstrap)
        pending = [
            name
            for name in names
            if name not in metadata.topics
            or metadata.topics[name].error is not None
            or not metadata.topics[name].partitions
            or any(p.leader < 0 for p in metadata.topics[name].partitions.values())
        ]
        if not pending:
            return metadata
        if time.monotonic() >= deadline:
            raise TopicError(f"topics created but without leaders after 15 s: {', '.join(pending)}")
        time.sleep(0.1)


def max_message_bytes(
    settings: Settings, names: list[str], timeout_s: float = METADATA_TIMEOUT_S
) -> dict[str, int]:
    """Each topic's ``max.message.bytes`` as the broker applies it (the topic's own
    setting, else the broker's ``message.max.bytes``): the largest record batch it
    accepts. TopicError when a topic cannot be described."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    admin = _admin(settings)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    limits: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout_s).items():
        try:
            entry = future.result(timeout=timeout_s).get("max.message.bytes")
        except KafkaException as exc:
            raise TopicError(
                f"cannot read the settings of {resource.name}: {exc.args[0]}"
            ) from None
        if entry is None or entry.value is None:
            raise TopicError(f"{resource.name} reports no max.message.bytes")
        limits[resource.name] = int(entry.value)
    return limits
