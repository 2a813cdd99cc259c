"""A local Apache Kafka (KRaft, combined broker+controller nodes) on 127.0.0.1.

A development and test tool, not part of the product's Kafka client code
(``streams.kafka``): ``relsec kafka up|down|status``, the test fixtures, the benchmarks
and ``relsec demo`` use it. Nothing here needs Docker: the broker is the real Apache
Kafka server run by the JVM. One module per concern:

* :mod:`~streams.devkafka.places`: the cache root and cluster state directories;
* :mod:`~streams.devkafka.files`: locks and log tails in them;
* :mod:`~streams.devkafka.java`: finding Java and checking it is 17 or newer;
* :mod:`~streams.devkafka.jars`: the Kafka jars from ``KAFKA_HOME``, Maven or a tarball;
* :mod:`~streams.devkafka.node_config`: node layout, ``server.properties``, storage format;
* :mod:`~streams.devkafka.supervision`: starting nodes, PID files, stopping by PID;
* :mod:`~streams.devkafka.network`: loopback ports and the readiness probe;
* :mod:`~streams.devkafka.cds`: class-data archives for a faster broker start;
* :mod:`~streams.devkafka.cluster`: :class:`LocalKafka`, which composes them;
* :mod:`~streams.devkafka.status`: what ``relsec kafka status`` prints.
"""

from __future__ import annotations

from streams.devkafka.cluster import STATE_FILE, LocalKafka
from streams.devkafka.files import LOG_TAIL_LINES
from streams.devkafka.jars import (
    DEFAULT_KAFKA_VERSION,
    MAVEN_TIMEOUT_S,
    SCALA_VERSION,
    KafkaDistribution,
    locate_kafka,
)
from streams.devkafka.java import (
    MIN_JAVA_MAJOR,
    check_java,
    find_java,
    java_major_version,
    java_version_text,
)
from streams.devkafka.network import LOOPBACK, pick_free_ports, port_in_use
from streams.devkafka.node_config import (
    DEFAULT_HEAP_MAX,
    DEFAULT_HEAP_MIN,
    DEFAULT_PORT,
    ClusterConfig,
    NodeSpec,
    new_cluster_id,
)
from streams.devkafka.places import (
    DEFAULT_NAME,
    cache_root,
    default_state_dir,
    kafka_cache_dir,
    repo_pom_path,
)
from streams.devkafka.progress import Log
from streams.devkafka.status import ClusterStatus, NodeStatus, as_dict, describe

__all__ = [
    "DEFAULT_HEAP_MAX",
    "DEFAULT_HEAP_MIN",
    "DEFAULT_KAFKA_VERSION",
    "DEFAULT_NAME",
    "DEFAULT_PORT",
    "LOG_TAIL_LINES",
    "LOOPBACK",
    "MAVEN_TIMEOUT_S",
    "MIN_JAVA_MAJOR",
    "SCALA_VERSION",
    "STATE_FILE",
    "ClusterConfig",
    "ClusterStatus",
    "KafkaDistribution",
    "LocalKafka",
    "Log",
    "NodeSpec",
    "NodeStatus",
    "as_dict",
    "cache_root",
    "check_java",
    "default_state_dir",
    "describe",
    "find_java",
    "java_major_version",
    "java_version_text",
    "kafka_cache_dir",
    "locate_kafka",
    "new_cluster_id",
    "pick_free_ports",
    "port_in_use",
    "repo_pom_path",
]
