"""relsec topics: specs, idempotent creation, co-partition refusal, 3-way replication."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka_helpers import make_topic

from agents.errors import TopicError
from streams.cli import main as relsec_main
from streams.kafka.clients import admin_config
from streams.kafka.topics import (
    CHANGELOG_MAX_MESSAGE_BYTES,
    DLQ_RETENTION_MS,
    INPUT_RETENTION_MS,
    check_copartitioned,
    create_topics,
    ensure_topics,
    input_partitions,
    max_message_bytes,
    topic_specs,
)
from streams.settings import Settings, Topics


def test_topic_specs() -> None:
    topics = Topics("p.")
    specs = {s.name: s for s in topic_specs(topics, partitions=4, replication_factor=3)}
    assert list(specs) == [
        "p.deploys",
        "p.incidents",
        "p.security-flags",
        "p.alerts",
        "p.alerts.ocsf",
        "p.dlq",
        "p-worker-service-state-changelog",
    ]
    assert all(s.partitions == 4 and s.replication_factor == 3 for s in specs.values())
    assert all(s.config["min.insync.replicas"] == "2" for s in specs.values())
    for name in topics.inputs:
        assert specs[name].config["retention.ms"] == str(INPUT_RETENTION_MS)
        assert specs[name].config["cleanup.policy"] == "delete"
    assert specs["p.alerts"].config["cleanup.policy"] == "compact"
    assert specs["p.dlq"].config["retention.ms"] == str(DLQ_RETENTION_MS)
    assert DLQ_RETENTION_MS > INPUT_RETENTION_MS
    # The worker's state: one record per service (and its parts), so compacted, with the
    # record limit the worker splits states to written out.
    changelog = specs[topics.state_changelog].config
    assert changelog["cleanup.policy"] == "compact"
    assert changelog["max.message.bytes"] == str(CHANGELOG_MAX_MESSAGE_BYTES)
    single = topic_specs(topics, partitions=1, replication_factor=1)
    assert all(s.config["min.insync.replicas"] == "1" for s in single)
    with pytest.raises(TopicError):
        topic_specs(topics, partitions=0)


def test_check_copartitioned_pure() -> None:
    assert check_copartitioned({}) is None
    assert check_copartitioned({"a": 3, "b": 3}) == 3
    with pytest.raises(TopicError, match="not co-partitioned"):
        check_copartitioned({"a": 3, "b": 4})
    with pytest.raises(TopicError, match="have 3 partitions, not 6"):
        check_copartitioned({"a": 3}, requested=6)


def _configs(settings: Settings, name: str) -> dict[str, str]:
    admin = AdminClient(admin_config(settings))
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {key: entry.value for key, entry in entries.items()}


@pytest.mark.kafka
def test_create_topics_is_idempotent_and_applies_configs(kafka_settings: Settings) -> None:
    names = kafka_settings.topics
    created = create_topics(kafka_settings)
    assert sorted(created) == sorted(
        [*names.inputs, names.alerts, names.alerts_ocsf, names.dlq, names.state_changelog]
    )
    assert create_topics(kafka_settings) == []
    states = ensure_topics(kafka_settings)
    assert all(s.partitions == 6 and s.replication_factor == 1 for s in states)
    assert not any(s.created for s in states)
    assert input_partitions(kafka_settings) == 6
    assert _configs(kafka_settings, names.alerts)["cleanup.policy"] == "compact"
    deploys = _configs(kafka_settings, names.deploys)
    assert deploys["retention.ms"] == str(INPUT_RETENTION_MS)
    assert deploys["cleanup.policy"] == "delete"
    assert deploys["min.insync.replicas"] == "1"
    assert _configs(kafka_settings, names.dlq)["retention.ms"] == str(DLQ_RETENTION_MS)
    # The record limits the worker reads at start (and splits its states to).
    limits = max_message_bytes(kafka_settings, [names.state_changelog, names.alerts])
    assert limits[names.state_changelog] == CHANGELOG_MAX_MESSAGE_BYTES
    assert limits[names.alerts] > 0
    with pytest.raises(TopicError, match="cannot read the settings of"):
        max_message_bytes(kafka_settings, [names.prefix + "no-such-topic"])
    # Existing, co-partitioned inputs are fine whatever --partitions says now.
    assert create_topics(kafka_settings, partitions=3) == []


@pytest.mark.kafka
def test_inputs_not_copartitioned_are_refused(kafka_settings: Settings) -> None:
    names = kafka_settings.topics
    make_topic(kafka_settings, names.deploys.removeprefix(names.prefix), 4)
    with pytest.raises(TopicError, match="have 4 partitions, not 6"):
        create_topics(kafka_settings)
    admin = AdminClient(admin_config(kafka_settings))
    assert names.incidents not in admin.list_topics(timeout=10).topics  # nothing was created
    make_topic(kafka_settings, names.incidents.removeprefix(names.prefix), 5)
    with pytest.raises(TopicError, match="not co-partitioned"):
        create_topics(kafka_settings, partitions=4)
    with pytest.raises(TopicError, match="not co-partitioned"):
        input_partitions(kafka_settings)


@pytest.mark.kafka
def test_missing_inputs_take_the_requested_count(kafka_settings: Settings) -> None:
    names = kafka_settings.topics
    make_topic(kafka_settings, names.deploys.removeprefix(names.prefix), 4)
    created = create_topics(kafka_settings, partitions=4)
    assert names.incidents in created and names.deploys not in created
    assert input_partitions(kafka_settings) == 4


@pytest.mark.kafka
def test_errors_for_missing_inputs_and_too_few_brokers(kafka_settings: Settings) -> None:
    with pytest.raises(TopicError, match="input topics missing"):
        input_partitions(kafka_settings)
    with pytest.raises(TopicError, match="replication factor 3 needs at least 3 brokers"):
        create_topics(kafka_settings, replication_factor=3)
    unreachable = Settings(bootstrap_servers="127.0.0.1:1", topics=kafka_settings.topics)
    with pytest.raises(TopicError, match="cannot reach Kafka"):
        create_topics(unreachable)


@pytest.mark.kafka
def test_cli_topics_create(kafka_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "topics",
        "create",
        "--bootstrap-servers",
        kafka_settings.bootstrap_servers,
        "--topic-prefix",
        kafka_settings.topics.prefix,
        "--partitions",
        "2",
    ]
    assert relsec_main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 7 and all(line.startswith("created ") for line in first)
    assert "partitions=2 replication=1" in first[0]
    assert relsec_main(args) == 0
    assert all(line.startswith("exists ") for line in capsys.readouterr().out.splitlines())
    admin = AdminClient(admin_config(kafka_settings))
    bad = kafka_settings.topics.prefix + "x."
    admin.create_topics([NewTopic(f"{bad}deploys", 3, 1)])[f"{bad}deploys"].result(timeout=30)
    assert relsec_main([*args[:5], bad]) == 2
    assert "co-partitioning" in capsys.readouterr().err


@pytest.mark.kafka
def test_three_brokers_replicate_three_ways_min_insync_two(kafka_cluster3: object) -> None:
    settings = Settings(
        bootstrap_servers=kafka_cluster3.bootstrap,  # type: ignore[attr-defined]
        topics=Topics("rf3-topics."),
    )
    create_topics(settings, partitions=3)
    states = ensure_topics(settings)
    assert all(s.replication_factor == 3 and s.partitions == 3 for s in states)
    for name in (settings.topics.deploys, settings.topics.alerts, settings.topics.dlq):
        assert _configs(settings, name)["min.insync.replicas"] == "2"
