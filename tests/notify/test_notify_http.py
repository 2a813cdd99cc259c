"""Delivery over real HTTP to a local recording server: retries, dedup keys, resolve, routing."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from notify_helpers import Recorder

from streams.notify.config import NotifyConfig, parse_config
from streams.notify.deliver import Notifier, OutboundRequest, urllib_transport
from streams.notify.render import verify_signature

MakeAlert = Callable[..., dict[str, Any]]

ENV = {
    "PD_SRE": "pd-sre-routing-key-0001",
    "PD_SEC": "pd-sec-routing-key-0002",
    "SLACK_SEC": "",  # filled per test with the recorder URL
    "HOOK_SECRET": "webhook-hmac-secret",
}
FAST_RETRY = """
[retry]
max_attempts = 4
initial_backoff_ms = 20
max_backoff_ms = 200
max_total_ms = 5000
request_timeout_ms = 2000
"""


def config_for(rec: Recorder, extra_retry: str = FAST_RETRY) -> tuple[NotifyConfig, dict[str, str]]:
    env = dict(ENV, SLACK_SEC=rec.url("/services/T0/B0/SLACKSECRET"))
    text = f"""
{extra_retry}
[[destination]]
name = "pd-sre"
type = "pagerduty"
audiences = ["sre"]
url = "{rec.url("/pd-sre")}"
routing_key_env = "PD_SRE"

[[destination]]
name = "pd-security"
type = "pagerduty"
audiences = ["security"]
url = "{rec.url("/pd-sec")}"
routing_key_env = "PD_SEC"

[[destination]]
name = "slack-security"
type = "slack"
audiences = ["security"]
url_env = "SLACK_SEC"

[[destination]]
name = "hook"
type = "webhook"
audiences = ["sre", "security"]
url = "{rec.url("/hook")}"
secret_env = "HOOK_SECRET"
"""
    return parse_config(text, env=env), env


def test_routing_by_audience_hits_only_the_audiences_destinations(
    recorder: Recorder, make_alert: MakeAlert
) -> None:
    config, _ = config_for(recorder)
    notifier = Notifier(config)
    try:
        results = notifier.deliver(make_alert(notify=["sre"]))
        assert [r.destination.name for r in results] == ["pd-sre", "hook"]
        assert all(r.outcome.ok and r.outcome.attempts == 1 for r in results)
        assert {r.path for r in recorder.requests} == {"/pd-sre/v2/enqueue", "/hook"}

        recorder.requests.clear()
        results = notifier.deliver(make_alert(notify=["security"]))
        assert [r.destination.name for r in results] == ["pd-security", "slack-security", "hook"]
        assert sorted(r.path for r in recorder.requests) == [
            "/hook",
            "/pd-sec/v2/enqueue",
            "/services/T0/B0/SLACKSECRET",
        ]
        pd = recorder.on("/pd-sec/v2/enqueue")[0].json()
        assert pd["routing_key"] == ENV["PD_SEC"]
        slack = recorder.on("/services/T0/B0/SLACKSECRET")[0].json()
        assert "rollback-to-flagged-release" in slack["text"]
    finally:
        notifier.close()


def test_dedup_key_and_retracted_resolves(recorder: Recorder, make_alert: MakeAlert) -> None:
    config, _ = config_for(recorder)
    notifier = Notifier(config)
    try:
        firing = make_alert(notify=["sre"])
        notifier.deliver(firing)
        notifier.deliver(make_alert(notify=["sre"], status="retracted"))
        other = make_alert(notify=["sre"], trigger="argocd-9999")
        notifier.deliver(other)
    finally:
        notifier.close()
    events = [r.json() for r in recorder.on("/pd-sre/v2/enqueue")]
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", firing["alert_id"]),
        ("resolve", firing["alert_id"]),
        ("trigger", other["alert_id"]),
    ]
    assert firing["alert_id"] != other["alert_id"]
    assert all(e["routing_key"] == ENV["PD_SRE"] for e in events)
    hooks = [r.json() for r in recorder.on("/hook")]
    assert [h["status"] for h in hooks] == ["firing", "retracted", "firing"]


def test_webhook_body_and_signature(recorder: Recorder, make_alert: MakeAlert) -> None:
    config, _ = config_for(recorder)
    notifier = Notifier(config)
    alert = make_alert(notify=["sre"])
    try:
        notifier.deliver(alert)
    finally:
        notifier.close()
    (hook,) = recorder.on("/hook")
    assert hook.json() == alert
    assert hook.headers["Content-Type"] == "application/json"
    assert hook.headers["X-Relsec-Alert-Id"] == alert["alert_id"]
    assert verify_signature(hook.body, ENV["HOOK_SECRET"], hook.headers["X-Relsec-Signature-256"])
    assert not verify_signature(
        hook.body + b" ", ENV["HOOK_SECRET"], hook.headers["X-Relsec-Signature-256"]
    )


def test_retries_500_and_429_then_succeeds(recorder: Recorder, make_alert: MakeAlert) -> None:
    config, _ = config_for(recorder)
    recorder.script(
        "/pd-sre/v2/enqueue",
        (500, {}, b"oops"),
        (429, {"Retry-After": "1"}, b'{"status":"throttled"}'),
        (503, {}, b""),
    )
    notifier = Notifier(config)
    started = time.monotonic()
    try:
        results = notifier.deliver(make_alert(notify=["sre"]))
    finally:
        notifier.close()
    elapsed = time.monotonic() - started
    pd = next(r for r in results if r.destination.name == "pd-sre")
    assert pd.outcome.ok and pd.outcome.attempts == 4 and pd.outcome.status == 202
    assert len(recorder.on("/pd-sre/v2/enqueue")) == 4
    assert pd.outcome.waits_ms[1] >= 1000  # Retry-After: 1 honoured
    assert elapsed >= 1.0
    bodies = {r.body for r in recorder.on("/pd-sre/v2/enqueue")}
    assert len(bodies) == 1  # every attempt sends the same event
    hook = next(r for r in results if r.destination.name == "hook")
    assert hook.outcome.attempts == 1  # destinations are retried independently


def test_gives_up_and_reports_without_leaking_secrets(
    recorder: Recorder, make_alert: MakeAlert
) -> None:
    config, _ = config_for(recorder)
    recorder.script("/pd-sre/v2/enqueue", *[(502, {}, ENV["PD_SRE"].encode())] * 10)
    recorder.script("/hook", (400, {}, b'{"error":"bad payload"}'))
    notifier = Notifier(config)
    try:
        results = notifier.deliver(make_alert(notify=["sre"]))
    finally:
        notifier.close()
    by_name = {r.destination.name: r.outcome for r in results}
    assert not by_name["pd-sre"].ok and by_name["pd-sre"].attempts == 4
    assert by_name["pd-sre"].status == 502
    assert "gave up after 4 attempts" in by_name["pd-sre"].detail
    assert ENV["PD_SRE"] not in by_name["pd-sre"].detail  # the echoed key is scrubbed
    assert "***" in by_name["pd-sre"].detail
    assert not by_name["hook"].ok and by_name["hook"].attempts == 1  # 400 is not retried
    assert "bad payload" in by_name["hook"].detail
    assert len(recorder.on("/hook")) == 1


def test_connection_refused_is_retried_then_given_up(make_alert: MakeAlert) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = (
        FAST_RETRY
        + f"""
[[destination]]
name = "gone"
type = "webhook"
audiences = ["sre"]
url = "http://127.0.0.1:{port}/hook"
"""
    )
    notifier = Notifier(parse_config(text, env={}))
    try:
        (result,) = notifier.deliver(make_alert(notify=["sre"]))
    finally:
        notifier.close()
    assert not result.outcome.ok and result.outcome.attempts == 4
    assert result.outcome.status is None
    assert "connection failed" in result.outcome.detail
    assert str(port) not in result.outcome.detail  # no URL in details


def test_redirects_are_not_followed(recorder: Recorder) -> None:
    recorder.script("/moved", (307, {"Location": recorder.url("/elsewhere")}, b""))
    result = urllib_transport(
        OutboundRequest(recorder.url("/moved"), b"{}", (("Content-Type", "application/json"),)),
        2000,
    )
    assert result.status == 307 and not result.ok and not result.retryable
    assert recorder.on("/elsewhere") == []


def test_timeout_is_a_retryable_failure() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        result = urllib_transport(OutboundRequest(f"http://127.0.0.1:{port}/", b"{}", ()), 300)
    finally:
        server.close()
    assert result.status is None and result.retryable
    assert "timed out" in result.detail


def test_stop_interrupts_a_retry_wait(recorder: Recorder, make_alert: MakeAlert) -> None:
    slow = FAST_RETRY.replace("initial_backoff_ms = 20", "initial_backoff_ms = 3000").replace(
        "max_backoff_ms = 200", "max_backoff_ms = 3000"
    )
    config, _ = config_for(recorder, slow)
    recorder.script("/hook", (503, {}, b""))
    stop = threading.Event()
    notifier = Notifier(config, stop=stop)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    try:
        results = notifier.deliver(make_alert(notify=["sre"]))
    finally:
        notifier.close()
    assert time.monotonic() - started < 2.5
    hook = next(r for r in results if r.destination.name == "hook")
    assert hook.outcome.interrupted and not hook.outcome.ok


def test_requests_to_one_destination_are_spaced_by_min_interval() -> None:
    """PagerDuty takes 120 events a minute per key: a destination's requests keep apart."""
    clock = [0]
    slept: list[int] = []
    sent_at: list[int] = []

    def transport(req: OutboundRequest, timeout_ms: int) -> Any:
        from streams.notify.retry import AttemptResult

        sent_at.append(clock[0])
        return AttemptResult(202, "HTTP 202")

    config = parse_config(
        '[[destination]]\nname = "pd"\ntype = "pagerduty"\naudiences = ["sre"]\n'
        'routing_key_env = "K"\nmin_interval_ms = 500\n',
        env={"K": "key"},
    )
    notifier = Notifier(config, transport=transport, clock_ms=lambda: clock[0])

    def fake_sleep(wait_ms: int) -> bool:
        slept.append(wait_ms)
        clock[0] += wait_ms
        return True

    notifier._sleep_ms = fake_sleep  # type: ignore[method-assign]
    try:
        from notify_helpers import build_alert

        for i in range(4):
            notifier.deliver(build_alert(notify=["sre"], trigger=f"t{i}"))
            clock[0] += 100  # the caller's own work between sends
    finally:
        notifier.close()
    assert [b - a for a, b in itertools.pairwise(sent_at)] == [500, 500, 500]
    assert slept == [400, 400, 400]
