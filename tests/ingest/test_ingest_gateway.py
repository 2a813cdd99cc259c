"""The gateway's HTTP contract and its limits, against the real server on 127.0.0.1.

Each test starts the gateway with :func:`running_gateway` (the server ``relsec ingest
serve`` runs, with its connection handler and limits) on a free loopback port and
talks to it with aiohttp's client or, where a careless or hostile client must be
played (slow heads, undecodable header bytes, bodies never sent), with raw sockets.
The recording publisher stands in for Kafka only here, to see exactly what a
request would publish; test_ingest_kafka.py runs the same path against a real broker.
Every wait is bounded; every socket connects to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.model.events import Event, Incident
from streams.ingest import ADAPTERS, SOURCES, Conversion, IngestOptions
from streams.ingest.gateway import (
    ByteBudget,
    GatewayConfig,
    GatewayLimits,
    PublishFailed,
    RunningGateway,
    convert_body,
    parse_body_limits,
    running_gateway,
)
from streams.ingest.signatures import Secrets, sign_github, sign_pagerduty

from .helpers import PAYLOADS, RECEIVED_MS

ENV = {
    "RELSEC_INGEST_GITHUB_SECRET": "gh-s3cret",
    "RELSEC_INGEST_PAGERDUTY_SECRET": "pd-s3cret",
    "RELSEC_INGEST_TOKEN": "shared-t0ken",
}
TOKEN = {"X-Relsec-Token": "shared-t0ken"}
MAX_BODY = 64 * 1024
LOOPBACK = "127.0.0.1"
#: What the probe measured: /healthz blocked for 58 s behind one report. The bound here
#: leaves room for six other engineers' tests on two cores.
HEALTHZ_BOUND_S = 0.5


class Recorder:
    """Keeps what would have been published; can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.fail = False

    async def publish(self, events: Sequence[Event]) -> None:
        if self.fail:
            raise PublishFailed("1 of 1 event(s) not written: broker down")
        self.batches.append(list(events))

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]


@dataclass
class Gateway:
    client: aiohttp.ClientSession
    recorder: Recorder
    running: RunningGateway

    @property
    def port(self) -> int:
        return self.running.port


@asynccontextmanager
async def start(**limits: Any) -> AsyncIterator[Gateway]:
    """A gateway on a free loopback port; ``limits`` override the test defaults."""
    recorder = Recorder()
    settings: dict[str, Any] = {
        "body_bytes": dict.fromkeys(SOURCES, MAX_BODY),
        "buffered_bytes": 8 * MAX_BODY,
        "unauthenticated_bytes": 4 * MAX_BODY,
        **limits,
    }
    config = GatewayConfig(
        secrets=Secrets.from_env(SOURCES, ENV),
        limits=GatewayLimits(**settings),
        mappings={"opsgenie": (("service", "$.alert.alias"),)},
        clock_ms=lambda: RECEIVED_MS,
    )
    async with running_gateway(recorder, config, LOOPBACK, 0) as running:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(
            base_url=f"http://{LOOPBACK}:{running.port}", timeout=timeout
        ) as client:
            yield Gateway(client, recorder, running)


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with start() as gw:
        yield gw


def _body(rel: str) -> bytes:
    return (PAYLOADS / rel).read_bytes()


async def _json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    answer: dict[str, Any] = orjson.loads(await resp.read())
    return answer


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        answer: dict[str, Any] = orjson.loads(self.body)
        return answer


async def _read_response(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawResponse(status, headers, body)


async def _raw(port: int, data: bytes, timeout: float = 5.0) -> RawResponse:
    """Send ``data`` as is and read one response, within ``timeout``."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(_read_response(reader), timeout)
    finally:
        writer.close()


async def _closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes the connection within ``timeout`` (all data drained)."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def _head(path: str, headers: dict[str, str] | None = None, extra: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {LOOPBACK}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n").encode() + (extra + b"\r\n" if extra else b"") + b"\r\n"


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    with_traces = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not with_traces, [r.getMessage() for r in with_traces]


# --- the contract ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_signed_pagerduty_delivery_is_published(gateway: Gateway) -> None:
    body = _body("pagerduty/incident.triggered.json")
    resp = await gateway.client.post(
        "/v1/ingest/pagerduty",
        data=body,
        headers={
            "X-PagerDuty-Signature": sign_pagerduty(b"pd-s3cret", body),
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 202
    assert await _json(resp) == {
        "accepted": 1,
        "event_ids": ["pagerduty:01DEN7TVKQ0RMJ1DTGCN7U4SHS"],
        "skipped": [],
    }
    (event,) = gateway.recorder.events
    assert isinstance(event, Incident)
    assert (event.type, event.incident_id, event.status, event.service) == (
        "incident",
        "Q1W2E3R4T5Y6U7",
        "opened",
        "checkout",
    )


@pytest.mark.asyncio
async def test_unsigned_bad_and_tampered_requests_get_401_and_publish_nothing(
    gateway: Gateway,
) -> None:
    body = _body("pagerduty/incident.triggered.json")
    good = sign_pagerduty(b"pd-s3cret", body)
    tampered = body.replace(b"checkout: 5xx", b"checkout: 4xx")
    assert tampered != body and len(tampered) == len(body)
    cases = [
        ({}, body),
        ({"X-PagerDuty-Signature": sign_pagerduty(b"wrong", body)}, body),
        ({"X-PagerDuty-Signature": good}, tampered),
        ({"X-PagerDuty-Signature": f"{sign_pagerduty(b'old', body)}, {good}"}, body),
    ]
    for headers, data in cases:
        resp = await gateway.client.post("/v1/ingest/pagerduty", data=data, headers=headers)
        assert resp.status == 401
        assert "error" in await _json(resp)
        assert resp.headers.get("Connection", "").lower() == "close"  # refused: not kept
    gh = _body("github/deployment_status.success.json")
    resp = await gateway.client.post("/v1/ingest/github", data=gh, headers=TOKEN)
    assert resp.status == 401
    resp = await gateway.client.post(
        "/v1/ingest/github",
        data=gh,
        headers={"X-Hub-Signature-256": sign_github(b"gh-s3cret", gh).upper()},
    )
    assert resp.status == 401
    resp = await gateway.client.post(
        "/v1/ingest/trivy", data=_body("trivy/checkout-2.4.0.scan1.json")
    )
    assert resp.status == 401
    assert gateway.recorder.events == []


@pytest.mark.asyncio
async def test_github_signed_with_event_header(gateway: Gateway) -> None:
    body = _body("github/deployment_status.success.json")
    headers = {
        "X-Hub-Signature-256": sign_github(b"gh-s3cret", body),
        "X-GitHub-Event": "deployment_status",
    }
    resp = await gateway.client.post("/v1/ingest/github", data=body, headers=headers)
    assert resp.status == 202 and (await _json(resp))["accepted"] == 1
    ping = _body("github/ping.json")
    resp = await gateway.client.post(
        "/v1/ingest/github",
        data=ping,
        headers={"X-Hub-Signature-256": sign_github(b"gh-s3cret", ping), "X-GitHub-Event": "ping"},
    )
    answer = await _json(resp)
    assert resp.status == 202 and answer["accepted"] == 0 and "ping" in answer["skipped"][0]
    assert [e.event_id for e in gateway.recorder.events] == ["github:deployment_status:77001"]


@pytest.mark.asyncio
async def test_malformed_payloads_get_400_with_reason_and_path(gateway: Gateway) -> None:
    resp = await gateway.client.post(
        "/v1/ingest/trivy", data=b'{"SchemaVersion": 2,', headers=TOKEN
    )
    answer = await _json(resp)
    assert resp.status == 400 and answer["path"] == "$" and "not valid JSON" in answer["error"]
    report = orjson.loads(_body("trivy/checkout-2.4.0.scan1.json"))
    del report["Results"][0]["Vulnerabilities"][1]["VulnerabilityID"]
    resp = await gateway.client.post("/v1/ingest/trivy", data=orjson.dumps(report), headers=TOKEN)
    answer = await _json(resp)
    assert (
        resp.status == 400 and answer["path"] == "$.Results[0].Vulnerabilities[1].VulnerabilityID"
    )
    body = orjson.loads(_body("pagerduty/incident.triggered.json"))
    del body["event"]["occurred_at"]
    raw = orjson.dumps(body)
    resp = await gateway.client.post(
        "/v1/ingest/pagerduty",
        data=raw,
        headers={"X-PagerDuty-Signature": sign_pagerduty(b"pd-s3cret", raw)},
    )
    assert resp.status == 400 and (await _json(resp))["path"] == "$.event.occurred_at"
    assert gateway.recorder.events == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-13-01T00:00:00Z"]
)
async def test_a_timestamp_outside_what_rfc_3339_can_write_is_400_naming_the_field(
    gateway: Gateway, stamp: str
) -> None:
    """Year 1 at +01:00 is year 0 in UTC: a client error at its path, never a 500."""
    body = orjson.loads(_body("pagerduty/incident.triggered.json"))
    body["event"]["occurred_at"] = stamp
    raw = orjson.dumps(body)
    resp = await gateway.client.post(
        "/v1/ingest/pagerduty",
        data=raw,
        headers={"X-PagerDuty-Signature": sign_pagerduty(b"pd-s3cret", raw)},
    )
    answer = await _json(resp)
    assert resp.status == 400, answer
    assert answer["path"] == "$.event.occurred_at"
    assert gateway.recorder.events == []


@pytest.mark.asyncio
async def test_body_size_is_bounded_per_source() -> None:
    limits = {**dict.fromkeys(SOURCES, MAX_BODY), "trivy": 4 * MAX_BODY}
    async with start(body_bytes=limits) as gw:
        big = b'{"pad": "' + b"x" * (MAX_BODY + 10) + b'"}'
        resp = await gw.client.post("/v1/ingest/opsgenie", data=big, headers=TOKEN)
        assert resp.status == 413 and str(MAX_BODY) in (await _json(resp))["error"]
        resp = await gw.client.post("/v1/ingest/trivy", data=big, headers=TOKEN)
        assert resp.status == 400  # within trivy's bound; just not a report

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the read is bounded
            for _ in range(4 * MAX_BODY // 1024 + 2):
                yield b"x" * 1024

        resp = await gw.client.post("/v1/ingest/trivy", data=chunks(), headers=TOKEN)
        assert resp.status == 413
        assert gw.recorder.events == []


@pytest.mark.asyncio
async def test_token_sources_mapping_and_unknown_source(gateway: Gateway) -> None:
    resp = await gateway.client.post(
        "/v1/ingest/opsgenie",
        data=_body("opsgenie/create.json"),
        headers={"Authorization": "Bearer shared-t0ken"},
    )
    assert resp.status == 202
    assert gateway.recorder.events[-1].service == "checkout-latency"  # the per-source --map
    resp = await gateway.client.post(
        "/v1/ingest/trivy", data=_body("trivy/checkout-2.4.0.scan1.json"), headers=TOKEN
    )
    answer = await _json(resp)
    assert resp.status == 202 and answer["accepted"] == 4 and answer["skipped"]
    resp = await gateway.client.post("/v1/ingest/jenkins", data=b"{}", headers=TOKEN)
    assert resp.status == 404 and "jenkins" in (await _json(resp))["error"]
    resp = await gateway.client.get("/v1/ingest/trivy")
    assert resp.status == 405


@pytest.mark.asyncio
async def test_publish_failure_is_503(gateway: Gateway) -> None:
    gateway.recorder.fail = True
    resp = await gateway.client.post(
        "/v1/ingest/opsgenie", data=_body("opsgenie/create.json"), headers=TOKEN
    )
    assert resp.status == 503 and "broker down" in (await _json(resp))["error"]
    assert resp.headers["Retry-After"] == "1"


@pytest.mark.asyncio
async def test_healthz_counts_and_load(gateway: Gateway) -> None:
    await gateway.client.post("/v1/ingest/trivy", data=b"{}")
    resp = await gateway.client.get("/healthz")
    answer = await _json(resp)
    assert resp.status == 200 and answer["status"] == "ok" and answer["rejected"] == 1
    assert set(answer["sources"]) == set(SOURCES)
    assert answer["load"]["in_flight"] == 0 and answer["load"]["connections"] >= 1


@pytest.mark.asyncio
async def test_unreachable_broker_is_503_within_the_bound() -> None:
    from streams.ingest.gateway import ProducerPublisher
    from streams.settings import Settings

    publisher = ProducerPublisher(Settings(bootstrap_servers="127.0.0.1:1"), timeout_s=1.0)
    config = GatewayConfig(secrets=Secrets.from_env(SOURCES, ENV), clock_ms=lambda: RECEIVED_MS)
    try:
        async with (
            running_gateway(publisher, config, LOOPBACK, 0) as running,
            aiohttp.ClientSession(base_url=f"http://{LOOPBACK}:{running.port}") as client,
        ):
            started = time.monotonic()
            resp = await client.post(
                "/v1/ingest/opsgenie", data=_body("opsgenie/create.json"), headers=TOKEN
            )
            assert resp.status == 503 and "not written" in (await _json(resp))["error"]
            assert time.monotonic() - started < 10
    finally:
        publisher.close()


# --- authentication before the body --------------------------------------------------


@pytest.mark.asyncio
async def test_token_is_checked_before_the_body_is_read(gateway: Gateway) -> None:
    """A wrong token with a 50 MB body announced and none sent is answered at once."""
    announced = {"Content-Length": str(50_000_000), "Content-Type": "application/json"}
    for headers in ({**announced, "X-Relsec-Token": "wrong"}, announced):
        started = time.monotonic()
        answer = await _raw(gateway.port, _head("/v1/ingest/trivy", headers), timeout=3)
        assert answer.status == 401 and time.monotonic() - started < 2
    # a right token but a body over the bound: 413 from the head, nothing read
    answer = await _raw(gateway.port, _head("/v1/ingest/trivy", {**announced, **TOKEN}))
    assert answer.status == 413


@pytest.mark.asyncio
async def test_signed_sources_refuse_a_missing_or_malformed_signature_before_the_body(
    gateway: Gateway,
) -> None:
    announced = {"Content-Length": str(MAX_BODY)}
    for path, headers in (
        ("/v1/ingest/pagerduty", announced),
        ("/v1/ingest/github", announced),
        ("/v1/ingest/github", {**announced, "X-Hub-Signature-256": "sha256=" + "AB" * 32}),
        ("/v1/ingest/pagerduty", {**announced, "X-PagerDuty-Signature": "v1=zz"}),
    ):
        answer = await _raw(gateway.port, _head(path, headers), timeout=3)
        assert answer.status == 401, (path, headers, answer)


@pytest.mark.asyncio
async def test_expect_100_continue_is_refused_before_the_body_is_sent(gateway: Gateway) -> None:
    headers = {"Content-Length": str(MAX_BODY), "Expect": "100-continue", "X-Relsec-Token": "no"}
    answer = await _raw(gateway.port, _head("/v1/ingest/trivy", headers), timeout=3)
    assert answer.status == 401  # the final answer, not "100 Continue"
    body = _body("opsgenie/create.json")
    reader, writer = await asyncio.open_connection(LOOPBACK, gateway.port)
    try:
        headers = {"Content-Length": str(len(body)), "Expect": "100-continue", **TOKEN}
        writer.write(_head("/v1/ingest/opsgenie", headers))
        continued = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert continued.startswith(b"HTTP/1.1 100")
        writer.write(body)
        answer = await asyncio.wait_for(_read_response(reader), 5)
        assert answer.status == 202 and answer.json()["accepted"] == 1
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_undecodable_header_bytes_are_401_with_a_reason_not_500(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = _body("pagerduty/incident.triggered.json")
    for path, header in (
        ("/v1/ingest/trivy", b"X-Relsec-Token"),
        ("/v1/ingest/github", b"X-Hub-Signature-256"),
        ("/v1/ingest/pagerduty", b"X-PagerDuty-Signature"),
        ("/v1/ingest/dependency-track", b"X-Api-Key"),
    ):
        value = b"\xff\xfe\x80" + b"a" * 10
        data = _head(path, {"Content-Length": str(len(body))}, header + b": " + value) + body
        answer = await _raw(gateway.port, data)
        assert answer.status == 401, answer
        assert "not valid header text" in answer.json()["error"]
    _no_tracebacks(caplog)
    assert not any(b"\xff".decode("latin-1") in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_unverified_bodies_draw_on_a_bounded_budget() -> None:
    """Bodies of signed sources are held before their signature is checked: at most
    ``unauthenticated_bytes`` of them; beyond that a sender is told 503 at once."""
    body = _body("pagerduty/incident.triggered.json")
    signature = sign_pagerduty(b"pd-s3cret", body)
    async with start(
        body_bytes={
            **dict.fromkeys(SOURCES, MAX_BODY),
            **dict.fromkeys(("pagerduty", "github", "flux"), len(body)),
        },
        unauthenticated_bytes=2 * len(body),
    ) as gw:
        headers = {"Content-Length": str(len(body)), "X-PagerDuty-Signature": signature}
        held = [await asyncio.open_connection(LOOPBACK, gw.port) for _ in range(2)]
        for _, writer in held:
            writer.write(_head("/v1/ingest/pagerduty", headers) + body[:10])
            await writer.drain()
        for _ in range(50):  # until both handlers hold their reservation
            if gw.running.state.unauthenticated.used == 2 * len(body):
                break
            await asyncio.sleep(0.02)
        assert gw.running.state.unauthenticated.used == 2 * len(body)
        answer = await _raw(gw.port, _head("/v1/ingest/pagerduty", headers) + body)
        assert answer.status == 503 and "unverified" in answer.json()["error"]
        assert answer.headers["retry-after"] == "1"
        for reader, writer in held:  # the held senders finish and are accepted
            writer.write(body[10:])
            assert (await asyncio.wait_for(_read_response(reader), 5)).status == 202
            writer.close()
        assert gw.running.state.unauthenticated.used == 0
        assert gw.running.state.buffered.used == 0


@pytest.mark.asyncio
async def test_a_client_leaving_mid_body_frees_what_it_held(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    state = gateway.running.state
    _, writer = await asyncio.open_connection(LOOPBACK, gateway.port)
    writer.write(_head("/v1/ingest/trivy", {"Content-Length": "1000", **TOKEN}) + b"{" * 10)
    await writer.drain()
    for _ in range(50):
        if state.buffered.used == 1000:
            break
        await asyncio.sleep(0.02)
    assert state.buffered.used == 1000 and state.in_flight == 1
    writer.close()
    for _ in range(100):
        if state.in_flight == 0 and state.connections == 0:
            break
        await asyncio.sleep(0.02)
    assert (state.buffered.used, state.in_flight, state.connections) == (0, 0, 0)
    _no_tracebacks(caplog)
    assert any("closed the connection during the body" in r.getMessage() for r in caplog.records)


AUTH_HEADERS = (
    ("/v1/ingest/trivy", b"X-Relsec-Token"),
    ("/v1/ingest/trivy", b"Authorization"),
    ("/v1/ingest/github", b"X-Hub-Signature-256"),
    ("/v1/ingest/pagerduty", b"X-PagerDuty-Signature"),
)
#: Bytes a header value can carry on the wire (CR and LF would end the header line).
HEADER_BYTES = st.binary(min_size=1, max_size=48).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"") or b"x"
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(AUTH_HEADERS), value=HEADER_BYTES)
def test_any_authentication_header_bytes_are_a_client_error_never_500(
    where: tuple[str, bytes], value: bytes
) -> None:
    path, header = where
    body = b'{"event": {}}'

    async def probe() -> RawResponse:
        async with start() as gw:
            data = _head(path, {"Content-Length": str(len(body))}, header + b": " + value)
            return await _raw(gw.port, data + body)

    answer = asyncio.run(probe())
    assert answer.status in (400, 401), (value, answer)
    if answer.status == 400:  # only bytes HTTP itself forbids in a field value
        assert any((c < 0x20 and c != 0x09) or c == 0x7F for c in value), (value, answer)


@pytest.mark.asyncio
async def test_compressed_bodies_are_refused(gateway: Gateway) -> None:
    resp = await gateway.client.post(
        "/v1/ingest/trivy",
        data=b"\x1f\x8b" + b"\x00" * 20,
        headers={**TOKEN, "Content-Encoding": "gzip"},
    )
    assert resp.status == 415


# --- the server's own bounds ---------------------------------------------------------


@pytest.mark.asyncio
async def test_slow_request_heads_are_closed_after_the_header_timeout() -> None:
    """The probe left 220 clients trickling headers connected after 75 s."""
    async with start(header_timeout_s=0.5) as gw:
        clients = [await asyncio.open_connection(LOOPBACK, gw.port) for _ in range(40)]
        for _, writer in clients:
            writer.write(b"POST /v1/ingest/trivy HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        async def trickle(writer: asyncio.StreamWriter) -> None:
            for _ in range(40):  # one header byte every 0.1 s, never the end of the head
                if writer.is_closing():
                    return
                writer.write(b"X")
                await asyncio.sleep(0.1)

        trickles = [asyncio.create_task(trickle(w)) for _, w in clients]
        started = time.monotonic()
        resp = await gw.client.get("/healthz")  # the server answers others meanwhile
        assert resp.status == 200
        closed = await asyncio.gather(*(_closed_within(r, 3.0) for r, _ in clients))
        elapsed = time.monotonic() - started
        for task in trickles:
            task.cancel()
        for _, writer in clients:
            writer.close()
        assert all(closed) and elapsed < 3.0
        assert gw.running.state.slow_heads == 40


@pytest.mark.asyncio
async def test_a_body_that_does_not_arrive_in_time_is_408() -> None:
    async with start(body_timeout_s=0.5) as gw:
        reader, writer = await asyncio.open_connection(LOOPBACK, gw.port)
        try:
            writer.write(_head("/v1/ingest/trivy", {"Content-Length": "1000", **TOKEN}))
            started = time.monotonic()
            for _ in range(3):
                writer.write(b"{")
                await asyncio.sleep(0.1)
            answer = await asyncio.wait_for(_read_response(reader), 3)
            assert answer.status == 408 and 0.4 < time.monotonic() - started < 2.5
            assert await _closed_within(reader, 3.0)
        finally:
            writer.close()
        assert gw.running.state.buffered.used == 0


@pytest.mark.asyncio
async def test_idle_keep_alive_connections_are_closed() -> None:
    async with start(idle_timeout_s=0.5) as gw:
        reader, writer = await asyncio.open_connection(LOOPBACK, gw.port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = await asyncio.wait_for(_read_response(reader), 3)
            assert answer.status == 200 and answer.headers.get("connection") != "close"
            started = time.monotonic()
            assert await _closed_within(reader, 3.0)
            assert time.monotonic() - started < 2.5
        finally:
            writer.close()


@pytest.mark.asyncio
async def test_requests_per_connection_are_bounded() -> None:
    async with start(max_requests_per_connection=3) as gw:
        reader, writer = await asyncio.open_connection(LOOPBACK, gw.port)
        try:
            for i in range(3):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answer = await asyncio.wait_for(_read_response(reader), 3)
                assert answer.status == 200
                assert (answer.headers.get("connection") == "close") == (i == 2)
            assert await _closed_within(reader, 3.0)
        finally:
            writer.close()


@pytest.mark.asyncio
async def test_connections_over_the_bound_get_503_and_the_bound_frees_up() -> None:
    async with start(max_connections=4, header_timeout_s=5.0) as gw:
        held = [await asyncio.open_connection(LOOPBACK, gw.port) for _ in range(4)]
        for _ in range(50):
            if gw.running.state.connections == 4:
                break
            await asyncio.sleep(0.02)
        answer = await _raw(gw.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.status == 503 and answer.headers["retry-after"] == "1"
        for _, writer in held[:2]:
            writer.close()
        for _ in range(50):
            if gw.running.state.connections <= 2:
                break
            await asyncio.sleep(0.02)
        answer = await _raw(gw.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.status == 200
        assert answer.json()["load"]["refused_connections"] == 1
        for _, writer in held[2:]:
            writer.close()


@pytest.mark.asyncio
async def test_client_errors_are_logged_in_one_line_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with start() as gw:
        bad_requests = (
            b"GARBAGE\r\n\r\n",
            b"POST /v1/ingest/trivy HTTP/1.1\r\nHost: x\r\nX-Relsec-Token: a\x01b\r\n\r\n",
            b"POST /v1/ingest/trivy HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n",
            b"POST /v1/ingest/trivy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"X-Relsec-Token: shared-t0ken\r\n\r\nzz\r\n",
        )
        for data in bad_requests:
            answer = await _raw(gw.port, data)
            assert answer.status == 400, (data, answer)
        resp = await gw.client.post("/v1/ingest/trivy", data=b"{", headers=TOKEN)
        assert resp.status == 400
    _no_tracebacks(caplog)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("relsec")]
    assert sum("400" in line and LOOPBACK in line for line in lines) == len(bad_requests) + 1
    assert not any("a\x01b" in line or "shared-t0ken" in line for line in lines)


# --- CPU-heavy conversion off the event loop ----------------------------------------


def _big_trivy_report(findings: int) -> bytes:
    """One scanner report: thousands of findings on one release at one instant."""
    report = orjson.loads(_body("trivy/checkout-2.4.0.scan1.json"))
    template = report["Results"][0]["Vulnerabilities"][0]
    vulns = []
    for i in range(findings):
        v = copy.deepcopy(template)
        v.update(
            VulnerabilityID=f"CVE-2026-{10000 + i}",
            PkgName=f"lib{i % 700}",
            PkgID=f"lib{i % 700}@1.{i % 13}",
            Severity=("CRITICAL", "HIGH", "MEDIUM", "LOW")[i % 4],
            Description="A flaw was found in the package. " * 20,
        )
        vulns.append(v)
    report["Results"][0]["Vulnerabilities"] = vulns
    return orjson.dumps(report)


class HeavyConversion:
    """The real Trivy adapter, then pure-Python CPU work until released (GIL-bound, like a
    slow adapter); tells when it is running."""

    def __init__(self) -> None:
        self.real = ADAPTERS["trivy"]
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, payload: Any, options: IngestOptions) -> Conversion:
        conversion = self.real(payload, options)
        self.started.set()
        deadline = time.monotonic() + 30
        while not self.release.is_set() and time.monotonic() < deadline:
            sum(i * i for i in range(2000))
        return conversion


@pytest.mark.asyncio
async def test_healthz_answers_while_a_big_report_converts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = _big_trivy_report(5000)
    assert len(report) > 4 * 1024 * 1024
    expected = convert_body("trivy", report, None, IngestOptions(received_at_ms=RECEIVED_MS))
    assert len(expected.events) > 5000
    heavy = HeavyConversion()
    monkeypatch.setitem(ADAPTERS, "trivy", heavy)
    async with start(
        body_bytes={**dict.fromkeys(SOURCES, MAX_BODY), "trivy": 16 * 1024 * 1024},
        buffered_bytes=32 * 1024 * 1024,
    ) as gw:
        upload = asyncio.create_task(gw.client.post("/v1/ingest/trivy", data=report, headers=TOKEN))
        try:
            assert await asyncio.to_thread(heavy.started.wait, 30)
            latencies = []
            for _ in range(10):
                started = time.monotonic()
                resp = await asyncio.wait_for(gw.client.get("/healthz"), 5)
                latencies.append(time.monotonic() - started)
                assert resp.status == 200
                assert (await _json(resp))["load"]["in_flight"] == 1
            assert not upload.done()  # the report was converting all along
            assert max(latencies) < HEALTHZ_BOUND_S, latencies
        finally:
            heavy.release.set()
        resp = await asyncio.wait_for(upload, 30)
        answer = await _json(resp)
        assert resp.status == 202 and answer["event_ids"] == list(expected.event_ids)


@pytest.mark.asyncio
async def test_a_conversion_over_its_time_is_503_and_requests_in_flight_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heavy = HeavyConversion()
    monkeypatch.setitem(ADAPTERS, "trivy", heavy)
    report = _body("trivy/checkout-2.4.0.scan1.json")
    async with start(conversion_timeout_s=0.5, max_in_flight=1) as gw:
        try:
            first = asyncio.create_task(
                gw.client.post("/v1/ingest/trivy", data=report, headers=TOKEN)
            )
            assert await asyncio.to_thread(heavy.started.wait, 10)
            resp = await gw.client.post("/v1/ingest/opsgenie", data=b"{}", headers=TOKEN)
            assert resp.status == 503 and "in flight" in (await _json(resp))["error"]
            resp = await asyncio.wait_for(first, 10)
            assert resp.status == 503 and "did not finish" in (await _json(resp))["error"]
        finally:
            heavy.release.set()
        assert gw.recorder.events == []


# --- CloudEvents: binary, structured, batched -----------------------------------------


def _cdevent(rel: str) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(_body(rel))
    return event


def _cloudevent(cdevent: dict[str, Any], *, base64_data: bool = False) -> dict[str, Any]:
    """The CloudEvent a CDEvents SDK sends: the context mirrored, the CDEvent as data."""
    ctx = cdevent["context"]
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": ctx["id"],
        "source": ctx["source"],
        "type": ctx["type"],
        "datacontenttype": "application/json",
    }
    if "timestamp" in ctx:
        event["time"] = ctx["timestamp"]
    if base64_data:
        event["data_base64"] = base64.b64encode(orjson.dumps(cdevent)).decode()
    else:
        event["data"] = cdevent
    return event


DEPLOYED = "cdevents/service_deployed.v0.5.json"
DETECTED = "cdevents/incident_detected.v0.5.json"
STRUCTURED = {**TOKEN, "Content-Type": "application/cloudevents+json; charset=utf-8"}
BATCH = {**TOKEN, "Content-Type": "application/cloudevents-batch+json"}


@pytest.mark.asyncio
async def test_cloudevents_binary_structured_and_base64_give_the_same_event(
    gateway: Gateway,
) -> None:
    cdevent = _cdevent(DEPLOYED)
    binary = {**TOKEN, "Content-Type": "application/json", "ce-specversion": "1.0"}
    bodies = (
        (binary, orjson.dumps(cdevent)),
        (STRUCTURED, orjson.dumps(_cloudevent(cdevent))),
        (STRUCTURED, orjson.dumps(_cloudevent(cdevent, base64_data=True))),
    )
    answers = []
    for headers, body in bodies:
        resp = await gateway.client.post("/v1/ingest/cdevents", data=body, headers=headers)
        assert resp.status == 202, await resp.text()
        answers.append(await _json(resp))
    assert answers[0]["accepted"] == 1 and answers[0] == answers[1] == answers[2]
    assert len({e.event_id for e in gateway.recorder.events}) == 1


@pytest.mark.asyncio
async def test_cloudevents_batch_converts_each_event_all_or_nothing(gateway: Gateway) -> None:
    deployed, detected = _cdevent(DEPLOYED), _cdevent(DETECTED)
    rolled = _cdevent("cdevents/service_rolledback.v0.5.cloudevent.json")
    batch = [
        _cloudevent(deployed),
        rolled,  # already a CloudEvent
        _cloudevent(detected, base64_data=True),
    ]
    resp = await gateway.client.post("/v1/ingest/cdevents", data=orjson.dumps(batch), headers=BATCH)
    answer = await _json(resp)
    assert resp.status == 202 and answer["accepted"] == 3, answer
    singles: list[str] = []
    for cdevent in (deployed, rolled["data"], detected):
        single = convert_body("cdevents", orjson.dumps(cdevent), None, IngestOptions())
        singles.extend(single.event_ids)
    assert answer["event_ids"] == singles
    assert [e.type for e in gateway.recorder.events] == ["deploy", "deploy", "incident"]

    broken = copy.deepcopy(batch)
    del broken[1]["data"]["subject"]["content"]["environment"]
    resp = await gateway.client.post(
        "/v1/ingest/cdevents", data=orjson.dumps(broken), headers=BATCH
    )
    answer = await _json(resp)
    assert resp.status == 400 and answer["index"] == 1, answer
    assert answer["path"].startswith("$[1].data.subject"), answer
    inside = copy.deepcopy(batch)
    inner = copy.deepcopy(detected)
    del inner["context"]["timestamp"]
    inside[2] = _cloudevent(inner, base64_data=True)
    resp = await gateway.client.post(
        "/v1/ingest/cdevents", data=orjson.dumps(inside), headers=BATCH
    )
    answer = await _json(resp)
    assert resp.status == 400 and answer["index"] == 2 and answer["path"] == "$[2].data_base64"
    assert "$.context.timestamp" in answer["error"] and "decoded" in answer["error"]
    assert len(gateway.recorder.batches) == 1  # the failed batches published nothing

    resp = await gateway.client.post("/v1/ingest/cdevents", data=b"[]", headers=BATCH)
    assert resp.status == 202 and (await _json(resp))["accepted"] == 0


@pytest.mark.asyncio
async def test_cloudevents_envelopes_relsec_cannot_read_are_told_precisely(
    gateway: Gateway,
) -> None:
    cdevent = _cdevent(DEPLOYED)
    good = _cloudevent(cdevent)
    cases: list[tuple[dict[str, str], Any, int, str]] = [
        (STRUCTURED, {**good, "datacontenttype": "application/xml"}, 415, "$.datacontenttype"),
        (STRUCTURED, {**good, "data_base64": "e30="}, 400, "$"),
        (
            STRUCTURED,
            {k: v for k, v in _cloudevent(cdevent, base64_data=True).items()}
            | {"data_base64": "not base64!"},
            400,
            "$.data_base64",
        ),
        (STRUCTURED, {k: v for k, v in good.items() if k != "data"}, 400, "$.data"),
        (STRUCTURED, {**good, "specversion": "0.3"}, 400, "$.specversion"),
        (STRUCTURED, {k: v for k, v in good.items() if k != "id"}, 400, "$.id"),
        (STRUCTURED, [good], 400, "$"),
        (BATCH, good, 400, "$"),
        (BATCH, [good, {**good, "specversion": "1.1"}], 400, "$[1].specversion"),
        (BATCH, [good, "text"], 400, "$[1]"),
    ]
    for headers, body, status, path in cases:
        resp = await gateway.client.post(
            "/v1/ingest/cdevents", data=orjson.dumps(body), headers=headers
        )
        answer = await _json(resp)
        assert (resp.status, answer.get("path")) == (status, path), (body, answer)
    avro = {**TOKEN, "Content-Type": "application/cloudevents+avro", "Content-Length": "10"}
    raw = await _raw(gateway.port, _head("/v1/ingest/cdevents", avro))
    assert raw.status == 415  # refused from the head: the body is never read
    assert gateway.recorder.events == []


# --- pieces ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_byte_budget_waits_a_bounded_time_for_room() -> None:
    budget = ByteBudget(100)
    assert await budget.reserve(60, 0.1)
    assert not await budget.reserve(50, 0.05)  # no room, nobody releases
    assert not await budget.reserve(101, 10)  # can never fit: no wait
    waiter = asyncio.create_task(budget.reserve(50, 2))
    await asyncio.sleep(0.05)
    await budget.release(60)
    assert await asyncio.wait_for(waiter, 2) and budget.used == 50


def test_body_limits_options_and_their_checks() -> None:
    limits = parse_body_limits(["2048", "trivy=4096"])
    assert limits["opsgenie"] == 2048 and limits["trivy"] == 4096
    from agents.errors import ConfigError

    for items in (["jenkins=10"], ["x"]):
        with pytest.raises(ConfigError):
            parse_body_limits(items)
    with pytest.raises(ConfigError) as info:
        GatewayLimits(body_bytes={**dict.fromkeys(SOURCES, 1024), "pagerduty": 3 * 1024 * 1024})
    assert "2097152" in str(info.value)
    with pytest.raises(ConfigError):
        GatewayLimits(buffered_bytes=1024)  # smaller than a report's bound
    with pytest.raises(ConfigError):
        GatewayLimits(unauthenticated_bytes=1024)  # a signed delivery could never be checked
    with pytest.raises(ConfigError):
        GatewayLimits(header_timeout_s=0)
    defaults = GatewayLimits()
    assert defaults.body_limit("trivy") > defaults.body_limit("github")
