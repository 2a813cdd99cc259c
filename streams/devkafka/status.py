"""What ``relsec kafka status`` reports: each node's PID and how many brokers answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO


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
    """``relsec kafka status --json``."""
    return {
        "state_dir": str(status.state_dir),
        "bootstrap": status.bootstrap,
        "version": status.version,
        "ready": status.ready,
        "nodes": [asdict(n) for n in status.nodes],
        "brokers_answering": status.brokers_answering,
    }
