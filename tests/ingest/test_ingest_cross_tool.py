"""One service, five tools, one catalog, no per-tool flags: the seed story's four alerts (issue 11).

``tests/data/cross-tool/`` holds the seed story as the tools themselves report it:
Argo CD deploys application ``checkout-prod`` (the image ``ghcr.io/acme/checkout`` beside a
``redis`` sidecar), Trivy scans ``ghcr.io/acme/checkout:2.7.0``, CDEvents reports the
deploy of the image digest ``sha256:b8…`` (its purl's ``tag`` is 2.8.0), PagerDuty pages
"Checkout API" (``PX1Y2Z3``), GitHub records the rollback on ``acme/checkout``. The
catalog (``catalog/payments.yaml``) names them one service, ``checkout-api``, in
``production``; release aliases make ``sha256:b8…`` and ``2.8.0`` one release, so the
second A -> B -> A -> B reversal is seen (``release-flip-flop``).

The four alerts need the engine to link release names (SPEC §8, the engine's part of
issue 11).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.model.events import parse_event
from streams.cli import main

from .helpers import REPO

STORY = REPO / "tests" / "data" / "cross-tool"
CATALOG = STORY / "catalog"
DELIVERIES = [
    ("01-argocd-deploy-2.7.0.json", "argocd"),
    ("02-trivy-scan-2.7.0.json", "trivy"),
    ("03-cdevents-deployed-2.8.0.json", "cdevents"),
    ("04-pagerduty-triggered.json", "pagerduty"),
    ("05-github-rollback-2.7.0.json", "github"),
    ("06-pagerduty-resolved.json", "pagerduty"),
    ("07-argocd-deploy-2.8.0.json", "argocd"),
]
SEED_RULES = {
    ("flag-raised-on-running-release", "2.7.0", "critical"),
    ("rollback-to-flagged-release", "2.7.0", "critical"),
    ("redeploy-of-rolled-back-release", "2.8.0", "high"),
    ("release-flip-flop", "2.8.0", "high"),
}


def _lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def _convert_all(capsys: pytest.CaptureFixture[str], *catalog: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for name, source in DELIVERIES:
        assert main(["ingest", "convert", source, str(STORY / name), *catalog]) == 0
        out, err = capsys.readouterr()
        events.extend(_lines(out))
        if catalog:
            assert err.splitlines()[-1].endswith(", 0 unresolved service name(s)"), err
    return events


def test_the_tools_name_one_service_five_ways_and_the_catalog_makes_it_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = _convert_all(capsys)
    assert {e["service"] for e in raw} == {"checkout-prod", "checkout", "Checkout API"}
    assert {e.get("environment") for e in raw} - {None} == {"checkout", "prod-eu", "production"}
    events = _convert_all(capsys, "--catalog", str(CATALOG), "--require-catalog")
    assert len(events) == len(raw) == 7
    assert {e["service"] for e in events} == {"checkout-api"}
    assert {e.get("environment") for e in events} - {None} == {"production"}
    for event in events:
        parse_event(event)
    by_source = {e["source"]: e for e in events}
    # each tool names the release its own way; the aliases carry the other names
    assert by_source["cdevents"]["release"].startswith("sha256:b8")
    assert "2.8.0" in by_source["cdevents"]["release_aliases"]
    deploys = [e for e in events if e["source"] == "argocd"]
    assert [d["release"] for d in deploys] == ["2.7.0", "2.8.0"]
    assert by_source["cdevents"]["release"] in deploys[1]["release_aliases"]
    for deploy in deploys:  # the redis sidecar, in both releases, names neither
        assert not any("redis" in a for a in deploy["release_aliases"])


def test_ingest_convert_then_replay_gives_the_seed_storys_four_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _convert_all(capsys, "--catalog", str(CATALOG))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    assert main(["replay", str(path)]) == 0
    alerts = _lines(capsys.readouterr().out)
    assert {(a["service"], a["environment"]) for a in alerts} == {("checkout-api", "production")}
    found = {(a["rule"], a["release"], a["severity"]) for a in alerts}
    assert found == SEED_RULES, found
    flip = next(a for a in alerts if a["rule"] == "release-flip-flop")
    assert "ghcr.io/acme/checkout:2.8.0" in flip["release_aliases"]


# --- through the gateway, a worker and the alerts topic ------------------------------

TOKEN = "cross-tool-token"
GITHUB_SECRET = "cross-tool-github"
PAGERDUTY_SECRET = "cross-tool-pagerduty"


def _headers(source: str, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if source == "github":
        digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
        headers["X-GitHub-Event"] = "deployment_status"
    elif source == "pagerduty":
        digest = hmac.new(PAGERDUTY_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["X-PagerDuty-Signature"] = f"v1={digest}"
    else:
        headers["X-Relsec-Token"] = TOKEN
    return headers


class Gateway:
    """``relsec ingest serve`` in a subprocess on a free loopback port; stopped by PID."""

    def __init__(self, settings: Any, tmp: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELSEC_")}
        env.update(
            RELSEC_INGEST_TOKEN=TOKEN,
            RELSEC_INGEST_GITHUB_SECRET=GITHUB_SECRET,
            RELSEC_INGEST_PAGERDUTY_SECRET=PAGERDUTY_SECRET,
            RELSEC_CATALOG=str(CATALOG),
        )
        self.log = open(tmp / "gateway.log", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "ingest", "serve", "--port", "0",
             "--require-catalog", "--bootstrap-servers", settings.bootstrap_servers,
             "--topic-prefix", settings.topics.prefix],
            cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=self.log, text=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        seen: list[str] = []
        m = None
        while m is None and len(seen) < 200 and self.proc.poll() is None:
            seen.append(self.proc.stderr.readline())
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)/", seen[-1])
        assert m, "".join(seen)
        self.base = m.group(1)

    def post(self, source: str, body: bytes) -> dict[str, Any]:
        url = f"{self.base}/v1/ingest/{source}"
        headers = _headers(source, body)
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert resp.status == 202
            answer: dict[str, Any] = orjson.loads(resp.read())
            return answer

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}/healthz", timeout=10) as resp:
            health: dict[str, Any] = orjson.loads(resp.read())
            return health

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.mark.kafka
def test_through_the_gateway_a_worker_and_the_alerts_topic(
    kafka_settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.kafka.topics import create_topics
    from tests.worker.harness import (
        WorkerProcess,
        comparable,
        replay_expected,
        wait_for_alerts,
    )

    events = [parse_event(e) for e in _convert_all(capsys, "--catalog", str(CATALOG))]
    expected = replay_expected(events)
    assert len(expected) >= 3
    create_topics(kafka_settings, partitions=3)
    gateway = Gateway(kafka_settings, tmp_path)
    worker = WorkerProcess(kafka_settings, tmp_path, "--runtime", "kafka")
    try:
        for name, source in DELIVERIES:
            answer = gateway.post(source, (STORY / name).read_bytes())
            assert answer["accepted"] == 1 and answer["unresolved"] == [], answer
        health = gateway.health()
        assert health["catalog"]["components"] == 2 and health["catalog"]["recent_unresolved"] == []
        assert health["events"] == 7
        active = wait_for_alerts(kafka_settings, expected, timeout_s=90, workers=[worker])
        assert comparable(active) == comparable(expected), worker.log_tail()
        found = {(a["rule"], a["release"], a["severity"]) for a in active.values()}
        assert {a["service"] for a in active.values()} == {"checkout-api"}
        assert found == SEED_RULES, found
    finally:
        worker.stop()
        gateway.stop()
