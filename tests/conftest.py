"""Session fixtures for tests that need a real Apache Kafka.

``kafka_bootstrap`` is, in order of preference:

* ``RELSEC_TEST_BOOTSTRAP`` — an external cluster (security from ``RELSEC_KAFKA_*``);
* ``RELSEC_TEST_KAFKA=docker`` — testcontainers' Kafka module (needs a Docker engine;
  image from ``RELSEC_TEST_KAFKA_IMAGE``);
* otherwise a local Apache Kafka JVM started by the project's own code
  (:class:`streams.devkafka.LocalKafka`) on free 127.0.0.1 ports in a temporary
  state directory. It is stopped by PID at the end of the session, from an
  ``atexit`` hook as well, and gets SIGTERM if the test process dies.

Brokers start lazily: a test run that needs no Kafka starts none.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.devkafka import LocalKafka, pick_free_ports
from streams.settings import KafkaSecurity, Settings, Topics

_started: list[LocalKafka] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kafka: needs a real Kafka broker (started by the session fixture)"
    )


def _stop_all() -> None:
    while _started:
        cluster = _started.pop()
        try:
            cluster.down(timeout_s=20.0)
        except Exception as exc:  # atexit: report, keep stopping the others
            print(f"conftest: could not stop Kafka in {cluster.state_dir}: {exc}")


atexit.register(_stop_all)


def start_local_kafka(state_dir: Path, brokers: int, heap_max: str = "768m") -> LocalKafka:
    """A fresh local cluster of ``brokers`` nodes on free loopback ports, already up."""
    ports = pick_free_ports(2 * brokers)
    cluster = LocalKafka(
        state_dir,
        broker_ports=ports[:brokers],
        controller_ports=ports[brokers:],
        heap_min="128m",
        heap_max=heap_max,
        die_with_parent=True,
        log=lambda message: print(f"[kafka] {message}"),
    )
    _started.append(cluster)
    cluster.up(timeout_s=180.0)
    return cluster


def _stop(cluster: LocalKafka) -> None:
    if cluster in _started:
        _started.remove(cluster)
    cluster.down(timeout_s=20.0)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A bootstrap address of a running Kafka for the whole session."""
    external = os.environ.get("RELSEC_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    if os.environ.get("RELSEC_TEST_KAFKA") == "docker":
        from testcontainers.community.kafka import KafkaContainer

        image = os.environ.get("RELSEC_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.9.0")
        with KafkaContainer(image).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    cluster = start_local_kafka(tmp_path_factory.mktemp("kafka1"), brokers=1)
    yield cluster.bootstrap
    _stop(cluster)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Settings:
    """Settings for ``kafka_bootstrap``, topic prefix unique to this test (topics NOT created)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:40]
    prefix = f"t-{slug}-{uuid.uuid4().hex[:8]}."
    external = bool(os.environ.get("RELSEC_TEST_BOOTSTRAP"))
    return Settings(
        bootstrap_servers=kafka_bootstrap,
        topics=Topics(prefix),
        security=KafkaSecurity.from_env() if external else KafkaSecurity(),
    )


class Cluster3:
    """A three-node local cluster; nodes are numbered 0, 1, 2."""

    def __init__(self, cluster: LocalKafka) -> None:
        self.cluster = cluster
        self.bootstrap = cluster.bootstrap
        self.brokers = 3

    def stop_broker(self, index: int, kill: bool = True) -> None:
        """Stop node ``index``: SIGKILL when ``kill`` (a crash), else a clean SIGTERM."""
        if not self.cluster.stop_broker(index, kill=kill):
            raise AssertionError(f"node {index} was not running")

    def start_broker(self, index: int) -> None:
        """Restart node ``index`` on its data and wait until all three brokers answer."""
        self.cluster.start_broker(index, timeout_s=120.0)

    def node_id(self, index: int) -> int:
        return index + 1

    def running(self) -> list[bool]:
        return [self.cluster.pid_of(i) is not None for i in range(self.brokers)]


@pytest.fixture(scope="session")
def kafka_cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster3]:
    """A local three-broker Apache Kafka (RF 3 possible) for the whole session."""
    cluster = start_local_kafka(tmp_path_factory.mktemp("kafka3"), brokers=3, heap_max="512m")
    yield Cluster3(cluster)
    _stop(cluster)


@pytest.fixture
def kafka_private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A one-node local Kafka for one test, which may freeze or stop it."""
    cluster = start_local_kafka(tmp_path_factory.mktemp("kafka-private"), brokers=1)
    yield cluster
    pid = cluster.pid_of(0)
    if pid is not None:
        os.kill(pid, signal.SIGCONT)  # a frozen node must wake up to stop
    _stop(cluster)
