"""Ingest against a real Apache Kafka broker: the gateway end to end and ``ingest publish``."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agents.model.events import parse_event
from streams.cli import main
from streams.codecs import make_codec
from streams.ingest import SOURCES
from streams.ingest.gateway import GatewayConfig, ProducerPublisher, make_app
from streams.ingest.signatures import Secrets, sign_pagerduty
from streams.kafka.topics import create_topics
from streams.settings import Settings
from tests.kafka_records import read_topic

from .helpers import PAYLOADS

pytestmark = pytest.mark.kafka


@pytest.mark.asyncio
async def test_signed_pagerduty_delivery_lands_on_the_incidents_topic(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings
    create_topics(settings, partitions=3)
    config = GatewayConfig(
        secrets=Secrets.from_env(SOURCES, {"RELSEC_INGEST_PAGERDUTY_SECRET": "pd-s3cret"})
    )
    publisher = ProducerPublisher(settings)
    client = TestClient(TestServer(make_app(publisher, config), host="127.0.0.1"))
    await client.start_server()
    body = (PAYLOADS / "pagerduty" / "incident.triggered.json").read_bytes()
    try:
        bad = await client.post(
            "/v1/ingest/pagerduty",
            data=body.replace(b"5xx", b"4xx"),
            headers={"X-PagerDuty-Signature": sign_pagerduty(b"pd-s3cret", body)},
        )
        assert bad.status == 401
        for _ in range(2):  # a delivery and its redelivery
            resp = await client.post(
                "/v1/ingest/pagerduty",
                data=body,
                headers={"X-PagerDuty-Signature": sign_pagerduty(b"pd-s3cret", body)},
            )
            assert resp.status == 202, await resp.text()
    finally:
        await client.close()
        publisher.close()

    records = read_topic(settings, settings.topics.incidents, expected=2)
    assert len(records) == 2  # the badly signed request published nothing
    codec = make_codec(settings)
    events = [parse_event(codec.decode_event(r.value(), "incident"), "incident") for r in records]
    assert {r.key() for r in records} == {b"checkout"}
    assert {e.event_id for e in events} == {
        "pagerduty:01DEN7TVKQ0RMJ1DTGCN7U4SHS"
    }  # a duplicate, not new
    e = events[0]
    assert (e.incident_id, e.status, e.severity, e.service, e.environment) == (
        "Q1W2E3R4T5Y6U7",
        "opened",
        "sev1",
        "checkout",
        "production",
    )
    assert read_topic(settings, settings.topics.deploys, expected=0, timeout_s=1) == []


def test_ingest_publish_cli_writes_flags(
    kafka_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = kafka_settings
    create_topics(settings, partitions=3)
    status = main(
        [
            "ingest",
            "publish",
            "trivy",
            str(PAYLOADS / "trivy" / "checkout-2.4.0.scan2.json"),
            "--previous",
            str(PAYLOADS / "trivy" / "checkout-2.4.0.scan1.json"),
            "--bootstrap-servers",
            settings.bootstrap_servers,
            "--topic-prefix",
            settings.topics.prefix,
        ]
    )
    assert status == 0, capsys.readouterr().err
    records = read_topic(settings, settings.topics.security_flags, expected=4)
    codec = make_codec(settings)
    flags = [codec.decode_event(r.value(), "security_flag") for r in records]
    assert sorted((f["flag_id"], f["status"]) for f in flags) == [
        ("CVE-2026-1111", "raised"),
        ("CVE-2026-2222", "cleared"),
        ("CVE-2026-3333", "raised"),
        ("GHSA-9wv6-86v2-598j", "raised"),
    ]
    assert {r.key() for r in records} == {b"checkout"}
    assert "published 4 event(s)" in capsys.readouterr().err
    assert {f["service"] for f in flags} == {"checkout"}
