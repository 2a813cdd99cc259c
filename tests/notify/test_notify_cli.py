"""``relsec notify`` command line without Kafka: ``--check`` and configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from streams.cli import build_parser

SECRET_URL = "https://hooks.slack.com/services/T1/B1/CLISECRET"
KEY = "cli-routing-key-123"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "notify", *args],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "notify.toml"
    path.write_text(
        '[[destination]]\nname = "pd"\ntype = "pagerduty"\naudiences = ["sre"]\n'
        'routing_key_env = "CLI_PD_KEY"\n\n'
        '[[destination]]\nname = "chat"\ntype = "slack"\naudiences = ["security"]\n'
        'url_env = "CLI_SLACK_URL"\nmin_severity = "medium"\n',
        encoding="utf-8",
    )
    return path


def test_notify_is_registered_with_its_options() -> None:
    args = build_parser().parse_args(["notify", "--config", "x.toml", "--once"])
    assert args.command == "notify" and args.once and args.config == "x.toml"
    assert args.start_at == "earliest" and args.group is None


def test_check_lists_destinations_without_secrets(tmp_path: Path) -> None:
    proc = _run(
        ["--config", str(_write(tmp_path)), "--check", "--topic-prefix", "acme."],
        {"CLI_PD_KEY": KEY, "CLI_SLACK_URL": SECRET_URL},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "2 destination(s)" in out
    assert "pd (pagerduty, https://events.pagerduty.com, audiences sre)" in out
    assert "chat (slack, url from environment, audiences security), min severity medium" in out
    assert "reads acme.alerts as group acme-worker-notify; dead letters to acme.dlq" in out
    assert KEY not in out + proc.stderr and "CLISECRET" not in out + proc.stderr


def test_a_missing_secret_exits_2_naming_the_variable(tmp_path: Path) -> None:
    proc = _run(["--config", str(_write(tmp_path)), "--check"], {"CLI_PD_KEY": KEY})
    assert proc.returncode == 2
    assert "CLI_SLACK_URL" in proc.stderr and "not set" in proc.stderr
