"""How a node is configured: its layout, ``server.properties``, logging and KRaft storage.

Every node is a combined broker+controller (``process.roles=broker,controller``) with a
static voter list identical on all nodes, and listeners, advertised too, on 127.0.0.1
only. A node directory holds ``server.properties``, ``log4j2.xml`` (Kafka 4) and
``log4j.properties`` (Kafka 3), ``data/`` and ``logs/``; the files are regenerated on
every start. Storage is formatted once with ``kafka.tools.StorageTool`` from the same
jars that then run the broker (from 4.4 a broker refuses storage formatted by a newer
tool).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from base64 import urlsafe_b64encode
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.files import (
    CHILD_UMASK,
    open_private,
    private_dirs,
    tail,
    write_private,
)
from streams.devkafka.network import LOOPBACK
from streams.devkafka.progress import Log, no_log

DEFAULT_PORT = 9092
DEFAULT_HEAP_MIN = "256m"
DEFAULT_HEAP_MAX = "768m"
FORMAT_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One combined broker+controller node: ``index`` from 0, ``node_id`` from 1."""

    index: int
    node_id: int
    broker_port: int
    controller_port: int


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """What ``cluster.json`` records about a local cluster."""

    cluster_id: str
    version: str
    libs_dir: str
    nodes: tuple[NodeSpec, ...]
    host: str = LOOPBACK

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.broker_port}" for n in self.nodes)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @staticmethod
    def from_json(text: str) -> ClusterConfig:
        data: dict[str, Any] = json.loads(text)
        return ClusterConfig(
            cluster_id=data["cluster_id"],
            version=data["version"],
            libs_dir=data["libs_dir"],
            nodes=tuple(NodeSpec(**n) for n in data["nodes"]),
            host=data.get("host", LOOPBACK),
        )


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as Uuid.toString)."""
    while True:
        text = urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def plan_nodes(
    brokers: int | None,
    port: int | None,
    broker_ports: Sequence[int] | None,
    controller_ports: Sequence[int] | None,
) -> list[NodeSpec]:
    """The nodes of a new cluster: node ``i`` on ``port + i``, its controller on
    ``port + brokers + i``, unless the ports are given one by one."""
    count = brokers or (len(broker_ports) if broker_ports else 1)
    base = port if port is not None else DEFAULT_PORT
    brokers_at = list(broker_ports or [base + i for i in range(count)])
    controllers_at = list(controller_ports or [base + count + i for i in range(count)])
    if len(brokers_at) != count or len(controllers_at) != count:
        raise KafkaProvisionError(
            f"{count} brokers need {count} broker ports and {count} controller ports"
        )
    all_ports = brokers_at + controllers_at
    if len(set(all_ports)) != len(all_ports) or not all(0 < p < 65536 for p in all_ports):
        raise KafkaProvisionError(f"ports must be distinct and in 1..65535: {all_ports}")
    return [NodeSpec(i, i + 1, brokers_at[i], controllers_at[i]) for i in range(count)]


def server_properties(
    config: ClusterConfig,
    node: NodeSpec,
    node_dir: Path,
    extra_properties: Mapping[str, str] | None = None,
) -> str:
    """The ``server.properties`` text of ``node``; ``extra_properties`` add or override."""
    n = len(config.nodes)
    rf = min(3, n)
    min_isr = min(2, n)
    voters = ",".join(f"{x.node_id}@{config.host}:{x.controller_port}" for x in config.nodes)
    host = config.host
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{node.broker_port},"
        f"CONTROLLER://{host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{node.broker_port},"
        f"CONTROLLER://{host}:{node.controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(node_dir / "data"),
        "num.partitions": "1",
        "default.replication.factor": str(rf),
        "offsets.topic.replication.factor": str(rf),
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "12",
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        # Notice a dead node within seconds (defaults: 2 s heartbeat, 9 s session).
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "6000",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.check.interval.ms": "60000",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }
    lines.update(extra_properties or {})
    body = "".join(f"{key}={value}\n" for key, value in lines.items())
    return "# Written by relsec (streams/devkafka); regenerated on every start.\n" + body


LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by relsec: the broker logs to logs/server.log (rolled at 50 MB, 3 kept). -->
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="file" fileName="${sys:kafka.logs.dir}/server.log"
                 filePattern="${sys:kafka.logs.dir}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""

# Kafka 3.x logs through log4j 1 (reload4j).
LOG4J1_PROPERTIES = (
    "log4j.rootLogger=INFO, file\n"
    "log4j.appender.file=org.apache.log4j.RollingFileAppender\n"
    "log4j.appender.file.File=${kafka.logs.dir}/server.log\n"
    "log4j.appender.file.MaxFileSize=50MB\n"
    "log4j.appender.file.MaxBackupIndex=3\n"
    "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
    "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
    "log4j.logger.kafka.request.logger=WARN\n"
    "log4j.logger.state.change.logger=WARN\n"
)


def write_node_files(
    config: ClusterConfig,
    node: NodeSpec,
    node_dir: Path,
    extra_properties: Mapping[str, str] | None = None,
    log: Log = no_log,
) -> Path:
    """(Re)write the configuration files of ``node`` in ``node_dir``; return server.properties.

    ``node_dir``, ``logs/`` and ``data/`` are made private (0700) and the files written
    0600: server.properties may hold passwords.
    """
    private_dirs(node_dir / "logs", top=node_dir, log=log)
    private_dirs(node_dir / "data", top=node_dir, log=log)
    props = node_dir / "server.properties"
    write_private(props, server_properties(config, node, node_dir, extra_properties))
    write_private(node_dir / "log4j2.xml", LOG4J2_XML)
    write_private(node_dir / "log4j.properties", LOG4J1_PROPERTIES)
    return props


def _common_jvm_args(node_dir: Path, libs_dir: str) -> list[str]:
    logs = node_dir / "logs"
    return [
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={logs}",
        f"-Dlog4j2.configurationFile={node_dir / 'log4j2.xml'}",
        f"-Dlog4j.configuration=file:{node_dir / 'log4j.properties'}",
        "-cp",
        str(Path(libs_dir) / "*"),
    ]


def tool_jvm_args(node_dir: Path, libs_dir: str) -> list[str]:
    """JVM options of a short-lived Kafka tool (the storage formatter): small and quick."""
    return [
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        *_common_jvm_args(node_dir, libs_dir),
    ]


def broker_jvm_args(
    node_dir: Path,
    libs_dir: str,
    *,
    heap_min: str,
    heap_max: str,
    marker: str,
    cds_args: Sequence[str] = (),
    extra_opts: Sequence[str] = (),
) -> list[str]:
    """JVM options of a broker: heap, G1, C1 only, the PID marker, class-data sharing."""
    return [
        f"-Xms{heap_min}",
        f"-Xmx{heap_max}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:+ExitOnOutOfMemoryError",
        # C1 only: start-up takes about half the CPU of full tiered compilation and
        # the broker is not the bottleneck of a local cluster (docs/perf-kafka.md).
        "-XX:TieredStopAtLevel=1",
        marker,
        *cds_args,
        *extra_opts,
        *_common_jvm_args(node_dir, libs_dir),
    ]


def storage_format_command(
    java: str, config: ClusterConfig, node_dir: Path, properties: Path
) -> list[str]:
    """``kafka.tools.StorageTool format`` of one node with the cluster's id."""
    return [
        java,
        *tool_jvm_args(node_dir, config.libs_dir),
        "kafka.tools.StorageTool",
        "format",
        "-t",
        config.cluster_id,
        "-c",
        str(properties),
    ]


def format_storage(
    java: str,
    config: ClusterConfig,
    node_dirs: Sequence[Path],
    extra_properties: Mapping[str, str] | None = None,
    log: Log = no_log,
) -> None:
    """Format every node's storage, in parallel, from scratch; raise with the tool's output."""
    running: list[tuple[NodeSpec, subprocess.Popen[bytes], Path]] = []
    for node in config.nodes:
        node_dir = node_dirs[node.index]
        # Without cluster.json no cluster was completed here: data left by a failed
        # attempt would carry another cluster id.
        shutil.rmtree(node_dir / "data", ignore_errors=True)
        props = write_node_files(config, node, node_dir, extra_properties, log)
        out = node_dir / "logs" / "format.log"
        cmd = storage_format_command(java, config, node_dir, props)
        with open_private(out) as sink:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, umask=CHILD_UMASK
            )
        running.append((node, proc, out))
    failures: list[str] = []
    for node, proc, out in running:
        try:
            code = proc.wait(timeout=FORMAT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -9
        if code != 0:
            failures.append(f"node {node.node_id} (exit {code}):\n{tail(out)}")
    if failures:
        raise KafkaProvisionError(
            "kafka.tools.StorageTool format failed for " + "\n".join(failures)
        )
