"""A stand-in Schema Registry on 127.0.0.1 that speaks the REST subset relsec's codec uses.

There is no Confluent Schema Registry here (it is a JVM service not available
from the package registries this machine reaches), so the Confluent codec is
tested against this server through confluent-kafka's real ``SchemaRegistryClient``
over HTTP. It implements, per the registry's documented REST API:

* ``POST /subjects/{subject}/versions`` — register (same schema -> same id;
  BACKWARD compatibility against the subject's latest version, checked with the
  ``avro`` package's checker, 409 when incompatible);
* ``GET /schemas/ids/{id}`` — fetch by id (404 with error_code 40403 when absent);
* ``GET /subjects/{subject}/versions/latest``.

It does not implement references, modes, contexts, config endpoints, auth or
normalisation. Every request is logged in :attr:`RegistryStub.requests`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryStub:
    """State of the stand-in registry and the HTTP server serving it."""

    def __init__(self, first_id: int = 1) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self._next_id = first_id
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RegistryStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add_schema(self, schema: str | dict[str, Any], subject: str | None = None) -> int:
        """Put a schema in directly (as another producer would have registered it)."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        with self._lock:
            return self._store(text, subject)

    def _store(self, text: str, subject: str | None) -> int:
        parsed = json.loads(text)
        schema_id = next((i for i, s in self.schemas.items() if json.loads(s) == parsed), None)
        if schema_id is None:
            schema_id = self._next_id
            self._next_id += 1
            self.schemas[schema_id] = text
        if subject is not None and schema_id not in self.subjects.setdefault(subject, []):
            self.subjects[subject].append(schema_id)
        return schema_id

    def _register(self, subject: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = body.get("schema")
        if not isinstance(text, str) or body.get("schemaType", "AVRO") != "AVRO":
            return 422, {"error_code": 42201, "message": "Invalid schema"}
        try:
            new = avro_parse(text)
        except Exception as exc:
            return 422, {"error_code": 42201, "message": f"Invalid schema: {exc}"}
        with self._lock:
            versions = self.subjects.get(subject, [])
            if versions:
                latest = avro_parse(self.schemas[versions[-1]])
                result = ReaderWriterCompatibilityChecker().get_compatibility(new, latest)
                if result.compatibility is not SchemaCompatibilityType.compatible:
                    return 409, {
                        "error_code": 409,
                        "message": "Schema being registered is incompatible with an earlier "
                        f"schema for subject {subject!r}: {sorted(result.messages)}",
                    }
            return 200, {"id": self._store(text, subject)}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path.strip("/").split("/")
                stub.requests.append(("GET", self.path))
                if len(path) == 3 and path[:2] == ["schemas", "ids"] and path[2].isdigit():
                    text = stub.schemas.get(int(path[2]))
                    if text is None:
                        self._reply(404, {"error_code": 40403, "message": "Schema not found"})
                    else:
                        self._reply(200, {"schema": text})
                    return
                if len(path) == 4 and path[0] == "subjects" and path[2:] == ["versions", "latest"]:
                    subject = unquote(path[1])
                    ids = stub.subjects.get(subject)
                    if not ids:
                        self._reply(404, {"error_code": 40401, "message": "Subject not found"})
                    else:
                        self._reply(
                            200,
                            {
                                "subject": subject,
                                "id": ids[-1],
                                "version": len(ids),
                                "schema": stub.schemas[ids[-1]],
                            },
                        )
                    return
                self._reply(404, {"error_code": 404, "message": f"no route {self.path}"})

            def do_POST(self) -> None:
                path = urlsplit(self.path).path.strip("/").split("/")
                stub.requests.append(("POST", self.path))
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._reply(422, {"error_code": 422, "message": "body is not JSON"})
                    return
                if len(path) == 3 and path[0] == "subjects" and path[2] == "versions":
                    self._reply(*stub._register(unquote(path[1]), body))
                    return
                self._reply(404, {"error_code": 404, "message": f"no route {self.path}"})

        return Handler
