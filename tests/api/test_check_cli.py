"""``relsec check`` against a served API (no broker): one exit code per verdict, the
text it prints, and what it does when the API is not there."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agents.model.timefmt import parse_rfc3339_ms
from streams.api.server import Api, ApiOptions
from streams.devkafka import pick_free_ports
from tests.api.browser import served
from tests.api.helpers import SEED_STORY, build_model, load_events

SEED_NOW = parse_rfc3339_ms("2026-03-05T00:00:00Z")


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    built = build_model(load_events(SEED_STORY), SEED_NOW)
    with served(Api(built.model, ApiOptions(port=0))) as url:
        yield url


def relsec_check(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELSEC_API_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "check", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("release", "action", "code", "verdict"),
    [
        ("2.7.0", "rollback", 2, "DENY"),  # to the flagged release
        ("2.8.0", "deploy", 1, "WARN"),  # the release rolled back during INC-4711
        ("2.9.0", "deploy", 0, "ALLOW"),  # a new release
    ],
)
def test_each_verdict_has_its_exit_code(
    api_url: str, release: str, action: str, code: int, verdict: str
) -> None:
    done = relsec_check(api_url, "checkout-api", "production", release, "--action", action)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stdout.startswith(f"{verdict}: {action} of checkout-api production to {release}")


def test_no_api_is_exit_3_unless_told_to_fail_open_or_closed() -> None:
    (port,) = pick_free_ports(1)
    url = f"http://127.0.0.1:{port}"
    args = ("checkout-api", "production", "2.7.0", "--timeout", "2")
    unavailable = relsec_check(url, *args)
    assert unavailable.returncode == 3
    assert "no verdict" in unavailable.stderr
    assert relsec_check(url, *args, "--on-unavailable", "allow").returncode == 0
    assert relsec_check(url, *args, "--on-unavailable", "deny").returncode == 2
