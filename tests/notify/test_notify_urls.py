"""Credentials in destination URLs never reach a log line, ``--check`` or a dead letter.

People paste URLs with the secret inside: user-info (``https://user:token@...``),
a token in the query string, or a webhook URL whose path *is* the secret
(Slack, Discord, Teams). relsec shows them masked, posts user-info as a Basic
``Authorization`` header instead of in the URL, and scrubs every piece from
what a receiver answers.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from notify_helpers import Recorder, build_alert

from agents.errors import ConfigError
from streams.notify.config import parse_config
from streams.notify.deliver import Notifier, split_credentials
from streams.notify.urls import has_credentials, safe_origin, safe_url, url_secrets

TOKEN = "tok3n-Very-Secret-42"
SLACK = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/SlackSecretPath123"


@pytest.mark.parametrize(
    ("url", "shown", "secret"),
    [
        (
            f"https://relsec:{TOKEN}@hooks.example.com/relsec",
            "https://***@hooks.example.com/relsec",
            TOKEN,
        ),
        (
            f"https://hooks.example.com:8443/in?token={TOKEN}&team=sre",
            "https://hooks.example.com:8443/in?token=***&team=***",
            TOKEN,
        ),
        (SLACK, "https://hooks.slack.com/services/***", "SlackSecretPath123"),
        (
            "https://discord.com/api/webhooks/123456789/AbCdEfGhIjKlMnOp",
            "https://discord.com/api/webhooks/***",
            "AbCdEfGhIjKlMnOp",
        ),
        (f"https://x.example/hook#{TOKEN}", "https://x.example/hook#***", TOKEN),
    ],
)
def test_safe_url_masks_every_place_a_credential_hides(url: str, shown: str, secret: str) -> None:
    assert safe_url(url) == shown
    assert secret not in safe_url(url) and secret not in safe_origin(url)
    assert secret in url_secrets(url)
    assert has_credentials(url)


def test_plain_urls_are_shown_as_they_are() -> None:
    url = "https://events.eu.pagerduty.com"
    assert safe_url(url) == url and safe_origin(url) == url and not has_credentials(url)
    assert safe_origin("https://soar.example.com/hooks/relsec") == "https://soar.example.com"
    assert safe_url("not a url at all, maybe a pasted token") == "<not a URL>"


def test_percent_encoded_credentials_are_scrubbed_decoded_too() -> None:
    url = "https://u:p%40ss%2Fw0rd@h.example/x"
    assert "p@ss/w0rd" in url_secrets(url) and "p%40ss%2Fw0rd" in url_secrets(url)


def test_user_info_goes_in_an_authorization_header_not_the_url() -> None:
    bare, headers = split_credentials(f"https://relsec:{TOKEN}@hooks.example.com:8443/in")
    assert bare == "https://hooks.example.com:8443/in"
    assert headers == (
        ("Authorization", "Basic " + base64.b64encode(f"relsec:{TOKEN}".encode()).decode()),
    )
    assert split_credentials("https://hooks.example.com/in") == ("https://hooks.example.com/in", ())


def _config(url: str) -> str:
    return f"""
[grouping]
window_ms = 0

[retry]
max_attempts = 1

[[destination]]
name = "hook"
type = "webhook"
audiences = ["sre"]
url = "{url}"
"""


def test_describe_and_errors_show_no_credential() -> None:
    config = parse_config(_config(f"https://relsec:{TOKEN}@hooks.example.com/in?key={TOKEN}"))
    (dest,) = config.destinations
    assert (
        dest.describe() == "hook (webhook, https://***@hooks.example.com, audiences sre, unsigned)"
    )
    assert TOKEN in dest.secrets()
    with pytest.raises(ConfigError) as err:
        parse_config(_config(f"ftp://relsec:{TOKEN}@files.example.com/x"))
    assert TOKEN not in str(err.value) and "ftp://***@files.example.com/x" in str(err.value)


def test_a_receiver_echoing_the_credentials_is_scrubbed_in_logs_and_results(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    host_url = recorder.base_url.replace("http://", f"http://relsec:{TOKEN}@")
    recorder.script(f"/in?key={TOKEN}", (403, {}, f"bad token {TOKEN} for relsec:{TOKEN}".encode()))
    notifier = Notifier(parse_config(_config(f"{host_url}/in?key={TOKEN}")))
    try:
        with caplog.at_level(logging.DEBUG):
            (result,) = notifier.deliver(build_alert(notify=["sre"]))
    finally:
        notifier.close()
    assert not result.outcome.ok and "403" in result.outcome.detail
    assert TOKEN not in result.outcome.detail
    (request,) = recorder.on(f"/in?key={TOKEN}")
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode(f"relsec:{TOKEN}".encode()).decode()
    )
    assert TOKEN not in caplog.text


def test_check_prints_no_credential_and_warns_about_it(tmp_path: Path) -> None:
    path = tmp_path / "notify.toml"
    path.write_text(
        f'[[destination]]\nname = "hook"\ntype = "webhook"\naudiences = ["sre"]\n'
        f'url = "https://relsec:{TOKEN}@hooks.example.com/in?token={TOKEN}"\n\n'
        f'[[destination]]\nname = "chat"\ntype = "slack"\naudiences = ["security"]\n'
        f'url = "{SLACK}"\n',
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "notify", "--config", str(path), "--check"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    shown = proc.stdout + proc.stderr
    assert TOKEN not in shown and "SlackSecretPath123" not in shown and "B0BBBBBBB" not in shown
    assert "hook (webhook, https://***@hooks.example.com, audiences sre, unsigned)" in shown
    assert "chat (slack, https://hooks.slack.com, audiences security)" in shown
    assert "warning: hook: its 'url' carries a credential" in shown
    assert "warning: chat: its 'url' carries a credential" in shown
    assert "grouping: by rule, service, environment, release in 3600000 ms windows" in shown


def test_a_url_with_a_port_that_is_not_a_number_is_a_config_error_without_the_secret() -> None:
    with pytest.raises(ConfigError, match="is not an http") as err:
        parse_config(_config(f"https://relsec:{TOKEN}@hooks.example.com:80{TOKEN}/in"))
    assert TOKEN not in str(err.value)
