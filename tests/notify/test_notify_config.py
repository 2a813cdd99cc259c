"""The notify config file: parsing, secrets from the environment, errors, routing by audience."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agents.errors import ConfigError
from streams.notify.config import (
    DEFAULT_PAGERDUTY_URL,
    Destination,
    GroupingPolicy,
    RetryPolicy,
    load_config,
    parse_config,
)
from streams.notify.deliver import route

MakeAlert = Callable[..., dict[str, Any]]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "notify.md"

ENV = {
    "PD_SRE": "pd-sre-key-0123456789abcdef",
    "PD_SEC": "pd-sec-key-fedcba9876543210",
    "SLACK_SEC": "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",
    "HOOK_SECRET": "hmac-secret-value",
}

EXAMPLE = """
[retry]
max_attempts = 4
initial_backoff_ms = 250
max_total_ms = 30000

[[destination]]
name = "pagerduty-sre"
type = "pagerduty"
audiences = ["sre"]
routing_key_env = "PD_SRE"
links = [{ href = "https://runbooks.example/{rule}", text = "Runbook" }]

[[destination]]
name = "pagerduty-security"
type = "pagerduty"
audiences = ["security"]
routing_key_env = "PD_SEC"
min_severity = "high"
url = "http://127.0.0.1:8080/"

[[destination]]
name = "slack-security"
type = "slack"
audiences = ["security"]
url_env = "SLACK_SEC"

[[destination]]
name = "siem"
type = "webhook"
audiences = ["sre", "security"]
url = "https://siem.example/relsec"
secret_env = "HOOK_SECRET"
signature_header = "X-Signature"
"""


def test_example_parses_with_secrets_from_env() -> None:
    config = parse_config(EXAMPLE, env=ENV)
    assert config.retry == RetryPolicy(max_attempts=4, initial_backoff_ms=250, max_total_ms=30000)
    pd_sre, pd_sec, slack, siem = config.destinations
    assert pd_sre.secret == ENV["PD_SRE"] and pd_sre.url == DEFAULT_PAGERDUTY_URL
    assert pd_sre.audiences == frozenset({"sre"})
    assert pd_sre.links[0].href == "https://runbooks.example/{rule}"
    assert pd_sec.url == "http://127.0.0.1:8080" and pd_sec.min_severity == "high"
    assert slack.url == ENV["SLACK_SEC"] and slack.url_is_secret and slack.secret is None
    assert siem.secret == ENV["HOOK_SECRET"] and siem.signature_header == "X-Signature"


def test_descriptions_and_reprs_hold_no_secret() -> None:
    config = parse_config(EXAMPLE, env=ENV)
    shown = "\n".join(d.describe() + repr(d) for d in config.destinations) + repr(config)
    for secret in ENV.values():
        assert secret not in shown
    assert "hooks.slack.com" not in shown
    assert "siem (webhook, https://siem.example, audiences security,sre, signed)" in shown


def test_a_missing_secret_names_the_variable() -> None:
    env = {k: v for k, v in ENV.items() if k != "SLACK_SEC"}
    with pytest.raises(ConfigError, match=r"slack-security.*SLACK_SEC.*not set"):
        parse_config(EXAMPLE, env=env)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('type = "email"\naudiences = ["sre"]\nurl = "http://x"', "type 'email'"),
        ('type = "webhook"\naudiences = ["ops"]\nurl = "http://x"', "unknown audience"),
        ('type = "webhook"\naudiences = []\nurl = "http://x"', "non-empty list"),
        ('type = "webhook"\naudiences = ["sre"]', "needs 'url"),
        ('type = "slack"\naudiences = ["sre"]', "needs 'url_env'"),
        ('type = "pagerduty"\naudiences = ["sre"]', "routing_key_env"),
        ('type = "webhook"\naudiences = ["sre"]\nurl = "ftp://x"', "not an http"),
        ('type = "webhook"\naudiences = ["sre"]\nurl = "http://x"\ncolour = 1', "unknown key"),
        ('type = "webhook"\naudiences = ["sre"]\nurl = "http://x"\nurl_env = "A"', "not both"),
        (
            'type = "webhook"\naudiences = ["sre"]\nurl = "http://x"\nmin_severity = "urgent"',
            "min_severity",
        ),
        (
            'type = "slack"\naudiences = ["sre"]\nurl = "http://x"\nsecret_env = "HOOK_SECRET"',
            "not signed",
        ),
    ],
)
def test_bad_destinations_are_rejected(snippet: str, message: str) -> None:
    text = f'[[destination]]\nname = "d"\n{snippet}\n'
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text, env=ENV)


def test_secret_url_is_not_echoed_when_invalid() -> None:
    text = '[[destination]]\nname = "s"\ntype = "slack"\naudiences = ["sre"]\nurl_env = "BAD"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={"BAD": "xoxb-secret-not-a-url"})
    assert "xoxb-secret" not in str(info.value)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no \\[\\[destination\\]\\]"):
        parse_config("[retry]\nmax_attempts = 2\n", env=ENV)
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[[destination]\n", env=ENV)
    with pytest.raises(ConfigError, match="unique"):
        one = (
            '[[destination]]\nname = "d"\ntype = "webhook"\naudiences = ["sre"]\nurl = "http://x"\n'
        )
        parse_config(one + one, env=ENV)
    with pytest.raises(ConfigError, match="max_attempts"):
        parse_config("[retry]\nmax_attempts = 0\n", env=ENV)
    with pytest.raises(ConfigError, match="whole number"):
        parse_config("[retry]\nmax_attempts = 2.5\n", env=ENV)
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config("[retry]\nattempts = 2\n", env=ENV)
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_config(tmp_path / "nope.toml", env=ENV)


def test_docs_example_is_a_valid_config() -> None:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/notify.md has a toml example"
    names = set(re.findall(r'_env = "([A-Z0-9_]+)"', blocks[0]))
    config = parse_config(blocks[0], env={name: f"https://x.example/{name}" for name in names})
    assert {d.type for d in config.destinations} == {"pagerduty", "slack", "webhook"}


# -- routing by audience -------------------------------------------------------


def _dests() -> tuple[Destination, ...]:
    return parse_config(EXAMPLE, env=ENV).destinations


def _names(dests: list[Destination]) -> list[str]:
    return [d.name for d in dests]


def test_route_by_audience(make_alert: MakeAlert) -> None:
    dests = _dests()
    both = make_alert(notify=["security", "sre"], severity="critical")
    assert _names(route(both, dests)) == [
        "pagerduty-sre",
        "pagerduty-security",
        "slack-security",
        "siem",
    ]
    sre_only = make_alert(notify=["sre"], severity="medium")
    assert _names(route(sre_only, dests)) == ["pagerduty-sre", "siem"]
    security_only = make_alert(notify=["security"], severity="info")
    assert _names(route(security_only, dests)) == ["slack-security", "siem"]
    assert route(make_alert(notify=[]), dests) == []


def test_min_severity_filters_and_retraction_routes_like_the_firing(make_alert: MakeAlert) -> None:
    dests = _dests()
    for severity, expected in (
        ("medium", ["slack-security", "siem"]),
        ("high", ["pagerduty-security", "slack-security", "siem"]),
        ("critical", ["pagerduty-security", "slack-security", "siem"]),
    ):
        firing = make_alert(notify=["security"], severity=severity)
        retracted = make_alert(notify=["security"], severity=severity, status="retracted")
        assert _names(route(firing, dests)) == expected
        assert _names(route(retracted, dests)) == expected


def test_link_templates_with_unknown_placeholders_are_rejected() -> None:
    text = (
        '[[destination]]\nname = "p"\ntype = "pagerduty"\naudiences = ["sre"]\n'
        'routing_key_env = "PD_SRE"\nlinks = [{ href = "https://x.example/{team}" }]\n'
    )
    with pytest.raises(ConfigError, match=r"\{team\}.*placeholders"):
        parse_config(text, env=ENV)


# -- grouping and request spacing ----------------------------------------------------

ONE_PD = (
    '[[destination]]\nname = "pd"\ntype = "pagerduty"\naudiences = ["sre"]\n'
    'routing_key_env = "PD_SRE"\n'
)


def test_grouping_defaults_and_overrides() -> None:
    config = parse_config(ONE_PD, env=ENV)
    assert config.grouping == GroupingPolicy()
    assert config.grouping.window_ms == 3_600_000 and config.grouping.enabled
    custom = parse_config(
        "[grouping]\nwindow_ms = 600000\nsettle_ms = 500\nmax_delay_ms = 10000\n"
        "forget_after_ms = 1\nupdate_interval_ms = 60000\n" + ONE_PD,
        env=ENV,
    )
    assert custom.grouping == GroupingPolicy(600_000, 500, 10_000, 60_000, 1)
    off = parse_config("[grouping]\nwindow_ms = 0\n" + ONE_PD, env=ENV)
    assert not off.grouping.enabled


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[grouping]\nwindow = 3600\n", "unknown key"),
        ("[grouping]\nwindow_ms = -1\n", "must not be negative"),
        ("[grouping]\nwindow_ms = 1.5\n", "whole number"),
        ("[grouping]\nsettle_ms = 5000\nmax_delay_ms = 1000\n", "max_delay_ms must be at least"),
        ("grouping = 3\n", r"\[grouping\] must be a table"),
    ],
)
def test_bad_grouping_is_rejected(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(table + ONE_PD, env=ENV)


def test_request_spacing_defaults_per_type_and_can_be_set() -> None:
    by_name = {d.name: d for d in parse_config(EXAMPLE, env=ENV).destinations}
    assert {d.type: d.min_interval_ms for d in by_name.values()} == {
        "pagerduty": 500,
        "slack": 1000,
        "webhook": 0,
    }
    (pd,) = parse_config(ONE_PD + "min_interval_ms = 0\n", env=ENV).destinations
    assert pd.min_interval_ms == 0
    with pytest.raises(ConfigError, match="min_interval_ms"):
        parse_config(ONE_PD + "min_interval_ms = -5\n", env=ENV)
    assert [d.grouped for d in by_name.values()] == [
        d.type in ("pagerduty", "slack") for d in by_name.values()
    ]
