"""LocalKafka without a JVM: the package's public names, recorded state, refusals, and
stopping recorded nodes (stand-in processes carrying the node marker) by PID."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import streams.devkafka
from streams.devkafka import (
    ClusterConfig,
    LocalKafka,
    NodeSpec,
    as_dict,
    default_state_dir,
    describe,
    pick_free_ports,
)
from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.supervision import PID_FILE

from .fakes import fake_java, start_fake_node

# Every public name of the former streams/kafka/local.py.
FORMER_PUBLIC_NAMES = [
    "DEFAULT_KAFKA_VERSION",
    "SCALA_VERSION",
    "MIN_JAVA_MAJOR",
    "DEFAULT_PORT",
    "DEFAULT_NAME",
    "LOOPBACK",
    "DEFAULT_HEAP_MIN",
    "DEFAULT_HEAP_MAX",
    "MAVEN_TIMEOUT_S",
    "LOG_TAIL_LINES",
    "Log",
    "cache_root",
    "default_state_dir",
    "repo_pom_path",
    "find_java",
    "java_version_text",
    "java_major_version",
    "check_java",
    "KafkaDistribution",
    "kafka_cache_dir",
    "locate_kafka",
    "new_cluster_id",
    "port_in_use",
    "pick_free_ports",
    "NodeSpec",
    "ClusterConfig",
    "NodeStatus",
    "ClusterStatus",
    "LocalKafka",
    "describe",
    "as_dict",
]

NO_CDS = {"RELSEC_KAFKA_CDS": "0", "PATH": os.environ.get("PATH", "")}


def test_the_former_public_names_are_importable_from_the_package() -> None:
    missing = [n for n in FORMER_PUBLIC_NAMES if not hasattr(streams.devkafka, n)]
    assert missing == []
    assert set(FORMER_PUBLIC_NAMES) <= set(streams.devkafka.__all__)


def record(state: Path, nodes: int = 1) -> ClusterConfig:
    """A cluster.json as `up` writes it, for nodes that are started by hand."""
    ports = pick_free_ports(2 * nodes)
    config = ClusterConfig(
        "MkU3OEVBNTcwNTJENDM2Qk",
        "4.4.0",
        str(state / "libs"),
        tuple(NodeSpec(i, i + 1, ports[i], ports[nodes + i]) for i in range(nodes)),
    )
    state.mkdir(parents=True, exist_ok=True)
    (state / "cluster.json").write_text(config.to_json())
    return config


@pytest.fixture
def fake_nodes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_no_cluster_recorded(tmp_path: Path) -> None:
    cluster = LocalKafka(tmp_path / "state", env=NO_CDS)
    assert cluster.config() is None
    with pytest.raises(KafkaProvisionError, match=r"no cluster in .*: run `relsec kafka up`"):
        _ = cluster.bootstrap
    assert cluster.down() == []
    status = cluster.status()
    assert not status.running and not status.ready
    out = io.StringIO()
    describe(status, out)
    assert out.getvalue() == f"no local Kafka in {cluster.state_dir}\n"


def test_unreadable_cluster_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text('{"cluster_id": "x"')
    with pytest.raises(KafkaProvisionError, match=r"cluster.json is unreadable"):
        LocalKafka(tmp_path).config()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(KafkaProvisionError, match="--brokers must be at least 1, got 0"):
        LocalKafka(tmp_path, brokers=0)
    with pytest.raises(KafkaProvisionError, match=r"cluster name '\.\./x'"):
        default_state_dir("../x")


def test_a_recorded_layout_is_kept(tmp_path: Path) -> None:
    java = str(fake_java(tmp_path / "bin"))
    config = record(tmp_path / "state")
    with pytest.raises(KafkaProvisionError, match="holds a 1-broker cluster, not 3"):
        LocalKafka(tmp_path / "state", brokers=3, java=java, env=NO_CDS).up()
    port = config.nodes[0].broker_port
    with pytest.raises(KafkaProvisionError, match=f"on port {port}, not 1"):
        LocalKafka(tmp_path / "state", port=1, java=java, env=NO_CDS).up()


def test_up_on_unformatted_storage_tightens_then_refuses(tmp_path: Path) -> None:
    state = tmp_path / "state"
    record(state)
    (state / "node-0" / "logs").mkdir(parents=True)
    (state / "node-0" / "logs" / "server.log").write_text("old log\n")
    for path in [state, *state.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    messages: list[str] = []
    cluster = LocalKafka(
        state, java=str(fake_java(tmp_path / "bin")), env=NO_CDS, log=messages.append
    )
    with pytest.raises(
        KafkaProvisionError, match=r"node-0/data is not formatted: run `relsec kafka down --purge`"
    ):
        cluster.up()
    assert f"tightened {state} from 0755 to 0700" in messages
    for path in [state, *state.rglob("*")]:
        assert not stat.S_IMODE(path.stat().st_mode) & 0o077, path
    assert cluster.pid_of(0) is None

    # The whole tree is walked once per state dir; then only the directories are checked.
    assert (state / ".private").is_file()
    (state / "node-0" / "logs" / "server.log").chmod(0o644)
    (state / "node-0").chmod(0o755)
    messages.clear()
    with pytest.raises(KafkaProvisionError, match="is not formatted"):
        cluster.up()
    assert messages == [f"tightened {state / 'node-0'} from 0755 to 0700"]
    assert stat.S_IMODE((state / "node-0" / "logs" / "server.log").stat().st_mode) == 0o644
    (state / ".private").unlink()
    with pytest.raises(KafkaProvisionError, match="is not formatted"):
        cluster.up()
    assert stat.S_IMODE((state / "node-0" / "logs" / "server.log").stat().st_mode) == 0o600


def test_explicit_state_dir_leaves_its_parent_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    too_old = str(fake_java(tmp_path / "bin", "11.0.22"))
    env = {**NO_CDS, "RELSEC_CACHE_DIR": str(tmp_path / "cache")}
    with pytest.raises(KafkaProvisionError, match="is Java 11"):
        LocalKafka(shared / "mine", java=too_old, env=env).up()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / ".mine.lock").stat().st_mode) == 0o600
    assert not (shared / "mine").exists()  # nothing created before the checks pass

    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o755)
    with pytest.raises(KafkaProvisionError, match="is Java 11"):
        LocalKafka(default_state_dir("dev", env), java=too_old, env=env).up()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700  # the cache root is relsec's own
    assert stat.S_IMODE((cache / "run").stat().st_mode) == 0o700

    # The cache root itself named as the state dir: its parent stays as it is.
    tmp_path.chmod(0o755)
    with pytest.raises(KafkaProvisionError, match="is Java 11"):
        LocalKafka(cache, java=too_old, env=env).up()
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_down_stops_exactly_the_recorded_nodes(
    tmp_path: Path, fake_nodes: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "state"
    config = record(state, nodes=2)
    for node in config.nodes:
        proc = start_fake_node(state / f"node-{node.index}", ignore_term=node.index == 1)
        fake_nodes.append(proc)
        (state / f"node-{node.index}" / PID_FILE).write_text(f"{proc.pid}\n")
    bystander = start_fake_node(tmp_path / "elsewhere" / "node-0")
    fake_nodes.append(bystander)

    messages: list[str] = []
    cluster = LocalKafka(state, env=NO_CDS, log=messages.append)
    status = cluster.status()
    assert status.running and not status.ready  # the stand-ins answer no metadata request
    assert [n.pid for n in status.nodes] == [p.pid for p in fake_nodes[:2]]
    report = as_dict(status)
    assert json.loads(json.dumps(report))["nodes"][1]["pid"] == fake_nodes[1].pid

    assert cluster.down(timeout_s=1.0) == [fake_nodes[0].pid, fake_nodes[1].pid]
    for proc in fake_nodes[:2]:
        proc.wait(timeout=5)  # gone (down reaped it already)
    assert (state / "node-0" / "touched").read_text() == "up\nSIGTERM\n"
    # It ignored SIGTERM and is gone all the same: SIGKILL.
    assert (state / "node-1" / "touched").read_text() == "up\nSIGTERM ignored\n"
    assert messages == [f"node 2 (pid {fake_nodes[1].pid}) ignored SIGTERM; sending SIGKILL"]
    assert not list(state.glob(f"node-*/{PID_FILE}"))
    assert bystander.poll() is None
    assert cluster.down() == []


def test_stop_broker_kills_one_node(
    tmp_path: Path, fake_nodes: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "state"
    record(state, nodes=2)
    for index in range(2):
        proc = start_fake_node(state / f"node-{index}")
        fake_nodes.append(proc)
        (state / f"node-{index}" / PID_FILE).write_text(f"{proc.pid}\n")
    cluster = LocalKafka(state, env=NO_CDS)
    assert cluster.stop_broker(1, kill=True)
    fake_nodes[1].wait(timeout=5)
    assert (state / "node-1" / "touched").read_text() == "up\n"  # SIGKILL, no SIGTERM first
    assert fake_nodes[0].poll() is None
    assert not cluster.stop_broker(1)  # already stopped
    assert cluster.pid_of(0) == fake_nodes[0].pid


def test_purge_refuses_a_directory_that_is_not_a_cluster(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "precious.txt").write_text("not relsec's\n")
    with pytest.raises(
        KafkaProvisionError, match=r"holds no relsec cluster\.json; not deleting it"
    ):
        LocalKafka(state).down(purge=True)
    assert (state / "precious.txt").exists()
    (state / "precious.txt").unlink()
    LocalKafka(state).down(purge=True)  # an empty directory may go
    assert not state.exists()
    record(state)
    LocalKafka(state, env=NO_CDS).down(purge=True)
    assert not state.exists()
