"""The confluent-kafka worker's HTTP endpoint: ``/metrics`` (Prometheus) and ``/healthz``.

A stdlib threading server in a daemon thread, bound to 127.0.0.1 unless told
otherwise. ``/healthz`` answers 503 when the consume loop has not turned for
``stall_after_ms`` (a worker stuck in a blocking call is not healthy), so a
liveness probe restarts it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.pipeline.metrics import PipelineMetrics


class WorkerWeb:
    """Serves the metrics and the health of one worker; ``close()`` stops it."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: PipelineMetrics,
        health: Callable[[], dict[str, Any]],
    ) -> None:
        web = self

        class Handler(BaseHTTPRequestHandler):
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

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
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
