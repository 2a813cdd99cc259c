"""The gateway's HTTP contract, with aiohttp's test server and a recording publisher.

The recording publisher stands in for Kafka only here, to see exactly what a
request would publish; test_ingest_kafka.py runs the same path against a real broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from agents.model.events import Event
from streams.ingest import SOURCES
from streams.ingest.gateway import GatewayConfig, PublishFailed, make_app
from streams.ingest.signatures import Secrets, sign_github, sign_pagerduty

from .helpers import PAYLOADS, RECEIVED_MS

ENV = {
    "RELSEC_INGEST_GITHUB_SECRET": "gh-s3cret",
    "RELSEC_INGEST_PAGERDUTY_SECRET": "pd-s3cret",
    "RELSEC_INGEST_TOKEN": "shared-t0ken",
}
MAX_BODY = 64 * 1024


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


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[tuple[TestClient, Recorder]]:
    recorder = Recorder()
    config = GatewayConfig(
        secrets=Secrets.from_env(SOURCES, ENV),
        max_body_bytes=MAX_BODY,
        mappings={"opsgenie": (("service", "$.alert.alias"),)},
        clock_ms=lambda: RECEIVED_MS,
    )
    client = TestClient(TestServer(make_app(recorder, config)))
    await client.start_server()
    try:
        yield client, recorder
    finally:
        await client.close()


def _body(rel: str) -> bytes:
    return (PAYLOADS / rel).read_bytes()


async def _json(resp: Any) -> dict[str, Any]:
    return orjson.loads(await resp.read())


@pytest.mark.asyncio
async def test_signed_pagerduty_delivery_is_published(gateway: tuple[TestClient, Recorder]) -> None:
    client, recorder = gateway
    body = _body("pagerduty/incident.triggered.json")
    resp = await client.post(
        "/v1/ingest/pagerduty",
        data=body,
        headers={
            "X-PagerDuty-Signature": sign_pagerduty(b"pd-s3cret", body),
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 202
    answer = await _json(resp)
    assert answer == {
        "accepted": 1,
        "event_ids": ["pagerduty:01DEN7TVKQ0RMJ1DTGCN7U4SHS"],
        "skipped": [],
    }
    (event,) = recorder.events
    assert (event.type, event.incident_id, event.status, event.service) == (
        "incident",
        "Q1W2E3R4T5Y6U7",
        "opened",
        "checkout",
    )


@pytest.mark.asyncio
async def test_unsigned_bad_and_tampered_requests_get_401_and_publish_nothing(
    gateway: tuple[TestClient, Recorder],
) -> None:
    client, recorder = gateway
    body = _body("pagerduty/incident.triggered.json")
    good = sign_pagerduty(b"pd-s3cret", body)
    tampered = body.replace(b"checkout: 5xx", b"checkout: 4xx")
    assert tampered != body and len(tampered) == len(body)
    cases = [
        ({}, body),
        ({"X-PagerDuty-Signature": sign_pagerduty(b"wrong", body)}, body),
        ({"X-PagerDuty-Signature": good}, tampered),
    ]
    for headers, data in cases:
        resp = await client.post("/v1/ingest/pagerduty", data=data, headers=headers)
        assert resp.status == 401
        assert "error" in await _json(resp)
    gh = _body("github/deployment_status.success.json")
    resp = await client.post(
        "/v1/ingest/github", data=gh, headers={"X-Relsec-Token": "shared-t0ken"}
    )
    assert resp.status == 401
    resp = await client.post("/v1/ingest/trivy", data=_body("trivy/checkout-2.4.0.scan1.json"))
    assert resp.status == 401
    assert recorder.events == []


@pytest.mark.asyncio
async def test_github_signed_with_event_header(gateway: tuple[TestClient, Recorder]) -> None:
    client, recorder = gateway
    body = _body("github/deployment_status.success.json")
    headers = {
        "X-Hub-Signature-256": sign_github(b"gh-s3cret", body),
        "X-GitHub-Event": "deployment_status",
    }
    resp = await client.post("/v1/ingest/github", data=body, headers=headers)
    assert resp.status == 202 and (await _json(resp))["accepted"] == 1
    ping = _body("github/ping.json")
    resp = await client.post(
        "/v1/ingest/github",
        data=ping,
        headers={"X-Hub-Signature-256": sign_github(b"gh-s3cret", ping), "X-GitHub-Event": "ping"},
    )
    answer = await _json(resp)
    assert resp.status == 202 and answer["accepted"] == 0 and "ping" in answer["skipped"][0]
    assert [e.event_id for e in recorder.events] == ["github:deployment_status:77001"]


@pytest.mark.asyncio
async def test_malformed_payloads_get_400_with_reason_and_path(
    gateway: tuple[TestClient, Recorder],
) -> None:
    client, recorder = gateway
    token = {"X-Relsec-Token": "shared-t0ken"}
    resp = await client.post("/v1/ingest/trivy", data=b'{"SchemaVersion": 2,', headers=token)
    answer = await _json(resp)
    assert resp.status == 400 and answer["path"] == "$" and "not valid JSON" in answer["error"]
    report = orjson.loads(_body("trivy/checkout-2.4.0.scan1.json"))
    del report["Results"][0]["Vulnerabilities"][1]["VulnerabilityID"]
    resp = await client.post("/v1/ingest/trivy", data=orjson.dumps(report), headers=token)
    answer = await _json(resp)
    assert (
        resp.status == 400 and answer["path"] == "$.Results[0].Vulnerabilities[1].VulnerabilityID"
    )
    body = orjson.loads(_body("pagerduty/incident.triggered.json"))
    del body["event"]["occurred_at"]
    raw = orjson.dumps(body)
    resp = await client.post(
        "/v1/ingest/pagerduty",
        data=raw,
        headers={"X-PagerDuty-Signature": sign_pagerduty(b"pd-s3cret", raw)},
    )
    assert resp.status == 400 and (await _json(resp))["path"] == "$.event.occurred_at"
    assert recorder.events == []


@pytest.mark.asyncio
async def test_body_size_is_bounded(gateway: tuple[TestClient, Recorder]) -> None:
    client, recorder = gateway
    big = b'{"pad": "' + b"x" * (MAX_BODY + 10) + b'"}'
    resp = await client.post(
        "/v1/ingest/trivy", data=big, headers={"X-Relsec-Token": "shared-t0ken"}
    )
    assert resp.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the read itself is bounded
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"x" * 1024

    resp = await client.post(
        "/v1/ingest/trivy", data=chunks(), headers={"X-Relsec-Token": "shared-t0ken"}
    )
    assert resp.status == 413
    assert recorder.events == []


@pytest.mark.asyncio
async def test_token_sources_mapping_and_unknown_source(
    gateway: tuple[TestClient, Recorder],
) -> None:
    client, recorder = gateway
    resp = await client.post(
        "/v1/ingest/opsgenie",
        data=_body("opsgenie/create.json"),
        headers={"Authorization": "Bearer shared-t0ken"},
    )
    assert resp.status == 202
    assert recorder.events[-1].service == "checkout-latency"  # the gateway's per-source --map
    resp = await client.post(
        "/v1/ingest/trivy",
        data=_body("trivy/checkout-2.4.0.scan1.json"),
        headers={"X-Relsec-Token": "shared-t0ken"},
    )
    answer = await _json(resp)
    assert resp.status == 202 and answer["accepted"] == 4 and answer["skipped"]
    resp = await client.post(
        "/v1/ingest/jenkins", data=b"{}", headers={"X-Relsec-Token": "shared-t0ken"}
    )
    assert resp.status == 404
    resp = await client.get("/v1/ingest/trivy")
    assert resp.status == 405


@pytest.mark.asyncio
async def test_publish_failure_is_503(gateway: tuple[TestClient, Recorder]) -> None:
    client, recorder = gateway
    recorder.fail = True
    resp = await client.post(
        "/v1/ingest/opsgenie",
        data=_body("opsgenie/create.json"),
        headers={"X-Relsec-Token": "shared-t0ken"},
    )
    assert resp.status == 503 and "broker down" in (await _json(resp))["error"]


@pytest.mark.asyncio
async def test_healthz_counts(gateway: tuple[TestClient, Recorder]) -> None:
    client, _ = gateway
    await client.post("/v1/ingest/trivy", data=b"{}")
    resp = await client.get("/healthz")
    answer = await _json(resp)
    assert resp.status == 200 and answer["status"] == "ok" and answer["rejected"] == 1
    assert set(answer["sources"]) == set(SOURCES)


@pytest.mark.asyncio
async def test_unreachable_broker_is_503_within_the_bound() -> None:
    import time

    from streams.ingest.gateway import ProducerPublisher
    from streams.settings import Settings

    publisher = ProducerPublisher(Settings(bootstrap_servers="127.0.0.1:1"), timeout_s=1.0)
    config = GatewayConfig(secrets=Secrets.from_env(SOURCES, ENV), clock_ms=lambda: RECEIVED_MS)
    client = TestClient(TestServer(make_app(publisher, config)))
    await client.start_server()
    try:
        started = time.monotonic()
        resp = await client.post(
            "/v1/ingest/opsgenie",
            data=_body("opsgenie/create.json"),
            headers={"X-Relsec-Token": "shared-t0ken"},
        )
        assert resp.status == 503 and "not written" in (await _json(resp))["error"]
        assert time.monotonic() - started < 10
    finally:
        await client.close()
        publisher.close()
