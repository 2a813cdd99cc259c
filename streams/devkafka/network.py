"""The local Kafka's network side: loopback ports and the readiness probe.

Everything listens on 127.0.0.1. A node counts as ready when a metadata request
(confluent-kafka's AdminClient) lists it among the brokers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any

LOOPBACK = "127.0.0.1"


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


def accepts_connections(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def brokers_answering(
    bootstrap: str, host: str, broker_ports: Sequence[int], timeout_s: float = 2.0
) -> int:
    """How many brokers a metadata request to ``bootstrap`` lists; 0 if none answers.

    The cheap TCP check first keeps a stopped cluster from costing a client's timeout.
    """
    if not any(accepts_connections(host, port) for port in broker_ports):
        return 0
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
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


def _quiet_logger() -> logging.Logger:
    # librdkafka reports every refused connection of a starting broker; nobody needs them.
    logger = logging.getLogger("relsec.devkafka.librdkafka")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger
