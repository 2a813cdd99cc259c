"""``relsec ingest serve``: the HTTP gateway from tool webhooks to relsec's input topics.

Routes: ``POST /v1/ingest/{source}`` for each source of :data:`streams.ingest.SOURCES`,
``GET /healthz`` (with a service catalog: what is loaded, whether the last change of
its files was refused, and the service names it did not resolve, by source).
A request is, in order:

1. admitted from its head alone: a known source (404), no content coding (415),
   the headers authenticate it (401, :func:`streams.ingest.signatures.check_headers`:
   a token completely, a signature header present and well formed), a declared
   length within the source's bound (413), a CloudEvents format relsec reads (415).
   A client that sent ``Expect: 100-continue`` hears this answer before it sends
   its body; any other client's unread body is drained briefly and dropped;
2. given room to buffer its body (503 when the gateway holds too much already;
   bodies of signed sources, read before their signature is checked, draw on a
   smaller budget of their own), then read within the body timeout (408) and the
   source's bound (413), and the signature checked over it (401);
3. converted on a bounded thread pool, never on the event loop, so ``/healthz``
   and other requests are served while a large report converts (400 with the
   reason and the JSON path; 503 when the conversion does not finish in time);
4. published (503 when the broker refuses; the sender retries and the
   deterministic ``event_id`` makes a redelivery a duplicate).

Only a fully accepted request publishes anything; a CloudEvents batch is one
request (all its events or none; a 400 names the failing event's ``index``).
Answers are JSON objects. Every refused request is logged in one line (status,
source, peer, reason; never a header value) and closes its connection. Server
limits (:class:`GatewayLimits`: connections, header/body/idle timeouts, body and
buffer bounds) are enforced by :func:`running_gateway`; docs/ingest.md lists them.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from agents.errors import ConfigError, RelsecError, ValidationError
from agents.model.events import Event, event_to_dict, parse_event
from streams.catalog import CatalogSource
from streams.ingest import ADAPTERS, SOURCES, IngestOptions, decode_payload
from streams.ingest.cloudevents import Part, content_mode, split
from streams.ingest.common import DEFAULT_ENVIRONMENT, DEFAULT_MIN_SEVERITY, Conversion
from streams.ingest.errors import (
    AdapterError,
    ConversionFailed,
    PublishFailed,
    SignatureError,
    UnsupportedContent,
)
from streams.ingest.signatures import (
    HMAC_SOURCES,
    PAGERDUTY_MAX_BODY_BYTES,
    HeaderCheck,
    PendingSignature,
    Secrets,
    check_headers,
)

log = logging.getLogger("relsec.ingest.gateway")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8088
MIB: Final = 1024 * 1024
#: Webhook deliveries are a few kilobytes; scanner reports hold thousands of findings.
DEFAULT_WEBHOOK_BODY_BYTES: Final = 1 * MIB
DEFAULT_REPORT_BODY_BYTES: Final = 16 * MIB
REPORT_SOURCES: Final = ("trivy", "grype", "dependency-track")
#: The sources that speak CloudEvents (structured and batched modes are read for them).
CLOUDEVENTS_SOURCES: Final = frozenset({"cdevents"})


def default_body_limits() -> dict[str, int]:
    return {
        s: DEFAULT_REPORT_BODY_BYTES if s in REPORT_SOURCES else DEFAULT_WEBHOOK_BODY_BYTES
        for s in SOURCES
    }


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """The bounds the gateway enforces; docs/ingest.md tells the why of each default.

    ``body_bytes`` is per source. ``unauthenticated_bytes`` bounds all bodies held
    at once before their signature is checked, ``buffered_bytes`` all bodies held
    at once. ``header_timeout_s`` is the time a connection has, from opening or
    from the first byte of a further request, to send a complete request head;
    ``idle_timeout_s`` how long an idle keep-alive connection stays open;
    ``body_timeout_s`` the time to send the whole body once the head is in.
    """

    body_bytes: Mapping[str, int] = field(default_factory=default_body_limits)
    unauthenticated_bytes: int = 8 * MIB
    buffered_bytes: int = 64 * MIB
    buffer_wait_s: float = 5.0
    max_connections: int = 256
    max_in_flight: int = 128
    max_requests_per_connection: int = 1000
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 75.0
    linger_s: float = 2.0
    conversion_threads: int = 2
    conversion_timeout_s: float = 60.0
    max_header_bytes: int = 8190
    max_headers: int = 64
    backlog: int = 128

    def __post_init__(self) -> None:
        unknown = sorted(set(self.body_bytes) - set(SOURCES))
        if unknown:
            raise ConfigError(f"body bound for unknown source(s): {', '.join(unknown)}")
        for source, limit in self.body_bytes.items():
            if limit < 1:
                raise ConfigError(f"body bound of {source} must be at least 1 byte")
        pagerduty = self.body_bytes.get("pagerduty", DEFAULT_WEBHOOK_BODY_BYTES)
        if pagerduty > PAGERDUTY_MAX_BODY_BYTES:
            raise ConfigError(
                f"body bound of pagerduty is {pagerduty} bytes; PagerDuty's verifier reads at "
                f"most {PAGERDUTY_MAX_BODY_BYTES}, so larger bodies could not be checked alike"
            )
        for name in ("max_connections", "max_in_flight", "conversion_threads", "backlog"):
            if getattr(self, name) < 1:
                raise ConfigError(f"gateway limit {name} must be at least 1")
        if self.buffered_bytes < max(self.body_bytes.values(), default=0):
            raise ConfigError(
                f"buffered bytes ({self.buffered_bytes}) must hold the largest body bound "
                f"({max(self.body_bytes.values())})"
            )
        signed = max(self.body_limit(s) for s in HMAC_SOURCES)
        if self.unauthenticated_bytes < signed:
            raise ConfigError(
                f"unauthenticated bytes ({self.unauthenticated_bytes}) must hold the largest "
                f"body bound of a signed source ({signed})"
            )
        for name in (
            "header_timeout_s",
            "body_timeout_s",
            "idle_timeout_s",
            "conversion_timeout_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"gateway limit {name} must be more than 0 seconds")

    def body_limit(self, source: str) -> int:
        return self.body_bytes.get(source, DEFAULT_WEBHOOK_BODY_BYTES)


class Publisher(Protocol):
    """Where accepted events go: Kafka in production (:class:`ProducerPublisher`)."""

    async def publish(self, events: Sequence[Event]) -> None: ...


class ProducerPublisher:
    """One long-lived idempotent confluent-kafka producer for the gateway's lifetime.

    Events are encoded with the project codec (``make_codec``), keyed by service
    and sent to the input topic of their type, like ``streams.publish.publish_events``
    (which ``relsec ingest publish`` uses). Unlike it, the producer and its
    connections outlive a request: creating one per request cost about half a
    second per webhook. Records are encoded and handed to librdkafka on a worker
    thread, one request at a time; a background thread serves delivery callbacks;
    a request waits for its own records only, at most ``timeout_s`` (librdkafka's
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
        self._producing = threading.Lock()
        self._poller = threading.Thread(target=self._poll, name="relsec-ingest-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.1)

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[str | None]] = [loop.create_future() for _ in events]
        await asyncio.to_thread(self._produce, events, waits, loop)
        try:
            outcomes = await asyncio.wait_for(asyncio.gather(*waits), self.timeout_s + 5)
        except TimeoutError:
            raise PublishFailed(f"no delivery report within {self.timeout_s + 5:.0f} s") from None
        failures = [f"{e.event_id}: {o}" for e, o in zip(events, outcomes, strict=True) if o]
        if failures:
            raise PublishFailed(
                f"{len(failures)} of {len(events)} event(s) not written: {failures[0]}"
            )

    def _produce(
        self,
        events: Sequence[Event],
        waits: Sequence[asyncio.Future[str | None]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Encode and hand every record to librdkafka, on a worker thread: encoding the
        thousands of events of one report took up to a second of the event loop."""
        from confluent_kafka import KafkaException

        with self._producing:  # one request's records at a time, in order
            for event, done in zip(events, waits, strict=True):

                def on_delivery(
                    err: Any, _msg: Any, done: asyncio.Future[str | None] = done
                ) -> None:
                    loop.call_soon_threadsafe(_settle, done, None if err is None else str(err))

                value = self._codec.encode_event(event_to_dict(event))
                topic = self.settings.topics.input_for_type(event.type)
                while True:
                    try:
                        self._producer.produce(
                            topic, key=event.service.encode(), value=value, on_delivery=on_delivery
                        )
                        break
                    except BufferError:  # the local queue is full: the poll thread drains it
                        time.sleep(0.05)
                    except KafkaException as exc:
                        loop.call_soon_threadsafe(_settle, done, str(exc))
                        break

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
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    min_severity: str = DEFAULT_MIN_SEVERITY
    default_environment: str = DEFAULT_ENVIRONMENT
    mappings: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    catalog: CatalogSource | None = None
    """The service catalog (SPEC §8), re-read when its files change; None: tools' own names."""
    require_catalog: bool = False


# --- bounded resources ----------------------------------------------------------


class ByteBudget:
    """Bytes that request bodies may hold at once; a reservation waits, bounded, for room."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = asyncio.Condition()

    def try_reserve(self, n: int) -> bool:
        if self.used + n > self.capacity:
            return False
        self.used += n
        return True

    async def reserve(self, n: int, wait_s: float) -> bool:
        """Reserve ``n`` bytes, waiting at most ``wait_s`` for others to release room."""
        if self.try_reserve(n):
            return True
        if n > self.capacity:
            return False
        async with self._changed:
            try:
                async with asyncio.timeout(wait_s):
                    await self._changed.wait_for(lambda: self.used + n <= self.capacity)
            except TimeoutError:
                return False
            self.used += n
            return True

    async def release(self, n: int) -> None:
        self.used -= n
        async with self._changed:
            self._changed.notify_all()


@dataclass(slots=True)
class GatewayState:
    """Counters and budgets of one running gateway (``/healthz`` shows them)."""

    limits: GatewayLimits
    unauthenticated: ByteBudget
    buffered: ByteBudget
    counts: dict[str, int] = field(
        default_factory=lambda: {"accepted": 0, "rejected": 0, "events": 0, "unresolved": 0}
    )
    unresolved_by_source: dict[str, int] = field(default_factory=dict)
    recent_unresolved: dict[str, None] = field(default_factory=dict)
    """The last 20 distinct service names the catalog did not resolve: what to add to it."""

    def count_unresolved(self, source: str, names: Sequence[str]) -> None:
        if not names:
            return
        self.counts["unresolved"] += len(names)
        self.unresolved_by_source[source] = self.unresolved_by_source.get(source, 0) + len(names)
        for name in names:
            self.recent_unresolved.pop(name, None)
            self.recent_unresolved[name] = None
        while len(self.recent_unresolved) > 20:
            self.recent_unresolved.pop(next(iter(self.recent_unresolved)))
    in_flight: int = 0
    connections: int = 0
    refused_connections: int = 0
    slow_heads: int = 0

    def load(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "in_flight": self.in_flight,
            "buffered_bytes": self.buffered.used,
            "unauthenticated_bytes": self.unauthenticated.used,
            "refused_connections": self.refused_connections,
            "slow_request_heads": self.slow_heads,
        }


STATE: Final = web.AppKey("relsec_gateway_state", GatewayState)


# --- conversion (runs on the pool) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Converted:
    """What a request body gives: events to publish, their ids, reasons for no events,
    and each adapter call's own :class:`Conversion` (one per event of a batch)."""

    events: tuple[Event, ...]
    event_ids: tuple[str, ...]
    skipped: tuple[str, ...]
    conversions: tuple[Conversion, ...] = ()


def _parts(source: str, content_type: str | None, body: bytes) -> list[Part]:
    if source in CLOUDEVENTS_SOURCES:
        return split(source, content_type, body)
    return [Part(decode_payload(source, body))]


def convert_body(
    source: str, body: bytes, content_type: str | None, options: IngestOptions
) -> Converted:
    """Decode and convert one request body; :class:`ConversionFailed` when any part fails."""
    try:
        parts = _parts(source, content_type, body)
    except UnsupportedContent as exc:
        raise ConversionFailed(exc, None, status=415) from None
    except AdapterError as exc:
        raise ConversionFailed(exc, None) from None
    events: list[Event] = []
    event_ids: list[str] = []
    skipped: list[str] = []
    conversions: list[Conversion] = []
    for part in parts:
        try:
            conversion = ADAPTERS[source](part.payload, options)
            parsed = [parse_event(e) for e in conversion.events]
        except AdapterError as exc:
            raise ConversionFailed(part.locate(exc), part.index) from None
        except ValidationError as exc:
            problem = AdapterError(source, "$", f"gives an invalid event: {exc}")
            raise ConversionFailed(part.locate(problem), part.index) from None
        except ConfigError as exc:
            raise ConversionFailed(AdapterError(source, "$", str(exc)), part.index) from None
        events.extend(parsed)
        event_ids.extend(e["event_id"] for e in conversion.events)
        skipped.extend(part.label(reason) for reason in conversion.skipped)
        conversions.append(conversion)
    return Converted(tuple(events), tuple(event_ids), tuple(skipped), tuple(conversions))


# --- the application --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admission:
    """What the request head decided: the source, its bound, and how far it is authenticated."""

    source: str
    body_limit: int
    declared_length: int | None
    auth: HeaderCheck


class Refusal(Exception):
    """A request is refused with ``status``; ``reason`` goes to the client and the log."""

    def __init__(self, status: int, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


def _peer(request: web.BaseRequest) -> str:
    return request.remote or "unknown peer"


def _error(status: int, reason: str, **extra: Any) -> web.Response:
    response = web.json_response({"error": reason, **extra}, status=status)
    if status in (503, 429):
        response.headers["Retry-After"] = "1"
    return response


def make_app(publisher: Publisher, config: GatewayConfig) -> web.Application:
    """The aiohttp application: routes, admission, bounded buffering and conversion."""
    limits = config.limits
    app = web.Application(client_max_size=max(limits.body_bytes.values()) + 1)
    state = GatewayState(
        limits, ByteBudget(limits.unauthenticated_bytes), ByteBudget(limits.buffered_bytes)
    )
    app[STATE] = state
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=limits.conversion_threads, thread_name_prefix="relsec-ingest-convert"
    )

    async def stop_pool(_: web.Application) -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(stop_pool)

    def refuse(request: web.BaseRequest, source: str, refusal: Refusal) -> web.Response:
        state.counts["rejected"] += 1
        level = logging.WARNING if refusal.status == 401 else logging.INFO
        log.log(level, "%d %s from %s: %s", refusal.status, source, _peer(request), refusal.reason)
        response = _error(refusal.status, refusal.reason, **refusal.extra)
        response.force_close()  # a refused client does not keep its connection
        return response

    def admit(request: web.Request) -> Admission:
        """The checks the request head allows (pure: the Expect handler runs them too)."""
        source = request.match_info["source"]
        if source not in ADAPTERS:
            raise Refusal(404, f"unknown source {source!r}", sources=list(SOURCES))
        coding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if coding not in ("", "identity"):
            raise Refusal(415, "compressed request bodies are not accepted (Content-Encoding)")
        try:
            auth = check_headers(source, request.headers, config.secrets)
        except SignatureError as exc:
            raise Refusal(401, exc.detail) from None
        limit = limits.body_limit(source)
        length = request.content_length
        if length is not None and length > limit:
            raise Refusal(413, f"body of {length} bytes exceeds the {limit} bytes of {source}")
        if source in CLOUDEVENTS_SOURCES:
            try:
                content_mode(source, request.headers.get("Content-Type"))
            except UnsupportedContent as exc:
                raise Refusal(415, exc.detail, path=exc.path, source=source) from None
        return Admission(source, limit, length, auth)

    async def expect_continue(request: web.Request) -> web.StreamResponse | None:
        """Answer ``Expect: 100-continue`` only once the head is admitted, so no body is sent."""
        if isinstance(request.protocol, _GatewayConnection):
            request.protocol.head_complete()
        try:
            admit(request)
        except Refusal as refusal:
            return refuse(request, request.match_info.get("source", "?"), refusal)
        expect = request.headers.get("Expect", "")
        if expect.lower() != "100-continue":
            return refuse(request, request.match_info["source"], Refusal(417, "unknown Expect"))
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the 100 is not part of the response
        return None

    async def healthz(_: web.Request) -> web.Response:
        catalog = None
        if config.catalog is not None:
            catalog = {
                **config.catalog.status(),
                "unresolved_by_source": dict(state.unresolved_by_source),
                "recent_unresolved": list(state.recent_unresolved),
            }
        return web.json_response(
            {
                "status": "ok",
                "sources": list(SOURCES),
                **state.counts,
                "load": state.load(),
                "catalog": catalog,
            }
        )

    async def ingest(request: web.Request) -> web.StreamResponse:
        source = request.match_info["source"]
        if state.in_flight >= limits.max_in_flight:
            return refuse(
                request, source, Refusal(503, f"busy: {state.in_flight} requests in flight")
            )
        state.in_flight += 1
        try:
            return await _ingest(request, source)
        except Refusal as refusal:
            return refuse(request, source, refusal)
        finally:
            state.in_flight -= 1

    async def _ingest(request: web.Request, source: str) -> web.StreamResponse:
        admission = admit(request)
        reserve = (
            admission.body_limit if admission.declared_length is None else admission.declared_length
        )
        pending = admission.auth if isinstance(admission.auth, PendingSignature) else None
        if pending is not None and not state.unauthenticated.try_reserve(reserve):
            raise Refusal(503, "busy: too many unverified bodies are being received")
        try:
            if not await state.buffered.reserve(reserve, limits.buffer_wait_s):
                raise Refusal(503, "busy: the gateway holds as many request bodies as it may")
            try:
                body = await _read_body(request, admission.body_limit, limits.body_timeout_s)
                how = "token"
                if pending is not None:
                    try:
                        how = pending.verify(body)
                    except SignatureError as exc:
                        raise Refusal(401, exc.detail) from None
                    await state.unauthenticated.release(reserve)
                    pending = None
                return await _convert_and_publish(request, source, body, how)
            finally:
                await state.buffered.release(reserve)
        finally:
            if pending is not None:
                await state.unauthenticated.release(reserve)

    async def _convert_and_publish(
        request: web.Request, source: str, body: bytes, how: str
    ) -> web.StreamResponse:
        event_name = request.headers.get("X-GitHub-Event") if source == "github" else None
        if event_name is not None and not (event_name.isascii() and event_name.isprintable()):
            raise Refusal(400, "X-GitHub-Event is not valid header text")
        options = IngestOptions(
            min_severity=config.min_severity,
            default_environment=config.default_environment,
            mapping=config.mappings.get(source, ()),
            event_name=event_name,
            received_at_ms=config.clock_ms(),
            catalog=config.catalog.current() if config.catalog is not None else None,
            require_catalog=config.require_catalog and config.catalog is not None,
        )
        started = time.monotonic()
        job = pool.submit(convert_body, source, body, request.headers.get("Content-Type"), options)
        try:
            async with asyncio.timeout(limits.conversion_timeout_s):
                converted = await asyncio.wrap_future(job)
        except TimeoutError:
            job.cancel()
            log.error(
                "%s payload of %d bytes from %s: conversion did not finish within %.0f s",
                source,
                len(body),
                _peer(request),
                limits.conversion_timeout_s,
            )
            raise Refusal(
                503, f"conversion did not finish within {limits.conversion_timeout_s:.0f} s"
            ) from None
        except ConversionFailed as exc:
            extra: dict[str, Any] = {"path": exc.path, "source": source}
            if exc.index is not None:
                extra["index"] = exc.index
            raise Refusal(exc.status, exc.detail, **extra) from None
        except Exception:  # an adapter's bug: the server's fault, told with its traceback
            log.exception("converting a %s payload from %s failed", source, _peer(request))
            raise Refusal(
                500, "internal error converting the payload; see the gateway log"
            ) from None
        converted_at = time.monotonic()
        try:
            await publisher.publish(converted.events)
        except RelsecError as exc:
            log.error("publishing %d %s event(s) failed: %s", len(converted.events), source, exc)
            raise Refusal(503, f"could not publish: {exc}") from None
        except Exception as exc:  # the broker client's own errors
            log.exception("publishing %d %s event(s) failed", len(converted.events), source)
            raise Refusal(503, f"could not publish: {type(exc).__name__}") from None
        state.counts["accepted"] += 1
        state.counts["events"] += len(converted.events)
        unresolved = list(
            dict.fromkeys(u.service for c in converted.conversions for u in c.unresolved)
        )
        state.count_unresolved(source, unresolved)
        log.info(
            "%s delivery from %s (%s): %d bytes, %d event(s), %d skipped; "
            "converted in %.2f s, published in %.2f s",
            source,
            _peer(request),
            how,
            len(body),
            len(converted.events),
            len(converted.skipped),
            converted_at - started,
            time.monotonic() - converted_at,
        )
        answer: dict[str, Any] = {
            "accepted": len(converted.events),
            "event_ids": list(converted.event_ids),
            "skipped": list(converted.skipped),
        }
        if config.catalog is not None:
            answer["unresolved"] = unresolved
        return web.json_response(answer, status=202)

    @web.middleware
    async def connection_bounds(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Tell the connection a request head is complete; bound requests per connection."""
        protocol = request.protocol
        connection = protocol if isinstance(protocol, _GatewayConnection) else None
        if connection is not None:
            connection.request_started()
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own 404/405 for unknown routes
            exc.force_close()
            raise
        finally:
            if connection is not None:
                connection.request_finished()
        if connection is not None and connection.served >= limits.max_requests_per_connection:
            response.force_close()
        return response

    app.middlewares.append(connection_bounds)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/ingest/{source}", ingest, expect_handler=expect_continue)
    return app


async def _read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, within ``timeout_s`` (Refusal otherwise)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise Refusal(413, f"body exceeds the {limit} bytes of this source")
                chunks.append(chunk)
    except TimeoutError:
        raise Refusal(408, f"the body did not arrive within {timeout_s:.0f} s") from None
    except HttpProcessingError as exc:
        raise Refusal(400, f"malformed body: {_first_line(exc.message)}") from None
    except ConnectionError:
        raise Refusal(400, "the client closed the connection during the body") from None
    return b"".join(chunks)


def _first_line(message: str) -> str:
    """The first line of a parser message (later lines quote the offending bytes)."""
    text = (message or "").strip()
    return text.splitlines()[0].rstrip(":") if text else "bad request"


# --- the server ---------------------------------------------------------------------


class _GatewayConnection(web.RequestHandler):
    """aiohttp's connection handler with the gateway's connection-level bounds.

    Counted against ``max_connections``; closed when a request head is not complete
    within ``header_timeout_s`` of the connection opening or of the first byte of a
    further request (aiohttp's own timer only bounds idle keep-alive connections);
    HTTP parse errors, which are the client's, are logged in one line.
    """

    def __init__(self, state: GatewayState, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._state = state
        self._busy = False
        self._head_deadline: asyncio.TimerHandle | None = None
        self.served = 0
        state.connections += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if data and not self._busy and self._head_deadline is None:
            self._arm_head_deadline()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_deadline()
        self._state.connections -= 1
        super().connection_lost(exc)

    def head_complete(self) -> None:
        self._disarm_head_deadline()

    def request_started(self) -> None:
        self._busy = True
        self.served += 1
        self._disarm_head_deadline()

    def request_finished(self) -> None:
        self._busy = False

    def _arm_head_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_deadline = loop.call_later(
            self._state.limits.header_timeout_s, self._head_too_slow
        )

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self._busy:
            return
        self._state.slow_heads += 1
        log.info(
            "closed connection from %s: no complete request head within %.0f s",
            _peername(self.peername),
            self._state.limits.header_timeout_s,
        )
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):  # the client's: one line, no traceback
            self._state.counts["rejected"] += 1
            log.info(
                "%d malformed HTTP request from %s: %s",
                status,
                _peername(self.peername),
                _first_line(exc.message),
            )
        return super().handle_error(request, status, exc, message)


class _WithoutClientErrors(logging.Filter):
    """Drops aiohttp's own records of HTTP parse errors (with tracebacks): already logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


#: The logger aiohttp's connection handler writes to; server errors keep their tracebacks.
http_log = logging.getLogger("relsec.ingest.gateway.http")
http_log.addFilter(_WithoutClientErrors())


def _peername(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer) if peer else "unknown peer"


_BUSY_BODY: Final = b'{"error": "busy: too many connections"}'
_BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + _BUSY_BODY
)


class _RefuseBusy(asyncio.Protocol):
    """A connection over ``max_connections``: a canned 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(_BUSY_RESPONSE)
        transport.close()


@dataclass(frozen=True, slots=True)
class RunningGateway:
    """A gateway that accepts connections at ``host``:``port`` (the bound port)."""

    host: str
    port: int
    state: GatewayState


@asynccontextmanager
async def running_gateway(
    publisher: Publisher, config: GatewayConfig, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> AsyncIterator[RunningGateway]:
    """Serve until the block ends; then requests in flight get 10 s to finish."""
    limits = config.limits
    app = make_app(publisher, config)
    state = app[STATE]
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    server = runner.server
    assert server is not None
    loop = asyncio.get_running_loop()
    handler_options: dict[str, Any] = {
        "loop": loop,
        "keepalive_timeout": limits.idle_timeout_s,
        "lingering_time": limits.linger_s,
        "max_line_size": limits.max_header_bytes,
        "max_field_size": limits.max_header_bytes,
        "max_headers": limits.max_headers,
        "auto_decompress": False,
        "access_log": None,
        "logger": http_log,
    }

    def connection() -> asyncio.BaseProtocol:
        if state.connections >= limits.max_connections:
            state.refused_connections += 1
            return _RefuseBusy()
        return _GatewayConnection(state, server, **handler_options)

    listener = await loop.create_server(
        connection, host, port, backlog=limits.backlog, reuse_address=True
    )
    bound = listener.sockets[0].getsockname()[1] if listener.sockets else port
    try:
        yield RunningGateway(host, bound, state)
    finally:
        listener.close()
        await runner.cleanup()
        await listener.wait_closed()


async def serve(
    publisher: Publisher,
    config: GatewayConfig,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Run the gateway until cancelled."""
    async with running_gateway(publisher, config, host, port) as gateway:
        if ready is not None:
            ready(gateway.host, gateway.port)
        await asyncio.Event().wait()


# --- command-line options (used by ``relsec ingest serve``) -----------------------


def parse_body_limits(items: Sequence[str]) -> dict[str, int]:
    """``["4194304", "trivy=33554432"]``: a bare number bounds every source, ``SOURCE=N`` one."""
    limits = default_body_limits()
    for item in items:
        source, sep, number = item.rpartition("=")
        try:
            value = int(number)
        except ValueError:
            raise ConfigError(
                f"--max-body-bytes {item!r}: expected BYTES or SOURCE=BYTES"
            ) from None
        if not sep:
            limits = dict.fromkeys(SOURCES, value)
        elif source in SOURCES:
            limits[source] = value
        else:
            raise ConfigError(
                f"--max-body-bytes {item!r}: {source!r} is not one of {', '.join(SOURCES)}"
            )
    return limits


def limits_from_args(args: argparse.Namespace) -> GatewayLimits:
    """The :class:`GatewayLimits` of parsed ``gateway_*`` options (their declarations:
    ``streams.cli.ingest.GATEWAY_LIMITS``) and ``max_body_bytes``."""
    values = {
        name[len("gateway_") :]: value
        for name, value in vars(args).items()
        if name.startswith("gateway_")
    }
    return GatewayLimits(body_bytes=parse_body_limits(args.max_body_bytes), **values)
