"""Helpers for the notify tests: an alert factory and a recording HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agents.model.alerts import Alert, Evidence, Recommendation, alert_id_for
from agents.model.timefmt import parse_rfc3339_ms


def build_alert(**overrides: Any) -> dict[str, Any]:
    """An alert dict as the engine emits it (``Alert.to_dict()``), with fields overridden."""
    rule = overrides.pop("rule", "rollback-to-flagged-release")
    service = overrides.pop("service", "payments-api")
    environment = overrides.pop("environment", "production")
    release = overrides.pop("release", "1.4.0")
    trigger = overrides.pop("trigger", "argocd-7795")
    alert = Alert(
        alert_id=alert_id_for(rule, service, environment, release, trigger),
        rule=rule,
        status=overrides.pop("status", "firing"),
        severity=overrides.pop("severity", "critical"),
        service=service,
        environment=environment,
        release=release,
        trigger=trigger,
        occurred_at_ms=parse_rfc3339_ms("2026-03-04T09:20:00Z"),
        summary=overrides.pop(
            "summary",
            f"{service} {environment} was rolled back to {release} during incident INC-1, "
            "a release security has flagged (CVE-2026-11111, GHSA-jfh8-c2jp-5v3q; critical).",
        ),
        notify=tuple(overrides.pop("notify", ("security", "sre"))),
        evidence=(
            Evidence(trigger, "deploy", parse_rfc3339_ms("2026-03-04T09:20:00Z")),
            Evidence("trivy-5012", "security_flag", parse_rfc3339_ms("2026-03-03T10:00:00Z")),
        ),
        recommendation=overrides.pop(
            "recommendation",
            Recommendation(
                "1.5.0", f"Move {service} {environment} to 1.5.0: it has no active flag."
            ),
        ),
        detected_at_ms=parse_rfc3339_ms("2026-03-04T09:20:01.250Z"),
    )
    out = alert.to_dict()
    out.update(overrides)
    return out


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Recorder:
    """A local HTTP server that records every request and answers from per-path scripts.

    ``script(path, (status, headers, body), ...)`` queues answers for ``path``;
    when a path's queue is empty the answer is ``default_status``.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripts: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        self._lock = threading.Lock()
        self.default_status = 202
        # called with each request after it is recorded and before it is answered
        self.on_request: Callable[[Recorded], None] | None = None
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                recorded = Recorded("POST", self.path, dict(self.headers.items()), body)
                if recorder.on_request is not None:
                    recorder.on_request(recorded)
                with recorder._lock:
                    recorder.requests.append(recorded)
                    queue = recorder._scripts.get(self.path)
                    if queue:
                        status, headers, payload = queue.pop(0)
                    else:
                        status, headers, payload = recorder.default_status, {}, b'{"status":"ok"}'
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def script(self, path: str, *responses: tuple[int, dict[str, str], bytes]) -> None:
        with self._lock:
            self._scripts.setdefault(path, []).extend(responses)

    def on(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
