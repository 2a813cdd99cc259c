"""``relsec ingest convert`` (and the parts of publish/serve that need no broker)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from agents.model.events import parse_event
from streams.cli import main

from .helpers import PAYLOADS, REPO


def _lines(out: str) -> list[dict]:
    return [orjson.loads(line) for line in out.splitlines() if line]


def test_convert_prints_canonical_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["ingest", "convert", "trivy", str(PAYLOADS / "trivy/checkout-2.4.0.scan1.json")])
    out, err = capsys.readouterr()
    assert status == 0
    events = _lines(out)
    assert len(events) == 4 and all(parse_event(e).type == "security_flag" for e in events)
    assert "below minimum severity" in err and "CVE-2026-0001" in err


def test_convert_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ingest", "convert", "github", str(PAYLOADS / "github/deployment_status.success.json")]
    assert main([*args, "--map", "release=ref", "--environment", "eu-prod"]) == 0
    (event,) = _lines(capsys.readouterr().out)
    assert (event["release"], event["environment"]) == ("v2.4.0", "eu-prod")
    assert main([*args, "--github-event", "deployment"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "deployment_status" in err
    scan2 = str(PAYLOADS / "trivy/checkout-2.4.0.scan2.json")
    scan1 = str(PAYLOADS / "trivy/checkout-2.4.0.scan1.json")
    assert (
        main(["ingest", "convert", "trivy", scan2, "--previous", scan1, "--min-severity", "high"])
        == 0
    )
    events = _lines(capsys.readouterr().out)
    assert sorted((e["flag_id"], e["status"]) for e in events) == [
        ("CVE-2026-1111", "raised"),
        ("CVE-2026-2222", "cleared"),
    ]


def test_convert_grype_without_timestamp_uses_received_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = orjson.loads((PAYLOADS / "grype/payments-api-1.4.2.json").read_bytes())
    report["descriptor"]["timestamp"] = ""
    path = tmp_path / "grype.json"
    path.write_bytes(orjson.dumps(report))
    args = ["ingest", "convert", "grype", str(path), "--received-at", "2026-03-04T10:00:00+01:00"]
    assert main(args) == 0
    assert {e["occurred_at"] for e in _lines(capsys.readouterr().out)} == {"2026-03-04T09:00:00Z"}


@pytest.mark.parametrize(
    ("source", "content", "path_text"),
    [
        ("trivy", b'{"SchemaVersion": 2,', "trivy payload: $:"),
        ("pagerduty", b'{"event": {"event_type": "incident.triggered"}}', "$.event.id"),
        ("github", b'{"deployment_status": {"state": "success", "id": 1}}', "$.deployment"),
        ("flux", b"[]", "flux payload: $:"),
    ],
)
def test_unreadable_payloads_exit_2_naming_the_path(
    tmp_path, capsys: pytest.CaptureFixture[str], source: str, content: bytes, path_text: str
) -> None:
    f = tmp_path / "payload.json"
    f.write_bytes(content)
    assert main(["ingest", "convert", source, str(f)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and path_text in err


def test_missing_file_and_bad_options_exit_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "convert", "trivy", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    good = str(PAYLOADS / "trivy/checkout-2.4.0.scan1.json")
    assert main(["ingest", "convert", "trivy", good, "--map", "service"]) == 2
    assert main(["ingest", "convert", "trivy", good, "--map", "service=nonsense"]) == 2
    assert main(["ingest", "convert", "trivy", good, "--received-at", "yesterday"]) == 2


def test_console_command_reads_stdin_and_exits_2_on_errors() -> None:
    body = (PAYLOADS / "pagerduty/incident.triggered.json").read_bytes()
    ok = subprocess.run(
        [sys.executable, "-m", "streams.cli", "ingest", "convert", "pagerduty", "-"],
        input=body,
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert orjson.loads(ok.stdout)["incident_id"] == "Q1W2E3R4T5Y6U7"
    bad = subprocess.run(
        [sys.executable, "-m", "streams.cli", "ingest", "convert", "pagerduty", "-"],
        input=body.replace(b'"occurred_at"', b'"occurred"'),
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert bad.returncode == 2 and b"$.event.occurred_at" in bad.stderr


def test_serve_help_names_the_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ingest", "serve", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "RELSEC_INGEST_GITHUB_SECRET" in out and "127.0.0.1" in out


def test_serve_binds_loopback_answers_health_and_rejects_unsigned() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELSEC_INGEST_")}
    env["RELSEC_INGEST_PAGERDUTY_SECRET"] = "pd-s3cret"
    env["RELSEC_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"  # never reached: nothing here publishes
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "ingest", "serve", "--port", "0"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        m = None
        while m is None and len(seen) < 50:  # librdkafka may log before the gateway is up
            seen.append(proc.stderr.readline())
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", seen[-1])
        assert m, seen
        base = f"http://127.0.0.1:{m.group(1)}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as resp:
            assert resp.status == 200 and orjson.loads(resp.read())["status"] == "ok"
        request = urllib.request.Request(f"{base}/v1/ingest/pagerduty", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 401
        assert "pd-s3cret" not in proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
