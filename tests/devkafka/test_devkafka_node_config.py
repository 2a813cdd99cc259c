"""Node configuration: layout, server.properties, cluster.json, JVM options, and the
KRaft storage format run through a fake ``java``."""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.node_config import (
    ClusterConfig,
    NodeSpec,
    broker_jvm_args,
    format_storage,
    new_cluster_id,
    plan_nodes,
    server_properties,
    write_node_files,
)

from .fakes import fake_executable


def props_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))


def cluster(nodes: int, libs_dir: str = "/opt/kafka/libs") -> ClusterConfig:
    return ClusterConfig(
        "MkU3OEVBNTcwNTJENDM2Qk", "4.4.0", libs_dir, tuple(plan_nodes(nodes, 19092, None, None))
    )


def test_plan_nodes_default_and_explicit_ports() -> None:
    assert plan_nodes(None, None, None, None) == [NodeSpec(0, 1, 9092, 9093)]
    assert plan_nodes(3, 9092, None, None) == [
        NodeSpec(0, 1, 9092, 9095),
        NodeSpec(1, 2, 9093, 9096),
        NodeSpec(2, 3, 9094, 9097),
    ]
    assert plan_nodes(None, None, [40001, 40002], [40003, 40004]) == [
        NodeSpec(0, 1, 40001, 40003),
        NodeSpec(1, 2, 40002, 40004),
    ]


@pytest.mark.parametrize(
    ("brokers", "port", "broker_ports", "controller_ports", "message"),
    [
        (2, None, [40001], None, "2 brokers need 2 broker ports"),
        (None, None, [40001, 40002], [40003], "2 brokers need 2 broker ports and 2 controller"),
        (None, None, [40001], [40001], "ports must be distinct"),
        (1, 65535, None, None, r"in 1\.\.65535: \[65535, 65536\]"),
        (1, 0, None, None, "in 1..65535"),
    ],
)
def test_plan_nodes_refuses_impossible_layouts(
    brokers: int | None,
    port: int | None,
    broker_ports: list[int] | None,
    controller_ports: list[int] | None,
    message: str,
) -> None:
    with pytest.raises(KafkaProvisionError, match=message):
        plan_nodes(brokers, port, broker_ports, controller_ports)


@pytest.mark.parametrize(("nodes", "rf", "min_isr"), [(1, 1, 1), (2, 2, 2), (3, 3, 2), (5, 3, 2)])
def test_server_properties_replication_follows_the_node_count(
    nodes: int, rf: int, min_isr: int
) -> None:
    config = cluster(nodes)
    texts = [server_properties(config, n, Path(f"/s/node-{n.index}")) for n in config.nodes]
    every = [props_of(t) for t in texts]
    assert {p["controller.quorum.voters"] for p in every} == {
        ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in config.nodes)
    }
    for node, props in zip(config.nodes, every, strict=True):
        assert props["node.id"] == str(node.node_id)
        assert props["process.roles"] == "broker,controller"
        assert props["log.dirs"] == f"/s/node-{node.index}/data"
        for key in ("listeners", "advertised.listeners"):
            assert props[key] == (
                f"PLAINTEXT://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}"
            )
        for key in (
            "default.replication.factor",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "share.coordinator.state.topic.replication.factor",
        ):
            assert props[key] == str(rf), key
        assert props["transaction.state.log.min.isr"] == str(min_isr)
        assert props["share.coordinator.state.topic.min.isr"] == str(min_isr)
    assert texts[0].startswith("# Written by relsec (streams/devkafka)")


def test_extra_properties_add_and_override() -> None:
    config = cluster(1)
    extra = {"listeners": "SASL_PLAINTEXT://127.0.0.1:1", "sasl.enabled.mechanisms": "PLAIN"}
    props = props_of(server_properties(config, config.nodes[0], Path("/s/node-0"), extra))
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:1"
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    assert props["node.id"] == "1"


ports = st.integers(min_value=1, max_value=65535)


@given(
    cluster_id=st.text(min_size=1, max_size=30),
    version=st.from_regex(r"\d\.\d\.\d", fullmatch=True),
    specs=st.lists(st.tuples(ports, ports), min_size=1, max_size=5),
    host=st.sampled_from(["127.0.0.1", "localhost"]),
)
def test_cluster_json_round_trips(
    cluster_id: str, version: str, specs: list[tuple[int, int]], host: str
) -> None:
    nodes = tuple(NodeSpec(i, i + 1, b, c) for i, (b, c) in enumerate(specs))
    config = ClusterConfig(cluster_id, version, "/libs", nodes, host)
    assert ClusterConfig.from_json(config.to_json()) == config
    assert config.bootstrap == ",".join(f"{host}:{b}" for b, _ in specs)


def test_cluster_json_without_host_is_loopback() -> None:
    text = '{"cluster_id": "x", "version": "4.4.0", "libs_dir": "/l", "nodes": []}'
    assert ClusterConfig.from_json(text).host == "127.0.0.1"


def test_new_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")  # Kafka's tools would read it as an option
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_broker_jvm_args_order() -> None:
    args = broker_jvm_args(
        Path("/s/node-0"),
        "/opt/kafka/libs",
        heap_min="128m",
        heap_max="512m",
        marker="-Drelsec.kafka.node=/s/node-0",
        cds_args=["-XX:SharedArchiveFile=/c/a.jsa"],
        extra_opts=["-XX:TieredStopAtLevel=4"],
    )
    assert args[:2] == ["-Xms128m", "-Xmx512m"]
    marker = args.index("-Drelsec.kafka.node=/s/node-0")
    assert args.index("-XX:SharedArchiveFile=/c/a.jsa") > marker
    # RELSEC_KAFKA_JVM_OPTS come after relsec's own options, so they win.
    assert args.index("-XX:TieredStopAtLevel=4") > args.index("-XX:TieredStopAtLevel=1")
    assert args[-2:] == ["-cp", "/opt/kafka/libs/*"]
    assert "-Dkafka.logs.dir=/s/node-0/logs" in args


def test_node_files_are_private_and_regenerated(tmp_path: Path) -> None:
    config = cluster(1)
    node_dir = tmp_path / "node-0"
    previous = os.umask(0)
    try:
        props = write_node_files(config, config.nodes[0], node_dir, {"x.password": "secret"})
    finally:
        os.umask(previous)
    assert props_of(props.read_text())["x.password"] == "secret"
    for name in ("server.properties", "log4j2.xml", "log4j.properties"):
        assert stat.S_IMODE((node_dir / name).stat().st_mode) == 0o600, name
    for directory in (node_dir, node_dir / "logs", node_dir / "data"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    write_node_files(config, config.nodes[0], node_dir)
    assert "x.password" not in props.read_text()  # extra properties are not recorded


def fake_storage_tool(directory: Path, fail_node: int | None = None) -> Path:
    """A ``java`` that acts as ``kafka.tools.StorageTool format``: it writes meta.properties
    into the log.dirs of the -c file (and a file to show its umask), or fails for one node."""
    fail = (
        f'if grep -q "^node.id={fail_node}$" "$props"; then echo "Invalid cluster.id"; exit 3; fi'
        if fail_node
        else ":"
    )
    return fake_executable(
        directory,
        "java",
        f"""
        while [ $# -gt 0 ]; do
          case "$1" in
            kafka.tools.StorageTool) tool=1 ;;
            -t) shift; id="$1" ;;
            -c) shift; props="$1" ;;
          esac
          shift
        done
        [ "$tool" = 1 ] || exit 9
        {fail}
        data=$(sed -n 's/^log.dirs=//p' "$props")
        node=$(sed -n 's/^node.id=//p' "$props")
        printf 'cluster.id=%s\\nnode.id=%s\\n' "$id" "$node" > "$data/meta.properties"
        echo "Formatting $data with metadata.version 4.4-IV0."
        """,
    )


def test_format_storage_formats_every_node_from_scratch(tmp_path: Path) -> None:
    config = cluster(3)
    node_dirs = [tmp_path / f"node-{i}" for i in range(3)]
    (node_dirs[1] / "data").mkdir(parents=True)
    (node_dirs[1] / "data" / "stale-from-a-failed-attempt").touch()
    previous = os.umask(0)
    try:
        format_storage(str(fake_storage_tool(tmp_path / "bin")), config, node_dirs)
    finally:
        os.umask(previous)
    for node, node_dir in zip(config.nodes, node_dirs, strict=True):
        meta = (node_dir / "data" / "meta.properties").read_text()
        assert meta == f"cluster.id={config.cluster_id}\nnode.id={node.node_id}\n"
        assert stat.S_IMODE((node_dir / "data" / "meta.properties").stat().st_mode) == 0o600
        log = node_dir / "logs" / "format.log"
        assert "Formatting" in log.read_text()
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert not (node_dirs[1] / "data" / "stale-from-a-failed-attempt").exists()


def test_format_failure_names_the_node_and_shows_the_tool_output(tmp_path: Path) -> None:
    config = cluster(3)
    node_dirs = [tmp_path / f"node-{i}" for i in range(3)]
    java = fake_storage_tool(tmp_path / "bin", fail_node=2)
    with pytest.raises(
        KafkaProvisionError, match=r"(?s)format failed for node 2 \(exit 3\):\nInvalid cluster.id"
    ) as info:
        format_storage(str(java), config, node_dirs)
    assert "node 1" not in str(info.value) and "node 3" not in str(info.value)
