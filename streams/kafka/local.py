"""A local Apache Kafka (KRaft, combined broker+controller nodes) on 127.0.0.1.

Used by ``relsec kafka up|down|status``, by the test fixtures and by CI. Nothing
here needs Docker: the broker is the real Apache Kafka server run by the JVM.

Where Kafka comes from, first match wins:

1. ``$KAFKA_HOME/libs`` (an unpacked Apache Kafka release);
2. the cache ``$RELSEC_CACHE_DIR/kafka/<version>/libs`` (default cache dir
   ``~/.cache/relsec``), filled on first use by Maven from ``deploy/kafka/pom.xml``
   (artifact ``org.apache.kafka:kafka_2.13``) with a Maven repository in the cache
   (``$RELSEC_MAVEN_REPO`` to use another; ``$RELSEC_MVN`` names the ``mvn``);
3. when ``RELSEC_KAFKA_TARBALL_URL`` is set, the Apache release tarball at that
   address (``https://``, ``file://``), whose ``libs/`` is copied into the cache.

A cluster lives in a state directory (default ``~/.cache/relsec/run/<name>``):
``cluster.json`` (cluster id, ports, jars), and per node ``node-<i>/`` with its
``server.properties``, ``log4j2.xml``, ``data/``, ``logs/server.log`` and
``kafka.pid``. Storage is formatted once with ``kafka.tools.StorageTool`` from
the same jars that run the broker. ``up`` is idempotent: running nodes are left
alone, stopped ones restarted on their data. ``down`` stops exactly the PIDs
recorded in the state directory (after checking each is still our JVM):
SIGTERM, then SIGKILL after a timeout. Nothing is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from base64 import urlsafe_b64encode
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from agents.errors import KafkaProvisionError

DEFAULT_KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
MIN_JAVA_MAJOR = 17
DEFAULT_PORT = 9092
DEFAULT_NAME = "local"
LOOPBACK = "127.0.0.1"
DEFAULT_HEAP_MIN = "256m"
DEFAULT_HEAP_MAX = "768m"
MAVEN_TIMEOUT_S = 1200.0
LOG_TAIL_LINES = 30

_PID_FILE = "kafka.pid"
_STATE_FILE = "cluster.json"
_MARKER_PROPERTY = "relsec.kafka.node"
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')
_KAFKA_JAR = re.compile(r"^kafka_(?P<scala>\d+\.\d+)-(?P<version>\d[\w.\-]*?)\.jar$")

Log = Callable[[str], None]


def _no_log(_message: str) -> None:
    return None


# ---------------------------------------------------------------------------
# Places


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$RELSEC_CACHE_DIR``, else ``~/.cache/relsec``: jars, Maven repository, state dirs."""
    e = os.environ if env is None else env
    configured = e.get("RELSEC_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "relsec"


def default_state_dir(name: str = DEFAULT_NAME, env: Mapping[str, str] | None = None) -> Path:
    """Where ``relsec kafka up`` keeps the cluster called ``name``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise KafkaProvisionError(f"cluster name {name!r}: use letters, digits, '.', '_', '-'")
    return cache_root(env) / "run" / name


def repo_pom_path() -> Path:
    """``deploy/kafka/pom.xml`` of the source tree this module was loaded from."""
    return Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"


# ---------------------------------------------------------------------------
# Java


def find_java(java: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The java executable: ``java`` argument, ``$RELSEC_JAVA``, ``$JAVA_HOME/bin/java``, PATH."""
    e = os.environ if env is None else env
    candidate = java or e.get("RELSEC_JAVA")
    if not candidate and e.get("JAVA_HOME"):
        candidate = str(Path(e["JAVA_HOME"]) / "bin" / "java")
    if not candidate:
        candidate = shutil.which("java", path=e.get("PATH"))
        if candidate is None:
            raise KafkaProvisionError(
                f"no java found on PATH: Apache Kafka needs Java {MIN_JAVA_MAJOR} or newer "
                "(install a JDK/JRE, or set JAVA_HOME or RELSEC_JAVA)"
            )
    path = Path(candidate)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise KafkaProvisionError(
            f"java {candidate!r} does not exist or is not executable: Apache Kafka needs "
            f"Java {MIN_JAVA_MAJOR} or newer (set JAVA_HOME or RELSEC_JAVA)"
        )
    return str(path)


@functools.lru_cache(maxsize=16)
def java_version_text(java: str) -> str:
    """What ``java -version`` prints (only successful answers are remembered)."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaProvisionError(f"cannot run {java} -version: {exc}") from None
    text = done.stderr + done.stdout
    if done.returncode != 0 or _JAVA_VERSION.search(text) is None:
        raise KafkaProvisionError(
            f"{java} -version failed (exit {done.returncode}): {text.strip()[:300]!r}"
        )
    return text


def java_major_version(java: str) -> int:
    """The feature release of ``java`` (8 for ``1.8.0_x``, 17 for ``17.0.15``)."""
    match = _JAVA_VERSION.search(java_version_text(java))
    assert match is not None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def check_java(java: str) -> int:
    """Raise unless ``java`` is at least Java 17; return its major version."""
    major = java_major_version(java)
    if major < MIN_JAVA_MAJOR:
        raise KafkaProvisionError(
            f"{java} is Java {major}; Apache Kafka 4 needs Java {MIN_JAVA_MAJOR} or newer "
            "(set JAVA_HOME or RELSEC_JAVA to a newer JDK)"
        )
    return major


# ---------------------------------------------------------------------------
# Kafka jars


@dataclass(frozen=True, slots=True)
class KafkaDistribution:
    """A directory of Apache Kafka jars and where it came from."""

    version: str
    libs_dir: Path
    source: str  # "KAFKA_HOME", "cache", "maven" or "tarball"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def _kafka_version_in(libs_dir: Path) -> str | None:
    if not libs_dir.is_dir():
        return None
    for jar in sorted(libs_dir.iterdir()):
        match = _KAFKA_JAR.match(jar.name)
        if match and not jar.name.endswith(("-test.jar", "-sources.jar", "-javadoc.jar")):
            return match.group("version")
    return None


def kafka_cache_dir(version: str, env: Mapping[str, str] | None = None) -> Path:
    return cache_root(env) / "kafka" / version


def locate_kafka(
    version: str = DEFAULT_KAFKA_VERSION,
    *,
    env: Mapping[str, str] | None = None,
    mvn: str | None = None,
    log: Log = _no_log,
) -> KafkaDistribution:
    """Find or provision the Apache Kafka jars (see the module docstring for the order)."""
    e = os.environ if env is None else env
    home = e.get("KAFKA_HOME")
    if home:
        libs = Path(home).expanduser() / "libs"
        found = _kafka_version_in(libs)
        if found is None:
            raise KafkaProvisionError(
                f"KAFKA_HOME={home} has no libs/kafka_{SCALA_VERSION}-<version>.jar: point it at "
                "an unpacked Apache Kafka release, or unset it to let relsec fetch the jars"
            )
        return KafkaDistribution(found, libs, "KAFKA_HOME")

    target = kafka_cache_dir(version, e)
    libs = target / "libs"
    if (target / ".complete").is_file() and _kafka_version_in(libs) == version:
        return KafkaDistribution(version, libs, "cache")

    target.mkdir(parents=True, exist_ok=True)
    with _file_lock(target / ".provision.lock"):
        # Another process may have provisioned it while we waited for the lock.
        if (target / ".complete").is_file() and _kafka_version_in(libs) == version:
            return KafkaDistribution(version, libs, "cache")
        tarball_url = e.get("RELSEC_KAFKA_TARBALL_URL")
        mvn_path = mvn or e.get("RELSEC_MVN") or shutil.which("mvn", path=e.get("PATH"))
        errors: list[str] = []
        if mvn_path:
            try:
                _provision_with_maven(mvn_path, version, target, e, log)
                return KafkaDistribution(version, libs, "maven")
            except KafkaProvisionError as exc:
                if not tarball_url:
                    raise
                errors.append(str(exc))
        else:
            errors.append("Maven (mvn) is not on PATH")
        if tarball_url:
            _provision_from_tarball(tarball_url, version, target, log)
            return KafkaDistribution(version, libs, "tarball")
        raise KafkaProvisionError(
            f"no Apache Kafka {version} jars: {'; '.join(errors)}. Set KAFKA_HOME to an unpacked "
            "Kafka release, install Maven (it resolves org.apache.kafka:kafka_2.13 from Maven "
            "Central), or set RELSEC_KAFKA_TARBALL_URL to the Apache release tarball"
        )


def _provision_with_maven(
    mvn: str, version: str, target: Path, env: Mapping[str, str], log: Log
) -> None:
    pom = Path(env.get("RELSEC_KAFKA_POM") or repo_pom_path())
    if not pom.is_file():
        raise KafkaProvisionError(
            f"Maven pom {pom} not found (relsec installed without its source tree?): set "
            "RELSEC_KAFKA_POM to deploy/kafka/pom.xml, or KAFKA_HOME to a Kafka release"
        )
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target))
    repo = Path(env.get("RELSEC_MAVEN_REPO") or cache_root(env) / "m2")
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"-Dmaven.repo.local={repo}",
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    log(f"resolving Apache Kafka {version} (org.apache.kafka:kafka_{SCALA_VERSION}) with Maven ...")
    started = time.monotonic()
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaProvisionError(
            f"Maven could not resolve Apache Kafka {version}: {exc}"
        ) from None
    if done.returncode != 0 or _kafka_version_in(staging) != version:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-LOG_TAIL_LINES:])
        raise KafkaProvisionError(
            f"Maven could not resolve Apache Kafka {version} (exit {done.returncode}):\n{tail}"
        )
    _install_libs(staging, target)
    elapsed_s = time.monotonic() - started
    log(f"Apache Kafka {version} jars ready in {target / 'libs'} ({elapsed_s:.1f} s)")


def _provision_from_tarball(url: str, version: str, target: Path, log: Log) -> None:
    log(f"downloading Apache Kafka from {url} ...")
    archive = target / "kafka.tgz.part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out)
    except (OSError, ValueError) as exc:
        archive.unlink(missing_ok=True)
        raise KafkaProvisionError(f"cannot download the Kafka tarball {url}: {exc}") from None
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target))
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and len(parts) >= 2 and parts[-2] == "libs":
                    name = Path(member.name).name
                    if not name.endswith(".jar") or "/" in name or name.startswith("."):
                        continue
                    source = tar.extractfile(member)
                    if source is None:
                        continue
                    with source, (staging / name).open("wb") as out:
                        shutil.copyfileobj(source, out)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaProvisionError(f"cannot unpack the Kafka tarball {url}: {exc}") from None
    finally:
        archive.unlink(missing_ok=True)
    found = _kafka_version_in(staging)
    if found != version:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaProvisionError(
            f"the tarball {url} holds Kafka {found or 'nothing recognisable'}, not {version}"
        )
    _install_libs(staging, target)


def _install_libs(staging: Path, target: Path) -> None:
    libs = target / "libs"
    if libs.exists():
        shutil.rmtree(libs)
    staging.rename(libs)
    (target / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")


# ---------------------------------------------------------------------------
# Small helpers


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as Uuid.toString)."""
    while True:
        text = urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when something is bound to ``host:port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def pick_free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports that are free on ``host`` right now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _proc_cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            done = subprocess.run(
                ["ps", "-o", "command=", "-p", str(pid)],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() or None
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


def _pid_alive(pid: int) -> bool:
    try:
        reaped, _status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _set_parent_death_signal() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("relsec.kafka.local.librdkafka")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


# ---------------------------------------------------------------------------
# The cluster


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
        data = json.loads(text)
        return ClusterConfig(
            cluster_id=data["cluster_id"],
            version=data["version"],
            libs_dir=data["libs_dir"],
            nodes=tuple(NodeSpec(**n) for n in data["nodes"]),
            host=data.get("host", LOOPBACK),
        )


@dataclass(frozen=True, slots=True)
class NodeStatus:
    index: int
    node_id: int
    broker_port: int
    pid: int | None
    running: bool


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    state_dir: Path
    bootstrap: str | None
    version: str | None
    nodes: tuple[NodeStatus, ...]
    brokers_answering: int

    @property
    def running(self) -> bool:
        return bool(self.nodes) and all(n.running for n in self.nodes)

    @property
    def ready(self) -> bool:
        return self.running and self.brokers_answering == len(self.nodes)


class LocalKafka:
    """A local KRaft cluster of ``brokers`` combined nodes kept in ``state_dir``.

    Ports: broker ``i`` listens on ``port + i`` and its controller on
    ``port + brokers + i`` unless ``broker_ports`` / ``controller_ports`` are
    given. Once a state directory holds a cluster, its recorded layout is used
    and conflicting arguments are refused. ``extra_properties`` are added to
    (or override) every node's ``server.properties`` on each start by this
    object (tests use them for SASL/TLS listeners); they are not recorded.
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        brokers: int | None = None,
        port: int | None = None,
        broker_ports: Sequence[int] | None = None,
        controller_ports: Sequence[int] | None = None,
        version: str = DEFAULT_KAFKA_VERSION,
        java: str | None = None,
        mvn: str | None = None,
        env: Mapping[str, str] | None = None,
        heap_min: str = DEFAULT_HEAP_MIN,
        heap_max: str = DEFAULT_HEAP_MAX,
        die_with_parent: bool = False,
        extra_properties: Mapping[str, str] | None = None,
        log: Log = _no_log,
    ) -> None:
        self.state_dir = Path(state_dir).expanduser().resolve()
        self._brokers = brokers
        self._port = port
        self._broker_ports = list(broker_ports) if broker_ports is not None else None
        self._controller_ports = list(controller_ports) if controller_ports is not None else None
        self._version = version
        self._java_arg = java
        self._mvn = mvn
        self._env: Mapping[str, str] = dict(os.environ if env is None else env)
        self._heap_min = heap_min
        self._heap_max = heap_max
        self._die_with_parent = die_with_parent
        self._extra_properties = dict(extra_properties or {})
        self._log = log
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._java_path: str | None = None
        if brokers is not None and brokers < 1:
            raise KafkaProvisionError(f"--brokers must be at least 1, got {brokers}")

    # -- state ---------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.state_dir / _STATE_FILE

    def config(self) -> ClusterConfig | None:
        """The recorded cluster, or None when this state directory holds none."""
        try:
            return ClusterConfig.from_json(self._state_file.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise KafkaProvisionError(f"{self._state_file} is unreadable: {exc}") from None

    @property
    def bootstrap(self) -> str:
        config = self.config()
        if config is None:
            raise KafkaProvisionError(f"no cluster in {self.state_dir}: run `relsec kafka up`")
        return config.bootstrap

    def node_dir(self, index: int) -> Path:
        return self.state_dir / f"node-{index}"

    def _marker(self, index: int) -> str:
        return f"-D{_MARKER_PROPERTY}={self.node_dir(index)}"

    def pid_of(self, index: int) -> int | None:
        """The recorded PID of node ``index`` if that process is alive and is our JVM."""
        pid_file = self.node_dir(index) / _PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        child = self._children.get(pid)
        if child is not None:
            # Started by this object: trust the handle (right after fork the child's
            # cmdline is still ours, before exec shows the JVM's).
            return pid if child.poll() is None else None
        if not _pid_alive(pid):
            return None
        cmdline = _proc_cmdline(pid)
        if cmdline is None or self._marker(index) not in cmdline:
            return None  # the PID was reused by another process
        return pid

    def _layout(self) -> list[NodeSpec]:
        count = self._brokers or (len(self._broker_ports) if self._broker_ports else 1)
        base = self._port if self._port is not None else DEFAULT_PORT
        broker_ports = self._broker_ports or [base + i for i in range(count)]
        controller_ports = self._controller_ports or [base + count + i for i in range(count)]
        if len(broker_ports) != count or len(controller_ports) != count:
            raise KafkaProvisionError(
                f"{count} brokers need {count} broker ports and {count} controller ports"
            )
        all_ports = broker_ports + controller_ports
        if len(set(all_ports)) != len(all_ports) or not all(0 < p < 65536 for p in all_ports):
            raise KafkaProvisionError(f"ports must be distinct and in 1..65535: {all_ports}")
        return [NodeSpec(i, i + 1, broker_ports[i], controller_ports[i]) for i in range(count)]

    def _check_compatible(self, config: ClusterConfig) -> None:
        wanted_brokers = self._brokers or (len(self._broker_ports) if self._broker_ports else None)
        if wanted_brokers is not None and wanted_brokers != len(config.nodes):
            raise KafkaProvisionError(
                f"{self.state_dir} holds a {len(config.nodes)}-broker cluster, not "
                f"{wanted_brokers}: run `relsec kafka down --purge` first or use another "
                "--state-dir"
            )
        if self._port is not None and config.nodes[0].broker_port != self._port:
            raise KafkaProvisionError(
                f"{self.state_dir} holds a cluster on port {config.nodes[0].broker_port}, not "
                f"{self._port}: run `relsec kafka down --purge` first or use another --state-dir"
            )

    # -- files -----------------------------------------------------------------

    def _server_properties(self, config: ClusterConfig, node: NodeSpec) -> str:
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
            "log.dirs": str(self.node_dir(node.index) / "data"),
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
        lines.update(self._extra_properties)
        body = "".join(f"{key}={value}\n" for key, value in lines.items())
        return "# Written by relsec (streams/kafka/local.py); regenerated on every start.\n" + body

    @staticmethod
    def _log4j2_xml() -> str:
        return """<?xml version="1.0" encoding="UTF-8"?>
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

    @staticmethod
    def _log4j1_properties() -> str:
        # Kafka 3.x logs through log4j 1 (reload4j).
        return (
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

    def _write_node_files(self, config: ClusterConfig, node: NodeSpec) -> Path:
        directory = self.node_dir(node.index)
        (directory / "logs").mkdir(parents=True, exist_ok=True)
        (directory / "data").mkdir(parents=True, exist_ok=True)
        props = directory / "server.properties"
        props.write_text(self._server_properties(config, node))
        (directory / "log4j2.xml").write_text(self._log4j2_xml())
        (directory / "log4j.properties").write_text(self._log4j1_properties())
        return props

    def _jvm_args(self, config: ClusterConfig, node: NodeSpec, *, tool: bool) -> list[str]:
        directory = self.node_dir(node.index)
        logs = directory / "logs"
        common = [
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={directory / 'log4j2.xml'}",
            f"-Dlog4j.configuration=file:{directory / 'log4j.properties'}",
            "-cp",
            str(Path(config.libs_dir) / "*"),
        ]
        if tool:
            return ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", *common]
        return [
            f"-Xms{self._heap_min}",
            f"-Xmx{self._heap_max}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            # C1 only: start-up takes about half the CPU of full tiered compilation and
            # the broker is not the bottleneck of a local cluster (docs/perf-kafka.md).
            "-XX:TieredStopAtLevel=1",
            self._marker(node.index),
            *self._cds_args(config, node),
            *self._env.get("RELSEC_KAFKA_JVM_OPTS", "").split(),
            *common,
        ]

    # -- lifecycle ---------------------------------------------------------------

    def _java(self) -> str:
        java = find_java(self._java_arg, self._env)
        check_java(java)
        self._java_path = java
        return java

    # -- class data sharing ----------------------------------------------------------
    #
    # Half of a broker's start-up is the JVM loading and verifying Kafka's classes.
    # Node 0 of a cluster started without an archive dumps the classes it loaded
    # when it exits cleanly (-XX:ArchiveClassesAtExit); later starts map that
    # archive (-XX:SharedArchiveFile). The archive is keyed by the java build and
    # the jars, and kept in the cache; RELSEC_KAFKA_CDS=0 turns this off.

    def _cds_archive(self, config: ClusterConfig) -> Path | None:
        if self._env.get("RELSEC_KAFKA_CDS", "1") == "0" or self._java_path is None:
            return None
        libs = Path(config.libs_dir)
        jars = sorted(p.name for p in libs.glob("*.jar")) if libs.is_dir() else []
        key_text = "\n".join(
            [
                os.path.realpath(self._java_path),
                java_version_text(self._java_path),
                str(libs),
                *jars,
            ]
        )
        key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
        return cache_root(self._env) / "cds" / f"kafka-{config.version}-{key}.jsa"

    def _cds_part(self, archive: Path, index: int) -> Path:
        owner = hashlib.sha256(str(self.node_dir(index)).encode()).hexdigest()[:12]
        return archive.with_name(f"{archive.name}.{owner}.part")

    def _cds_args(self, config: ClusterConfig, node: NodeSpec) -> list[str]:
        archive = self._cds_archive(config)
        if archive is None:
            return []
        if archive.is_file():
            return [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto"]
        if node.index != 0:
            return []
        archive.parent.mkdir(parents=True, exist_ok=True)
        part = self._cds_part(archive, node.index)
        part.unlink(missing_ok=True)
        return [f"-XX:ArchiveClassesAtExit={part}"]

    def _cds_after_stop(self, index: int, clean: bool) -> None:
        """Keep the archive node ``index`` dumped on a clean exit; drop a killed one's."""
        config = self.config()
        if config is None or index != 0:
            return
        if self._java_path is None:
            with contextlib.suppress(KafkaProvisionError):
                self._java_path = find_java(self._java_arg, self._env)
        archive = self._cds_archive(config)
        if archive is None:
            return
        part = self._cds_part(archive, index)
        if not part.is_file():
            return
        if clean and part.stat().st_size > 0 and not archive.exists():
            os.replace(part, archive)
        else:
            part.unlink(missing_ok=True)

    def _create(self, java: str) -> ClusterConfig:
        dist = locate_kafka(self._version, env=self._env, mvn=self._mvn, log=self._log)
        config = ClusterConfig(
            cluster_id=new_cluster_id(),
            version=dist.version,
            libs_dir=str(dist.libs_dir),
            nodes=tuple(self._layout()),
        )
        self._check_ports(config, config.nodes)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._log(
            f"formatting {len(config.nodes)} KRaft node(s) of Apache Kafka {config.version} "
            f"({dist.source}: {dist.libs_dir})"
        )
        self._format(java, config)
        self._state_file.write_text(config.to_json())
        return config

    def _check_ports(self, config: ClusterConfig, nodes: Sequence[NodeSpec]) -> None:
        for node in nodes:
            for kind, port in (("broker", node.broker_port), ("controller", node.controller_port)):
                if port_in_use(port, config.host):
                    raise KafkaProvisionError(
                        f"port {port} on {config.host} (node {node.node_id} {kind} listener) is "
                        "already in use: stop what holds it or choose another --port"
                    )

    def _format(self, java: str, config: ClusterConfig) -> None:
        running: list[tuple[NodeSpec, subprocess.Popen[bytes], Path]] = []
        for node in config.nodes:
            # Without cluster.json no cluster was completed here: data left by a failed
            # attempt would carry another cluster id.
            shutil.rmtree(self.node_dir(node.index) / "data", ignore_errors=True)
            props = self._write_node_files(config, node)
            out = self.node_dir(node.index) / "logs" / "format.log"
            cmd = [
                java,
                *self._jvm_args(config, node, tool=True),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                config.cluster_id,
                "-c",
                str(props),
            ]
            with out.open("wb") as sink:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
            running.append((node, proc, out))
        failures: list[str] = []
        for node, proc, out in running:
            try:
                code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = -9
            if code != 0:
                failures.append(f"node {node.node_id} (exit {code}):\n{_tail(out)}")
        if failures:
            raise KafkaProvisionError(
                "kafka.tools.StorageTool format failed for " + "\n".join(failures)
            )

    def _start_node(self, java: str, config: ClusterConfig, node: NodeSpec) -> int:
        self._check_ports(config, [node])
        props = self._write_node_files(config, node)
        directory = self.node_dir(node.index)
        if not (directory / "data" / "meta.properties").is_file():
            raise KafkaProvisionError(
                f"{directory / 'data'} is not formatted: run `relsec kafka down --purge`, "
                "then up again"
            )
        cmd = [java, *self._jvm_args(config, node, tool=False), "kafka.Kafka", str(props)]
        stdout_path = directory / "logs" / "stdout.log"
        with stdout_path.open("ab") as sink:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            sink.write(f"=== relsec: starting node {node.node_id} at {stamp} ===\n".encode())
            sink.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=directory,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if self._die_with_parent else None,
            )
        self._children[proc.pid] = proc
        (directory / _PID_FILE).write_text(f"{proc.pid}\n")
        return proc.pid

    def up(self, timeout_s: float = 120.0) -> str:
        """Start every node that is not running and wait until all answer; return the bootstrap."""
        with _file_lock(self.state_dir.parent / f".{self.state_dir.name}.lock"):
            java = self._java()
            config = self.config()
            if config is None:
                config = self._create(java)
            else:
                self._check_compatible(config)
            started: list[int] = []
            try:
                for node in config.nodes:
                    if self.pid_of(node.index) is None:
                        pid = self._start_node(java, config, node)
                        started.append(node.index)
                        self._log(
                            f"started node {node.node_id} (pid {pid}) on "
                            f"{config.host}:{node.broker_port}"
                        )
                self.wait_ready(timeout_s=timeout_s)
            except BaseException:
                # Leave nothing half-started behind: stop the nodes this call started.
                for index in started:
                    self._stop_node(index, kill=True, timeout_s=10.0)
                raise
            return config.bootstrap

    def start_broker(self, index: int, timeout_s: float = 90.0) -> int:
        """(Re)start node ``index`` on its existing data and wait until the cluster sees it."""
        config = self._require_config()
        node = config.nodes[index]
        pid = self.pid_of(index)
        if pid is None:
            pid = self._start_node(self._java(), config, node)
        self.wait_ready(timeout_s=timeout_s)
        return pid

    def stop_broker(self, index: int, kill: bool = True, timeout_s: float = 30.0) -> bool:
        """Stop node ``index``: SIGKILL at once when ``kill``, else SIGTERM then SIGKILL."""
        self._require_config()
        return self._stop_node(index, kill=kill, timeout_s=timeout_s)

    def down(self, timeout_s: float = 30.0, purge: bool = False) -> list[int]:
        """Stop every recorded node (SIGTERM, SIGKILL after ``timeout_s``); return the PIDs stopped.

        With ``purge`` the state directory (data, logs, cluster id) is deleted too.
        """
        config = self.config()
        stopped: list[int] = []
        if config is not None:
            pids = {node.index: self.pid_of(node.index) for node in config.nodes}
            live = {i: p for i, p in pids.items() if p is not None}
            for pid in live.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            for index, pid in live.items():
                clean = self._wait_gone(pid, deadline)
                if not clean:
                    self._log(f"node {index + 1} (pid {pid}) ignored SIGTERM; sending SIGKILL")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    if not self._wait_gone(pid, time.monotonic() + 10):
                        raise KafkaProvisionError(f"pid {pid} survived SIGKILL")
                (self.node_dir(index) / _PID_FILE).unlink(missing_ok=True)
                self._cds_after_stop(index, clean)
                stopped.append(pid)
        if purge and self.state_dir.exists():
            if config is None and any(self.state_dir.iterdir()):
                raise KafkaProvisionError(
                    f"{self.state_dir} holds no relsec cluster.json; not deleting it"
                )
            shutil.rmtree(self.state_dir)
        return stopped

    def _stop_node(self, index: int, *, kill: bool, timeout_s: float) -> bool:
        pid = self.pid_of(index)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        clean = self._wait_gone(pid, time.monotonic() + timeout_s) and not kill
        if self.pid_of(index) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_gone(pid, time.monotonic() + 10):
                raise KafkaProvisionError(f"pid {pid} survived SIGKILL")
        (self.node_dir(index) / _PID_FILE).unlink(missing_ok=True)
        self._cds_after_stop(index, clean)
        return True

    def _wait_gone(self, pid: int, deadline: float) -> bool:
        child = self._children.get(pid)
        while True:
            if child is not None:
                if child.poll() is not None:
                    self._children.pop(pid, None)
                    return True
            elif not _pid_alive(pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _require_config(self) -> ClusterConfig:
        config = self.config()
        if config is None:
            raise KafkaProvisionError(f"no cluster in {self.state_dir}: run `relsec kafka up`")
        return config

    # -- readiness -----------------------------------------------------------------

    def _dead_node_error(self, config: ClusterConfig, node: NodeSpec) -> KafkaProvisionError:
        directory = self.node_dir(node.index)
        server_log = _tail(directory / "logs" / "server.log")
        stdout_log = _tail(directory / "logs" / "stdout.log", 15)
        return KafkaProvisionError(
            f"Kafka node {node.node_id} ({config.host}:{node.broker_port}) exited during start-up."
            f"\n--- last lines of {directory / 'logs' / 'server.log'} ---\n{server_log}"
            f"\n--- last lines of {directory / 'logs' / 'stdout.log'} ---\n{stdout_log}"
        )

    def brokers_answering(self, timeout_s: float = 2.0) -> int:
        """How many brokers a metadata request (confluent AdminClient) lists; 0 if none answers."""
        config = self.config()
        if config is None:
            return 0
        if not any(_accepts_connections(config.host, n.broker_port) for n in config.nodes):
            return 0
        from confluent_kafka.admin import AdminClient

        conf: dict[str, Any] = {
            "bootstrap.servers": config.bootstrap,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 300,
            "socket.connection.setup.timeout.ms": 2000,
            "logger": _quiet_logger(),
            "log_level": 0,
        }
        admin = AdminClient(conf)
        try:
            metadata = admin.list_topics(timeout=timeout_s)
        except Exception:
            return 0
        return len(metadata.brokers)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every node runs and the metadata lists all brokers; raise on a dead node."""
        config = self._require_config()
        deadline = time.monotonic() + timeout_s
        expected = len(config.nodes)
        while True:
            for node in config.nodes:
                if self.pid_of(node.index) is None:
                    raise self._dead_node_error(config, node)
            answering = self.brokers_answering(timeout_s=1.0)
            if answering >= expected:
                return
            if time.monotonic() >= deadline:
                tails = "\n".join(
                    f"--- node {n.node_id}: {self.node_dir(n.index) / 'logs' / 'server.log'} ---\n"
                    + _tail(self.node_dir(n.index) / "logs" / "server.log", 10)
                    for n in config.nodes
                )
                raise KafkaProvisionError(
                    f"Kafka at {config.bootstrap} not ready after {timeout_s:.0f} s "
                    f"({answering}/{expected} brokers answer a metadata request)\n{tails}"
                )
            time.sleep(0.2)

    def status(self) -> ClusterStatus:
        config = self.config()
        if config is None:
            return ClusterStatus(self.state_dir, None, None, (), 0)
        nodes = []
        for node in config.nodes:
            pid = self.pid_of(node.index)
            nodes.append(
                NodeStatus(node.index, node.node_id, node.broker_port, pid, pid is not None)
            )
        answering = self.brokers_answering() if any(n.running for n in nodes) else 0
        return ClusterStatus(
            self.state_dir, config.bootstrap, config.version, tuple(nodes), answering
        )


def _accepts_connections(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def describe(status: ClusterStatus, out: TextIO) -> None:
    """Human-readable ``relsec kafka status`` output."""
    if status.bootstrap is None:
        print(f"no local Kafka in {status.state_dir}", file=out)
        return
    state = "ready" if status.ready else ("running" if status.running else "stopped")
    print(f"Apache Kafka {status.version} in {status.state_dir}: {state}", file=out)
    print(f"bootstrap: {status.bootstrap}", file=out)
    for node in status.nodes:
        what = f"pid {node.pid}" if node.running else "not running"
        print(f"  node {node.node_id}: 127.0.0.1:{node.broker_port}  {what}", file=out)
    print(f"brokers answering a metadata request: {status.brokers_answering}", file=out)


def as_dict(status: ClusterStatus) -> dict[str, Any]:
    return {
        "state_dir": str(status.state_dir),
        "bootstrap": status.bootstrap,
        "version": status.version,
        "ready": status.ready,
        "nodes": [asdict(n) for n in status.nodes],
        "brokers_answering": status.brokers_answering,
    }
