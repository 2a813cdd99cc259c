"""The local Apache Kafka: provisioning, idempotent up/down by PID, readiness and error paths."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams.devkafka import (
    DEFAULT_KAFKA_VERSION,
    LocalKafka,
    cache_root,
    check_java,
    find_java,
    java_major_version,
    locate_kafka,
    pick_free_ports,
)
from streams.devkafka.errors import KafkaProvisionError

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def decoy() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process whose PID we plant in pid files: it must survive every ``down``."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def fake_executable(directory: Path, name: str, script: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def new_cluster(state_dir: Path, **kwargs: object) -> LocalKafka:
    ports = pick_free_ports(2)
    return LocalKafka(
        state_dir,
        broker_ports=[ports[0]],
        controller_ports=[ports[1]],
        heap_min="128m",
        heap_max="512m",
        **kwargs,  # type: ignore[arg-type]
    )


def test_up_idempotent_down_by_pid_restart_keeps_data(
    tmp_path: Path, decoy: subprocess.Popen[bytes]
) -> None:
    cluster = new_cluster(tmp_path / "state")
    try:
        bootstrap = cluster.up()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", bootstrap)
        pid = cluster.pid_of(0)
        assert pid is not None
        started = time.monotonic()
        assert cluster.up() == bootstrap  # second up: nothing started, same process
        assert time.monotonic() - started < 5
        assert cluster.pid_of(0) == pid
        assert cluster.status().ready

        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("kept", num_partitions=2, replication_factor=1)])[
            "kept"
        ].result(timeout=30)

        # The listeners are on loopback only, as configured and as advertised.
        props = (cluster.node_dir(0) / "server.properties").read_text()
        for key in ("listeners", "advertised.listeners"):
            value = re.search(rf"^{key}=(.*)$", props, re.M)
            assert value is not None
            assert all("//127.0.0.1:" in part for part in value.group(1).split(","))

        assert cluster.down() == [pid]
        assert not Path(f"/proc/{pid}").exists() or _zombie_or_gone(pid)
        assert cluster.down() == []  # idempotent
        assert not cluster.status().running

        # A recorded PID that now belongs to another process is not ours: left alone.
        (cluster.node_dir(0) / "kafka.pid").write_text(f"{decoy.pid}\n")
        assert cluster.pid_of(0) is None
        assert cluster.down() == []
        assert decoy.poll() is None

        # Warm restart on the same data: same address, the topic is still there.
        assert cluster.up() == bootstrap
        assert cluster.pid_of(0) not in (None, pid)
        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
        assert len(topics["kept"].partitions) == 2
    finally:
        cluster.down(purge=True)
    assert not (tmp_path / "state").exists()
    assert decoy.poll() is None


def _zombie_or_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        free = pick_free_ports(1)[0]
        for brokers, controllers in (([busy], [free]), ([free], [busy])):
            cluster = LocalKafka(
                tmp_path / f"s{busy}-{brokers[0]}",
                broker_ports=brokers,
                controller_ports=controllers,
            )
            with pytest.raises(KafkaProvisionError, match=rf"port {busy} .*already in use"):
                cluster.up()
            assert cluster.config() is None
            assert cluster.pid_of(0) is None


def test_java_too_old_is_refused(tmp_path: Path) -> None:
    java11 = fake_executable(
        tmp_path, "java", "echo 'openjdk version \"11.0.22\" 2024-01-16' >&2\n"
    )
    java8 = fake_executable(tmp_path, "java8", "echo 'java version \"1.8.0_402\"' >&2\n")
    assert java_major_version(str(java11)) == 11
    assert java_major_version(str(java8)) == 8
    assert java_major_version(find_java()) >= 17
    with pytest.raises(KafkaProvisionError, match="Java 11; Apache Kafka 4 needs Java 17"):
        check_java(str(java11))
    cluster = new_cluster(tmp_path / "state", java=str(java8))
    with pytest.raises(KafkaProvisionError, match="is Java 8"):
        cluster.up()
    assert cluster.config() is None


def test_java_env_variables_and_missing_java(tmp_path: Path) -> None:
    java11 = fake_executable(tmp_path, "java", "echo 'openjdk version \"11.0.2\"' >&2\n")
    assert find_java(env={"RELSEC_JAVA": str(java11)}) == str(java11)
    assert find_java(env={"JAVA_HOME": str(tmp_path.parent), "RELSEC_JAVA": str(java11)}) == str(
        java11
    )
    (tmp_path / "jdk" / "bin").mkdir(parents=True)
    shutil.copy(java11, tmp_path / "jdk" / "bin" / "java")
    assert find_java(env={"JAVA_HOME": str(tmp_path / "jdk")}) == str(
        tmp_path / "jdk" / "bin" / "java"
    )
    with pytest.raises(KafkaProvisionError, match="no java found on PATH"):
        find_java(env={"PATH": str(tmp_path / "empty")})
    with pytest.raises(KafkaProvisionError, match="does not exist"):
        new_cluster(tmp_path / "state", java=str(tmp_path / "nope" / "java")).up()
    broken = fake_executable(tmp_path, "broken", "echo 'Error: broken JVM' >&2\nexit 1\n")
    with pytest.raises(KafkaProvisionError, match="-version failed"):
        java_major_version(str(broken))


def test_no_jars_anywhere(tmp_path: Path) -> None:
    empty_home = tmp_path / "kafka-home"
    (empty_home / "libs").mkdir(parents=True)
    with pytest.raises(KafkaProvisionError, match=r"KAFKA_HOME=.* has no libs/kafka_2.13"):
        locate_kafka(env={"KAFKA_HOME": str(empty_home)})
    with pytest.raises(KafkaProvisionError, match="has no libs"):
        new_cluster(tmp_path / "state", env={**os.environ, "KAFKA_HOME": str(empty_home)}).up()

    env = {"RELSEC_CACHE_DIR": str(tmp_path / "cache"), "PATH": str(tmp_path / "empty")}
    with pytest.raises(KafkaProvisionError, match=r"Maven \(mvn\) is not on PATH.*KAFKA_HOME"):
        locate_kafka(env=env)

    failing_mvn = fake_executable(
        tmp_path, "mvn", "echo '[ERROR] Could not resolve dependencies for project' >&2\nexit 1\n"
    )
    with pytest.raises(KafkaProvisionError, match=r"(?s)exit 1.*Could not resolve dependencies"):
        locate_kafka(env={**env, "RELSEC_MVN": str(failing_mvn)})
    assert not (tmp_path / "cache" / "kafka" / DEFAULT_KAFKA_VERSION / "libs").exists()


def test_kafka_home_is_used_first(tmp_path: Path) -> None:
    real = locate_kafka()
    home = tmp_path / "kafka_2.13"
    home.mkdir()
    (home / "libs").symlink_to(real.libs_dir)
    dist = locate_kafka("9.9.9", env={"KAFKA_HOME": str(home)})
    assert dist.source == "KAFKA_HOME"
    assert dist.version == real.version
    assert dist.libs_dir == home / "libs"


def test_maven_provisioning_into_an_empty_cache(tmp_path: Path) -> None:
    """The real Maven path: deploy/kafka/pom.xml resolved into a fresh cache directory."""
    if shutil.which("mvn") is None:
        pytest.fail("mvn is not installed: the CI machine must have Maven (see docs/kafka.md)")
    real_repo = cache_root() / "m2"
    env = {
        **os.environ,
        "RELSEC_CACHE_DIR": str(tmp_path / "cache"),
        "RELSEC_MAVEN_REPO": str(real_repo),  # reuse downloaded artifacts; resolution still runs
    }
    env.pop("KAFKA_HOME", None)
    messages: list[str] = []
    dist = locate_kafka(env=env, log=messages.append)
    assert dist.source == "maven"
    assert dist.version == DEFAULT_KAFKA_VERSION
    jars = {p.name for p in dist.libs_dir.iterdir()}
    assert f"kafka_2.13-{DEFAULT_KAFKA_VERSION}.jar" in jars
    assert f"kafka-clients-{DEFAULT_KAFKA_VERSION}.jar" in jars
    assert any(name.startswith("log4j-core-") for name in jars)
    assert any(name.startswith("slf4j-api-2.") for name in jars)  # the slf4j2 binding needs it
    assert any("resolving Apache Kafka" in m for m in messages)
    again = locate_kafka(env=env)
    assert again.source == "cache" and again.libs_dir == dist.libs_dir


def test_tarball_provisioning(tmp_path: Path) -> None:
    real = locate_kafka()
    top = f"kafka_2.13-{real.version}"
    archive = tmp_path / f"{top}.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for jar in sorted(real.libs_dir.iterdir()):
            tar.add(jar, arcname=f"{top}/libs/{jar.name}")
        readme = tmp_path / "NOTICE"
        readme.write_text("notice\n")
        tar.add(readme, arcname=f"{top}/NOTICE")
    env = {
        "RELSEC_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": str(tmp_path / "empty"),  # no mvn: the tarball is the way
        "RELSEC_KAFKA_TARBALL_URL": archive.as_uri(),
    }
    dist = locate_kafka(real.version, env=env)
    assert dist.source == "tarball"
    assert sorted(p.name for p in dist.libs_dir.iterdir()) == sorted(
        p.name for p in real.libs_dir.iterdir()
    )
    with pytest.raises(KafkaProvisionError, match=r"holds Kafka .* not 1.2.3"):
        locate_kafka("1.2.3", env=env)


def test_broker_that_fails_to_start_reports_its_log(tmp_path: Path) -> None:
    cluster = new_cluster(tmp_path / "state")
    try:
        cluster.up()
        cluster.down()
        meta = cluster.node_dir(0) / "data" / "meta.properties"
        meta.write_text(meta.read_text().replace("node.id=1", "node.id=7"))
        with pytest.raises(KafkaProvisionError) as info:
            cluster.up(timeout_s=60)
        message = str(info.value)
        assert "exited during start-up" in message
        assert "Stored node id 7 doesn't match previous node id 1" in message
        assert cluster.pid_of(0) is None
    finally:
        cluster.down(purge=True)


def test_state_dir_layout_is_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cluster = new_cluster(state)
    try:
        cluster.up()
        with pytest.raises(KafkaProvisionError, match="holds a 1-broker cluster, not 3"):
            LocalKafka(state, brokers=3).up()
        port = cluster.config().nodes[0].broker_port  # type: ignore[union-attr]
        with pytest.raises(KafkaProvisionError, match=f"on port {port}, not 1"):
            LocalKafka(state, port=1).up()
        # Another LocalKafka object on the same state dir sees and stops the same node.
        other = LocalKafka(state)
        pid = cluster.pid_of(0)
        assert other.pid_of(0) == pid
        assert other.down() == [pid]
        assert cluster.pid_of(0) is None
    finally:
        cluster.down(purge=True)


def _free_port_pair() -> int:
    for _ in range(50):
        port = pick_free_ports(1)[0]
        if port < 65535 and _is_free(port + 1):
            return port
    raise AssertionError("no two consecutive free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_cli_up_status_down(tmp_path: Path) -> None:
    port = _free_port_pair()
    state = tmp_path / "cli-state"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def relsec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            cwd=REPO,
            check=False,
        )

    try:
        up = relsec("kafka", "up", "--state-dir", str(state), "--port", str(port))
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"127.0.0.1:{port}"
        assert "export RELSEC_BOOTSTRAP_SERVERS=" in up.stderr
        status = relsec("kafka", "status", "--state-dir", str(state), "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        assert '"ready": true' in status.stdout
        assert relsec("kafka", "up", "--state-dir", str(state)).stdout.strip() == up.stdout.strip()
        down = relsec("kafka", "down", "--state-dir", str(state))
        assert down.returncode == 0 and "stopped pid" in down.stderr
        stopped = relsec("kafka", "status", "--state-dir", str(state))
        assert stopped.returncode == 1 and "stopped" in stopped.stdout
        again = relsec("kafka", "down", "--state-dir", str(state), "--purge")
        assert again.returncode == 0 and not state.exists()
        bad = relsec("kafka", "up", "--state-dir", str(state), "--brokers", "0")
        assert bad.returncode == 2 and "relsec: error:" in bad.stderr
    finally:
        if state.exists():
            LocalKafka(state).down(purge=True)


def test_three_nodes_share_cluster_id_and_voters(kafka_cluster3: object) -> None:
    cluster: LocalKafka = kafka_cluster3.cluster  # type: ignore[attr-defined]
    config = cluster.config()
    assert config is not None and len(config.nodes) == 3
    voters, cluster_ids, ports, log_dirs = set(), set(), set(), set()
    for node in config.nodes:
        props = dict(
            line.split("=", 1)
            for line in (cluster.node_dir(node.index) / "server.properties")
            .read_text()
            .splitlines()
            if "=" in line and not line.startswith("#")
        )
        meta = (cluster.node_dir(node.index) / "data" / "meta.properties").read_text()
        cluster_ids.add(re.search(r"^cluster.id=(.*)$", meta, re.M).group(1))  # type: ignore[union-attr]
        voters.add(props["controller.quorum.voters"])
        ports.update({node.broker_port, node.controller_port})
        log_dirs.add(props["log.dirs"])
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["group.initial.rebalance.delay.ms"] == "0"
    assert cluster_ids == {config.cluster_id}
    assert len(voters) == 1 and voters.pop().count("@127.0.0.1:") == 3
    assert len(ports) == 6 and len(log_dirs) == 3


def test_class_data_archive_is_dumped_on_clean_exit_and_then_mapped(tmp_path: Path) -> None:
    real = locate_kafka()
    home = tmp_path / "kafka-home"
    home.mkdir()
    (home / "libs").symlink_to(real.libs_dir)
    cache = tmp_path / "cache"
    env = {**os.environ, "RELSEC_CACHE_DIR": str(cache), "KAFKA_HOME": str(home)}
    cluster = new_cluster(tmp_path / "state", env=env)

    def cmdline() -> str:
        pid = cluster.pid_of(0)
        assert pid is not None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    def cds_files() -> list[str]:
        return sorted(p.name for p in (cache / "cds").glob("*")) if (cache / "cds").exists() else []

    try:
        cluster.up()
        assert "-XX:ArchiveClassesAtExit=" in cmdline()
        cluster.stop_broker(0, kill=True)  # a killed JVM's dump is not trusted
        assert cds_files() == []
        cluster.up()
        assert "-XX:ArchiveClassesAtExit=" in cmdline()
        cluster.down()
        archives = cds_files()
        assert len(archives) == 1 and archives[0].endswith(".jsa"), archives
        cluster.up()
        assert f"-XX:SharedArchiveFile={cache / 'cds' / archives[0]}" in cmdline()
        pid = cluster.pid_of(0)
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert archives[0] in maps  # the JVM really mapped the archive
    finally:
        cluster.down(purge=True)


def _modes_open_to_others(*roots: Path) -> list[str]:
    """Every directory or file under ``roots`` that group or others may use."""
    wide = []
    for root in roots:
        for path in [root, *root.rglob("*")]:
            if path.is_symlink():
                continue
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o077:
                wide.append(f"{mode:04o} {path}")
    return wide


def test_state_and_cache_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """A real broker under umask 000: its data, logs, configuration, PID file and the
    class-data archive are owner-only; a state dir left world-readable is tightened."""
    real = locate_kafka()
    home = tmp_path / "kafka-home"
    home.mkdir()
    (home / "libs").symlink_to(real.libs_dir)
    cache = tmp_path / "cache"
    state = cache / "run" / "perm"
    env = {**os.environ, "RELSEC_CACHE_DIR": str(cache), "KAFKA_HOME": str(home)}
    messages: list[str] = []
    cluster = new_cluster(state, env=env, log=messages.append)
    previous = os.umask(0)
    try:
        cluster.up()
        node = cluster.node_dir(0)
        assert (node / "logs" / "server.log").stat().st_size > 0  # the JVM wrote it
        assert (node / "data" / "meta.properties").is_file()
        assert (node / "kafka.pid").is_file()
        assert _modes_open_to_others(cache) == []
        cluster.down()
        assert len(list((cache / "cds").glob("*.jsa"))) == 1
        assert _modes_open_to_others(cache) == []

        # What an older relsec left behind: everything world-readable, and no marker.
        (state / ".private").unlink()
        for path in [cache, *cache.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        cluster.up()
        assert _modes_open_to_others(state) == []  # the whole state tree
        for directory in (cache, cache / "run", cache / "cds"):  # the cache: its directories
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        assert f"tightened {state} from 0755 to 0700" in messages
        assert f"tightened {cache} from 0755 to 0700" in messages
        assert any(m.startswith("tightened ") and f"under {state}" in m for m in messages)
    finally:
        os.umask(previous)
        cluster.down(purge=True)
