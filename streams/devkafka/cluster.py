"""The local cluster: :class:`LocalKafka` composes jars, node configuration and processes.

A cluster lives in a state directory (default ``~/.cache/relsec/run/<name>``):
``cluster.json`` (cluster id, ports, jars), and per node ``node-<i>/`` with its
``server.properties``, ``log4j2.xml``, ``data/``, ``logs/server.log`` and ``kafka.pid``.
``up`` is idempotent: running nodes are left alone, stopped ones restarted on their
data. ``down`` stops exactly the PIDs recorded in the state directory (after checking
each is still our JVM): SIGTERM, then SIGKILL after a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from streams.devkafka import cds
from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.files import (
    file_lock,
    make_parents,
    private_dirs,
    tail,
    tighten_tree,
    write_private,
)
from streams.devkafka.jars import DEFAULT_KAFKA_VERSION, locate_kafka
from streams.devkafka.java import check_java, find_java
from streams.devkafka.network import brokers_answering, port_in_use
from streams.devkafka.node_config import (
    DEFAULT_HEAP_MAX,
    DEFAULT_HEAP_MIN,
    ClusterConfig,
    NodeSpec,
    broker_jvm_args,
    format_storage,
    new_cluster_id,
    plan_nodes,
    write_node_files,
)
from streams.devkafka.places import cache_root
from streams.devkafka.progress import Log, no_log
from streams.devkafka.settings import JVM_OPTS
from streams.devkafka.status import ClusterStatus, NodeStatus
from streams.devkafka.supervision import PID_FILE, Supervisor, marker_arg, send_signal
from streams.settings import from_env

STATE_FILE = "cluster.json"
PRIVATE_MARKER = ".private"

_READY_POLL_S = 0.2


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
        log: Log = no_log,
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
        self._processes = Supervisor()
        self._java_path: str | None = None
        if brokers is not None and brokers < 1:
            raise KafkaProvisionError(f"--brokers must be at least 1, got {brokers}")

    # -- state ---------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.state_dir / STATE_FILE

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
        return self._require_config().bootstrap

    def _own_top(self) -> Path:
        """The highest directory that is this cluster's own: the cache root for a state
        directory inside it, else the state directory itself (its parent may be shared)."""
        root = cache_root(self._env).expanduser().resolve()
        return root if root in self.state_dir.parents else self.state_dir

    def _make_private(self) -> None:
        private_dirs(self.state_dir, top=self._own_top(), log=self._log)

    def _tighten_once(self) -> None:
        """Take group and other permissions off the whole state tree, once per state dir.

        Everything written there afterwards is private already (relsec's files 0600, the
        JVMs at umask 077), so later starts skip the walk, which costs about as much as
        the broker's start on a state dir of tens of thousands of files.
        """
        marker = self.state_dir / PRIVATE_MARKER
        if marker.is_file():
            return
        tighten_tree(self.state_dir, self._log)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_private(
            marker,
            f"made owner-only by relsec at {stamp}; delete this file to have "
            "`relsec kafka up` check the whole state directory again\n",
        )

    def node_dir(self, index: int) -> Path:
        return self.state_dir / f"node-{index}"

    def _node_dirs(self, config: ClusterConfig) -> list[Path]:
        return [self.node_dir(node.index) for node in config.nodes]

    def pid_of(self, index: int) -> int | None:
        """The recorded PID of node ``index`` if that process is alive and is our JVM."""
        directory = self.node_dir(index)
        return self._processes.pid_of(directory / PID_FILE, marker_arg(directory))

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

    def _require_config(self) -> ClusterConfig:
        config = self.config()
        if config is None:
            raise KafkaProvisionError(f"no cluster in {self.state_dir}: run `relsec kafka up`")
        return config

    # -- java and class-data archives ----------------------------------------------

    def _java(self) -> str:
        java = find_java(self._java_arg, self._env)
        check_java(java)
        self._java_path = java
        return java

    def _cds_archive(self, config: ClusterConfig) -> Path | None:
        if not cds.cds_enabled(self._env) or self._java_path is None:
            return None
        return cds.archive_path(self._java_path, Path(config.libs_dir), config.version, self._env)

    def _cds_args(self, config: ClusterConfig, node: NodeSpec) -> list[str]:
        archive = self._cds_archive(config)
        if archive is None:
            return []
        return cds.archive_jvm_args(
            archive, node.index, self.node_dir(node.index), cache_top=cache_root(self._env)
        )

    def _cds_after_stop(self, index: int, clean: bool) -> None:
        config = self.config()
        if config is None or index != cds.DUMPING_NODE:
            return
        if self._java_path is None:
            # Stopped by an object that started nothing (`relsec kafka down`).
            with contextlib.suppress(KafkaProvisionError):
                self._java_path = find_java(self._java_arg, self._env)
        archive = self._cds_archive(config)
        if archive is not None:
            cds.settle_after_stop(archive, index, self.node_dir(index), clean)

    # -- creating and starting -------------------------------------------------------

    def _create(self, java: str) -> ClusterConfig:
        dist = locate_kafka(self._version, env=self._env, mvn=self._mvn, log=self._log)
        config = ClusterConfig(
            cluster_id=new_cluster_id(),
            version=dist.version,
            libs_dir=str(dist.libs_dir),
            nodes=tuple(
                plan_nodes(self._brokers, self._port, self._broker_ports, self._controller_ports)
            ),
        )
        self._check_ports(config, config.nodes)
        self._make_private()
        self._log(
            f"formatting {len(config.nodes)} KRaft node(s) of Apache Kafka {config.version} "
            f"({dist.source}: {dist.libs_dir})"
        )
        format_storage(java, config, self._node_dirs(config), self._extra_properties, self._log)
        write_private(self._state_file, config.to_json())
        return config

    def _check_ports(self, config: ClusterConfig, nodes: Sequence[NodeSpec]) -> None:
        for node in nodes:
            for kind, port in (("broker", node.broker_port), ("controller", node.controller_port)):
                if port_in_use(port, config.host):
                    raise KafkaProvisionError(
                        f"port {port} on {config.host} (node {node.node_id} {kind} listener) is "
                        "already in use: stop what holds it or choose another --port"
                    )

    def _start_node(self, java: str, config: ClusterConfig, node: NodeSpec) -> int:
        self._check_ports(config, [node])
        directory = self.node_dir(node.index)
        props = write_node_files(config, node, directory, self._extra_properties, self._log)
        if not (directory / "data" / "meta.properties").is_file():
            raise KafkaProvisionError(
                f"{directory / 'data'} is not formatted: run `relsec kafka down --purge`, "
                "then up again"
            )
        jvm_args = broker_jvm_args(
            directory,
            config.libs_dir,
            heap_min=self._heap_min,
            heap_max=self._heap_max,
            marker=marker_arg(directory),
            cds_args=self._cds_args(config, node),
            extra_opts=(from_env(JVM_OPTS, self._env) or "").split(),
        )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return self._processes.start(
            [java, *jvm_args, "kafka.Kafka", str(props)],
            cwd=directory,
            stdout_path=directory / "logs" / "stdout.log",
            pid_file=directory / PID_FILE,
            banner=f"=== relsec: starting node {node.node_id} at {stamp} ===",
            die_with_parent=self._die_with_parent,
        )

    def up(self, timeout_s: float = 120.0) -> str:
        """Start every node that is not running and wait until all answer; return the bootstrap.

        Directories are created private (0700), files 0600; an existing state directory
        with a wider mode is tightened first (see :mod:`streams.devkafka.files`).
        """
        top = self._own_top()
        if top == self.state_dir:
            make_parents(self.state_dir)
        else:
            private_dirs(self.state_dir.parent, top=top, log=self._log)
        with file_lock(self.state_dir.parent / f".{self.state_dir.name}.lock"):
            java = self._java()
            config = self.config()
            if config is None:
                config = self._create(java)
            else:
                self._check_compatible(config)
                self._make_private()
            self._tighten_once()
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

    # -- stopping --------------------------------------------------------------------

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
                send_signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            for index, pid in live.items():
                clean = self._processes.wait_gone(pid, deadline)
                if not clean:
                    self._log(f"node {index + 1} (pid {pid}) ignored SIGTERM; sending SIGKILL")
                    self._processes.kill(pid)
                (self.node_dir(index) / PID_FILE).unlink(missing_ok=True)
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
        send_signal(pid, signal.SIGKILL if kill else signal.SIGTERM)
        clean = self._processes.wait_gone(pid, time.monotonic() + timeout_s) and not kill
        if self.pid_of(index) is not None:
            self._processes.kill(pid)
        (self.node_dir(index) / PID_FILE).unlink(missing_ok=True)
        self._cds_after_stop(index, clean)
        return True

    # -- readiness -----------------------------------------------------------------

    def _dead_node_error(self, config: ClusterConfig, node: NodeSpec) -> KafkaProvisionError:
        logs = self.node_dir(node.index) / "logs"
        return KafkaProvisionError(
            f"Kafka node {node.node_id} ({config.host}:{node.broker_port}) exited during start-up."
            f"\n--- last lines of {logs / 'server.log'} ---\n{tail(logs / 'server.log')}"
            f"\n--- last lines of {logs / 'stdout.log'} ---\n{tail(logs / 'stdout.log', 15)}"
        )

    def brokers_answering(self, timeout_s: float = 2.0) -> int:
        """How many brokers a metadata request (confluent AdminClient) lists; 0 if none answers."""
        config = self.config()
        if config is None:
            return 0
        return brokers_answering(
            config.bootstrap, config.host, [n.broker_port for n in config.nodes], timeout_s
        )

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
                    + tail(self.node_dir(n.index) / "logs" / "server.log", 10)
                    for n in config.nodes
                )
                raise KafkaProvisionError(
                    f"Kafka at {config.bootstrap} not ready after {timeout_s:.0f} s "
                    f"({answering}/{expected} brokers answer a metadata request)\n{tails}"
                )
            time.sleep(_READY_POLL_S)

    def status(self) -> ClusterStatus:
        """Each node's PID and liveness, and how many brokers answer a metadata request."""
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
