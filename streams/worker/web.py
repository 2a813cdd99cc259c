"""The worker's HTTP endpoint: ``/metrics`` (Prometheus) and ``/healthz``.

A stdlib threading server in a daemon thread, bound to 127.0.0.1 unless told
otherwise, with two bounds a probe endpoint needs: a request must arrive whole
within ``read_timeout_s`` (a client that connects and says nothing, or drips a
byte at a time, is closed), and at most ``max_connections`` are served at once
(a connection beyond that is closed at once rather than given a thread). 300 slow
clients cost 300 threads before these bounds. ``/healthz`` answers what the
worker's loop reports (:mod:`streams.worker.health`): 503 when it has stalled.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.worker.metrics import PipelineMetrics


class _DeadlineSocket(io.RawIOBase):
    """A socket read under one deadline for the whole request: every receive gets only
    the time left (a per-read timeout alone lets a client that sends a byte every few
    seconds hold its connection for ever)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received in time")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _BoundedServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: Any, max_connections: int) -> None:
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed at once, no thread for it
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class WorkerWeb:
    """Serves the metrics and the health of one worker; ``close()`` stops it."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: PipelineMetrics,
        health: Callable[[], dict[str, Any]],
        read_timeout_s: float = 5.0,
        max_connections: int = 16,
    ) -> None:
        web = self

        class Handler(BaseHTTPRequestHandler):
            timeout = read_timeout_s  # also bounds writing the answer to a stuck client

            def setup(self) -> None:
                super().setup()
                deadline = time.monotonic() + read_timeout_s
                self.rfile = io.BufferedReader(_DeadlineSocket(self.connection, deadline))

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    web._reply(self, 200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    report = health()
                    status = 200 if report.get("status") == "ok" else 503
                    web._reply(self, status, orjson.dumps(report), "application/json")
                else:
                    web._reply(self, 404, b"not found\n", "text/plain")

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would flood the worker's log

        self.server = _BoundedServer((host, port), Handler, max_connections)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="relsec-web", daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
