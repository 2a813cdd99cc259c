"""The HTTP API in process (no broker): status and timeline of the seed story, freshness
in every answer, readiness, authentication, the Gatekeeper provider's documented shapes."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agents.errors import ConfigError
from agents.model.timefmt import parse_rfc3339_ms
from streams.api.server import Api, ApiOptions
from tests.api.helpers import SEED_STORY, build_model, load_events

SEED_NOW = parse_rfc3339_ms("2026-03-05T00:00:00Z")
TOKEN = "t" * 32


async def client_for(built: Any, **options: Any) -> TestClient:  # type: ignore[type-arg]
    api = Api(built.model, ApiOptions(**options))
    client: TestClient = TestClient(TestServer(api.app()))  # type: ignore[type-arg]
    await client.start_server()
    return client


@pytest.mark.asyncio
async def test_status_of_the_seed_story() -> None:
    built = build_model(load_events(SEED_STORY), SEED_NOW)
    client = await client_for(built)
    try:
        resp = await client.get("/v1/services/checkout-api")
        assert resp.status == 200
        body = await resp.json()
    finally:
        await client.close()
    prod = body["environments"]["production"]
    assert prod["running"]["release"] == "2.8.0"
    assert prod["running"]["rolled_back_from_recently"] is True
    assert prod["running"]["clear"] is False
    assert prod["open_incidents"] == []
    assert [r["from_release"] for r in prod["incident_linked_rollbacks"]] == ["2.8.0"]
    assert [d["release"] for d in prod["recent_deploys"]][:2] == ["2.8.0", "2.7.0"]
    assert prod["recent_deploys"][1]["action"] == "rollback"
    assert prod["recommendation"]["release"] is None
    flags = body["active_flags"]["2.7.0"]
    assert flags["count"] == 1 and flags["by_severity"] == {"critical": 1}
    rules = sorted(a["rule"] for a in body["active_alerts"])
    assert rules == [
        "flag-raised-on-running-release",
        "redeploy-of-rolled-back-release",
        "release-flip-flop",
        "rollback-to-flagged-release",
    ]
    assert len(prod["active_alerts"]) == 4
    assert body["newest_event_at"] == "2026-03-04T14:00:00Z"
    fresh = body["freshness"]["changelog"]
    assert fresh["caught_up"] is True and fresh["records_behind"] == 0


@pytest.mark.asyncio
async def test_index_timeline_and_unknown_service() -> None:
    built = build_model(load_events(SEED_STORY), SEED_NOW)
    client = await client_for(built)
    try:
        index = await (await client.get("/v1/services")).json()
        timeline = await (await client.get("/v1/services/checkout-api/timeline")).json()
        missing = await client.get("/v1/services/nope")
        assert missing.status == 404
        assert "freshness" in await missing.json()
    finally:
        await client.close()
    [row] = index["services"]
    assert row["service"] == "checkout-api" and row["conflicts"] == 4
    assert row["worst_severity"] == "critical"
    t = timeline["timeline"]
    prod = t["environments"]["production"]
    assert [s["release"] for s in prod["segments"]] == ["2.7.0", "2.8.0", "2.7.0", "2.8.0"]
    assert [d["action"] for d in prod["deploys"]] == ["deploy", "deploy", "rollback", "deploy"]
    [span] = prod["incidents"]
    assert span["incident_id"] == "INC-4711"
    assert span["from"] == parse_rfc3339_ms("2026-03-04T09:00:00Z")
    assert span["to"] == parse_rfc3339_ms("2026-03-04T09:40:00Z")
    [flag] = t["flags"]
    assert flag["release"] == "2.7.0" and flag["to"] is None and flag["ids"] == ["CVE-2026-20417"]
    assert len(timeline["alerts"]) == 4
    assert timeline["environments"]["production"]["running"]["release"] == "2.8.0"
    assert timeline["freshness"]["changelog"]["caught_up"] is True


@pytest.mark.asyncio
async def test_readiness_and_the_check_wait_for_the_changelog() -> None:
    built = build_model(load_events(SEED_STORY), SEED_NOW, caught_up=False)
    client = await client_for(built)
    try:
        health = await client.get("/healthz")
        assert health.status == 503
        assert (await health.json())["status"] == "loading"
        resp = await client.get(
            "/v1/check",
            params={"service": "checkout-api", "environment": "production", "release": "2.7.0"},
        )
        assert resp.status == 503
        assert "catching up" in (await resp.json())["error"]
        for progress in built.model.progress.values():
            progress.assign([0])
            progress.at_end(0, 100, SEED_NOW)
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json())["check_ready"] is True
        resp = await client.post(
            "/v1/check",
            json={
                "service": "checkout-api",
                "environment": "production",
                "release": "2.7.0",
                "action": "rollback",
            },
        )
        assert resp.status == 200
        answer = await resp.json()
        assert answer["verdict"] == "deny"
        assert answer["freshness"]["changelog"]["caught_up"] is True
        bad = await client.get("/v1/check", params={"service": "x", "environment": "y"})
        assert bad.status == 400 and (await bad.json())["field"] == "release"
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_a_token_guards_every_answer_but_not_the_page_or_health() -> None:
    built = build_model(load_events(SEED_STORY), SEED_NOW)
    client = await client_for(built, token=TOKEN)
    try:
        assert (await client.get("/v1/services")).status == 401
        wrong = await client.get("/v1/services", headers={"Authorization": "Bearer " + "x" * 32})
        assert wrong.status == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
        ok = await client.get("/v1/services", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status == 200
        assert (await client.get("/healthz")).status == 200
        page = await client.get("/ui/")
        assert page.status == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert (await client.get("/ui/assets/..%2Fserver.py")).status == 404
    finally:
        await client.close()


def test_off_loopback_the_server_refuses_to_start_without_a_token() -> None:
    with pytest.raises(ConfigError) as err:
        ApiOptions(host="0.0.0.0").validate()
    assert "RELSEC_API_TOKEN" in str(err.value)
    with pytest.raises(ConfigError):
        ApiOptions(host="0.0.0.0", token="short").validate()
    ApiOptions(host="0.0.0.0", token=TOKEN).validate()
    ApiOptions(host="127.0.0.1").validate()
    ApiOptions(host="::1").validate()


@pytest.mark.asyncio
async def test_gatekeeper_provider_answers_its_documented_shape() -> None:
    from urllib.parse import urlencode

    built = build_model(load_events(SEED_STORY), SEED_NOW)
    client = await client_for(built)
    deny_key = urlencode(
        {
            "service": "checkout-api",
            "environment": "production",
            "release": "2.7.0",
            "action": "rollback",
        }
    )
    allow_key = urlencode(
        {"service": "checkout-api", "environment": "production", "release": "2.9.0"}
    )
    bad_key = "service=checkout-api"
    try:
        resp = await client.post(
            "/v1/gatekeeper/provider",
            json={
                "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
                "kind": "ProviderRequest",
                "request": {"keys": [deny_key, allow_key, bad_key]},
            },
        )
        assert resp.status == 200
        body = await resp.json()
        bad = await client.post("/v1/gatekeeper/provider", json={"kind": "Other"})
        assert bad.status == 400
    finally:
        await client.close()
    assert body["apiVersion"] == "externaldata.gatekeeper.sh/v1beta1"
    assert body["kind"] == "ProviderResponse"
    assert set(body["response"]) <= {"idempotent", "items", "systemError"}
    deny, allow, error = body["response"]["items"]
    assert deny["key"] == deny_key and deny["value"]["verdict"] == "deny"
    assert deny["value"]["reasons"][0].startswith("rollback-to-flagged-release (deny)")
    assert allow["value"] == {"verdict": "allow", "reasons": [], "recommended_release": None}
    assert error["key"] == bad_key and "error" in error and "value" not in error
    for item in body["response"]["items"]:
        assert set(item) <= {"key", "value", "error"}


@pytest.mark.asyncio
async def test_a_scanner_report_of_thousands_of_findings_stays_a_small_answer() -> None:
    from tests.engine.factory import deploy, flag, ms

    findings = [
        flag(f"CVE-2026-{i:05d}", "2.0", ms(hours=2), severity="high" if i % 10 else "critical")
        for i in range(2000)
    ]
    events = [
        deploy("2.0", ms(hours=1)),
        *findings,
        deploy("2.1", ms(hours=3)),
        deploy("2.0", ms(hours=4), event_id="back-to-2.0"),
    ]
    built = build_model(events, ms(hours=5))
    client = await client_for(built)
    try:
        status = await (await client.get("/v1/services/payments-api")).json()
        timeline = await (await client.get("/v1/services/payments-api/timeline")).json()
    finally:
        await client.close()
    # 2000 flag-raised alerts (one per finding on the running release) + the deploy back to 2.0.
    assert status["active_alert_count"] == 2001
    assert status["active_alerts_by_rule"]["flag-raised-on-running-release"] == 2000
    assert len(status["active_alerts"]) == 200
    flagged = next(a for a in status["active_alerts"] if a["rule"] == "flagged-release-deployed")
    assert len(flagged["evidence"]) == 10 and flagged["evidence_count"] == 2001
    # The engine bounds the summary itself (names a few ids, then the count).
    assert len(flagged["summary"]) <= 1000 and "2,000 flags" in flagged["summary"]
    assert status["active_flags"]["2.0"]["count"] == 2000
    assert len(status["active_flags"]["2.0"]["flags"]) == 100
    assert status["active_flags"]["2.0"]["truncated"] is True
    groups = {g["rule"]: g for g in timeline["alerts"]}
    assert groups["flag-raised-on-running-release"]["count"] == 2000
    assert len(groups["flag-raised-on-running-release"]["alert_ids"]) == 20
    spans = timeline["timeline"]["flags"]
    assert sorted((s["severity"], s["count"]) for s in spans) == [("critical", 200), ("high", 1800)]


@pytest.mark.asyncio
async def test_an_open_incident_is_in_the_status_until_it_resolves() -> None:
    from tests.engine.factory import ENV, SERVICE, deploy, incident, ms

    opened = [deploy("1.0.0", ms(hours=1)), incident("INC-7", ms(hours=2), severity="sev1")]
    now = ms(hours=3)
    for events, expected in (
        (opened, ["INC-7"]),
        ([*opened, incident("INC-7", ms(hours=2, minutes=30), status="resolved")], []),
    ):
        client = await client_for(build_model(events, now))
        try:
            body = await (await client.get(f"/v1/services/{SERVICE}")).json()
        finally:
            await client.close()
        open_now = body["environments"][ENV]["open_incidents"]
        assert [i["incident_id"] for i in open_now] == expected
