"""The gateway resolves through a catalog it re-reads when the files change (SPEC §8).

aiohttp's test server and a recording publisher, as in test_ingest_gateway.py; only
the catalog side is tested here: names resolved, unresolved ones counted in the
answer and ``/healthz``, a changed catalog picked up without a restart, a broken
change refused while the last good catalog stays in use, ``--require-catalog``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.model.events import Event
from streams.catalog import CatalogSource
from streams.ingest import SOURCES
from streams.ingest.gateway import GatewayConfig, make_app
from streams.ingest.signatures import Secrets, sign_pagerduty

from .helpers import PAYLOADS, RECEIVED_MS

SECRET = "pd-s3cret"
SHOP = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: shop
  annotations:
    relsec.io/names: {names}
spec: {{type: service, owner: shop, lifecycle: production}}
"""


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


def _write(path: Path, text: str, stamp: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(stamp, stamp))  # a new mtime even on a coarse file-system clock


async def _post(client: Any, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"X-PagerDuty-Signature": sign_pagerduty(SECRET.encode(), body)}
    resp = await client.post("/v1/ingest/pagerduty", data=body, headers=headers)
    return resp.status, orjson.loads(await resp.read())


async def _health(client: Any) -> dict[str, Any]:
    resp = await client.get("/healthz")
    answer: dict[str, Any] = orjson.loads(await resp.read())
    return answer


def _gateway(source: CatalogSource, require: bool = False) -> Any:
    from aiohttp.test_utils import TestClient, TestServer

    config = GatewayConfig(
        secrets=Secrets.from_env(SOURCES, {"RELSEC_INGEST_PAGERDUTY_SECRET": SECRET}),
        clock_ms=lambda: RECEIVED_MS,
        catalog=source,
        require_catalog=require,
    )
    recorder = Recorder()
    return TestClient(TestServer(make_app(recorder, config))), recorder


@pytest.mark.asyncio
async def test_the_gateway_follows_its_catalog(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog-info.yaml"
    _write(catalog, SHOP.format(names="storefront"), 1_000_000_000)
    source = CatalogSource([tmp_path], check_interval_s=0.0)
    client, recorder = _gateway(source)
    body = (PAYLOADS / "pagerduty/incident.triggered.json").read_bytes()  # service "checkout"
    await client.start_server()
    try:
        status, answer = await _post(client, body)
        assert status == 202 and answer["unresolved"] == ["checkout"]
        health = await _health(client)
        assert health["unresolved"] == 1
        assert health["catalog"]["unresolved_by_source"] == {"pagerduty": 1}
        assert health["catalog"]["recent_unresolved"] == ["checkout"]
        assert recorder.events[-1].service == "checkout"  # kept as the tool names it
        # the catalog learns the name: the next delivery resolves, no restart
        _write(catalog, SHOP.format(names="storefront, checkout"), 2_000_000_000)
        status, answer = await _post(client, body)
        assert status == 202 and answer["unresolved"] == []
        assert recorder.events[-1].service == "shop"
        assert (await _health(client))["catalog"]["loads"] == 2
        # a broken change: logged, refused, and the last good catalog stays in use
        _write(tmp_path / "clash.yaml", SHOP.format(names="checkout"), 3_000_000_000)
        status, answer = await _post(client, body)
        assert status == 202 and recorder.events[-1].service == "shop"
        catalog_health = (await _health(client))["catalog"]
        assert catalog_health["reload_failures"] == 1
        assert "conflict" in catalog_health["last_error"]
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_require_catalog_accepts_the_delivery_and_publishes_nothing(tmp_path: Path) -> None:
    _write(tmp_path / "c.yaml", SHOP.format(names="storefront"), 1_000_000_000)
    client, recorder = _gateway(CatalogSource([tmp_path]), require=True)
    body = (PAYLOADS / "pagerduty/incident.triggered.json").read_bytes()
    await client.start_server()
    try:
        status, answer = await _post(client, body)
        # 202: a retry would not help; the reason says what to add to the catalog
        assert status == 202 and answer["accepted"] == 0 and recorder.events == []
        assert "not in the catalog" in answer["skipped"][0]
        assert "--require-catalog" in answer["skipped"][0]
    finally:
        await client.close()
