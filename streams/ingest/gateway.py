"""``relsec ingest serve``: the HTTP gateway from tool webhooks to relsec's input topics.

Routes: ``POST /v1/ingest/{source}`` for each source of :data:`streams.ingest.SOURCES`,
``GET /healthz`` (with a service catalog: what is loaded, whether the last change of
its files was refused, and the service names it did not resolve, by source).
A request is, in order: bounded in size (413), authenticated
(401, see :mod:`streams.ingest.signatures`), decoded and converted (400 with the
reason and JSON path), then published (503 when the broker refuses; the sender
retries and the deterministic ``event_id`` makes a redelivery a duplicate). Only
a fully accepted request publishes anything. Answers are JSON objects.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aiohttp import web

from agents.errors import AdapterError, ConfigError, RelsecError
from agents.model.events import Event, event_to_dict, parse_event
from streams.catalog import CatalogSource
from streams.ingest import ADAPTERS, SOURCES, IngestOptions, decode_payload
from streams.ingest.common import DEFAULT_ENVIRONMENT, DEFAULT_MIN_SEVERITY
from streams.ingest.signatures import Secrets, SignatureError, verify

log = logging.getLogger("relsec.ingest.gateway")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8088
DEFAULT_MAX_BODY_BYTES: Final = 10 * 1024 * 1024


class PublishFailed(RelsecError):
    """The events of a request could not all be written to Kafka."""


class Publisher(Protocol):
    """Where accepted events go: Kafka in production (:class:`ProducerPublisher`)."""

    async def publish(self, events: Sequence[Event]) -> None: ...


class ProducerPublisher:
    """One long-lived idempotent confluent-kafka producer for the gateway's lifetime.

    Events are encoded with the project codec (``make_codec``), keyed by service
    and sent to the input topic of their type, like ``streams.publish.publish_events``
    (which ``relsec ingest publish`` uses). Unlike it, the producer and its
    connections outlive a request: creating one per request cost about half a
    second per webhook. A background thread serves delivery callbacks; a request
    waits for its own records only, at most ``timeout_s`` (librdkafka's
    ``message.timeout.ms`` is set to the same bound, so an unreachable broker
    fails the records instead of keeping them queued).
    """

    def __init__(self, settings: Any, timeout_s: float = 30.0) -> None:
        from confluent_kafka import Producer

        from streams.codecs import make_codec
        from streams.kafka.clients import producer_config

        self.settings = settings
        self.timeout_s = timeout_s
        self._codec = make_codec(settings)
        self._producer = Producer(
            producer_config(settings, **{"message.timeout.ms": int(timeout_s * 1000)})
        )
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="relsec-ingest-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.1)

    async def publish(self, events: Sequence[Event]) -> None:
        from confluent_kafka import KafkaException

        if not events:
            return
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[str | None]] = []
        for event in events:
            done: asyncio.Future[str | None] = loop.create_future()

            def on_delivery(err: Any, _msg: Any, done: asyncio.Future[str | None] = done) -> None:
                loop.call_soon_threadsafe(_settle, done, None if err is None else str(err))

            value = self._codec.encode_event(event_to_dict(event))
            topic = self.settings.topics.input_for_type(event.type)
            while True:
                try:
                    self._producer.produce(
                        topic, key=event.service.encode(), value=value, on_delivery=on_delivery
                    )
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    await asyncio.sleep(0.05)
                except KafkaException as exc:
                    done.set_result(str(exc))
                    break
            waits.append(done)
        try:
            outcomes = await asyncio.wait_for(asyncio.gather(*waits), self.timeout_s + 5)
        except TimeoutError:
            raise PublishFailed(f"no delivery report within {self.timeout_s + 5:.0f} s") from None
        failures = [f"{e.event_id}: {o}" for e, o in zip(events, outcomes, strict=True) if o]
        if failures:
            raise PublishFailed(
                f"{len(failures)} of {len(events)} event(s) not written: {failures[0]}"
            )

    def close(self) -> None:
        """Deliver what is queued (bounded), then stop the poll thread."""
        self._closing.set()
        self._poller.join(timeout=5)
        self._producer.flush(self.timeout_s)


def _settle(done: asyncio.Future[str | None], outcome: str | None) -> None:
    if not done.done():
        done.set_result(outcome)


def _report_failures(report: Any) -> list[str]:
    """Per-record failures of a ``publish_events`` report, whatever it names them."""
    for name in ("failures", "failed", "errors"):
        value = getattr(report, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return [f"{value} failed"] if value else []
        if isinstance(value, list | tuple) and value:
            return [str(v) for v in value]
    return []


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway decides with, besides the publisher."""

    secrets: Secrets
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    min_severity: str = DEFAULT_MIN_SEVERITY
    default_environment: str = DEFAULT_ENVIRONMENT
    mappings: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    catalog: CatalogSource | None = None
    """The service catalog (SPEC §8), re-read when its files change; None: tools' own names."""
    require_catalog: bool = False


def _error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


def make_app(publisher: Publisher, config: GatewayConfig) -> web.Application:
    """The aiohttp application; ``client_max_size`` enforces the body bound."""
    app = web.Application(client_max_size=config.max_body_bytes)
    counts: dict[str, int] = {"accepted": 0, "rejected": 0, "events": 0, "unresolved": 0}
    unresolved_by_source: dict[str, int] = {}
    recent_unresolved: dict[str, None] = {}  # the last 20 distinct names: what to add

    async def healthz(_: web.Request) -> web.Response:
        catalog = None
        if config.catalog is not None:
            catalog = {
                **config.catalog.status(),
                "unresolved_by_source": dict(unresolved_by_source),
                "recent_unresolved": list(recent_unresolved),
            }
        return web.json_response(
            {"status": "ok", "sources": list(SOURCES), **counts, "catalog": catalog}
        )

    async def ingest(request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if source not in ADAPTERS:
            counts["rejected"] += 1
            return _error(404, f"unknown source {source!r}", sources=list(SOURCES))
        length = request.content_length
        if length is not None and length > config.max_body_bytes:
            counts["rejected"] += 1
            return _error(413, f"body of {length} bytes exceeds {config.max_body_bytes}")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            counts["rejected"] += 1
            return _error(413, f"body exceeds {config.max_body_bytes} bytes")
        try:
            how = verify(source, request.headers, body, config.secrets)
        except SignatureError as exc:
            counts["rejected"] += 1
            log.warning("rejected %s delivery from %s: %s", source, request.remote, exc.detail)
            return _error(401, exc.detail)
        options = IngestOptions(
            min_severity=config.min_severity,
            default_environment=config.default_environment,
            mapping=config.mappings.get(source, ()),
            event_name=request.headers.get("X-GitHub-Event") if source == "github" else None,
            received_at_ms=config.clock_ms(),
            catalog=config.catalog.current() if config.catalog is not None else None,
            require_catalog=config.require_catalog and config.catalog is not None,
        )
        try:
            payload = decode_payload(source, body)
            conversion = ADAPTERS[source](payload, options)
            events = [parse_event(e) for e in conversion.events]
        except AdapterError as exc:
            counts["rejected"] += 1
            return _error(400, exc.detail, path=exc.path, source=source)
        except ConfigError as exc:
            counts["rejected"] += 1
            return _error(400, str(exc), source=source)
        try:
            await publisher.publish(events)
        except RelsecError as exc:
            log.error("publishing %d %s event(s) failed: %s", len(events), source, exc)
            return _error(503, f"could not publish: {exc}")
        except Exception as exc:  # the broker client's own errors
            log.exception("publishing %d %s event(s) failed", len(events), source)
            return _error(503, f"could not publish: {type(exc).__name__}")
        counts["accepted"] += 1
        counts["events"] += len(events)
        names = list(dict.fromkeys(u.service for u in conversion.unresolved))
        if names:
            counts["unresolved"] += len(names)
            unresolved_by_source[source] = unresolved_by_source.get(source, 0) + len(names)
            for name in names:
                recent_unresolved.pop(name, None)
                recent_unresolved[name] = None
            while len(recent_unresolved) > 20:
                recent_unresolved.pop(next(iter(recent_unresolved)))
        log.info(
            "%s delivery (%s): %d event(s), %d skipped",
            source,
            how,
            len(events),
            len(conversion.skipped),
        )
        answer: dict[str, Any] = {
            "accepted": len(events),
            "event_ids": [e["event_id"] for e in conversion.events],
            "skipped": list(conversion.skipped),
        }
        if config.catalog is not None:
            answer["unresolved"] = names
        return web.json_response(answer, status=202)

    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/ingest/{source}", ingest)
    return app


async def serve(
    publisher: Publisher,
    config: GatewayConfig,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Run the gateway until cancelled."""
    runner = web.AppRunner(make_app(publisher, config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(host, bound)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
