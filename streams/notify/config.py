"""The ``relsec notify`` configuration file (TOML) and the values it becomes.

A file lists destinations (``[[destination]]`` tables), an optional
``[retry]`` table and an optional ``[grouping]`` table. Secrets -- PagerDuty
routing keys, Slack webhook URLs, HMAC secrets -- are never written in the
file: the file names the environment variable that holds them
(``routing_key_env``, ``url_env``, ``secret_env``), and they are read once when
the file is loaded. Nothing here prints a secret:
:meth:`Destination.describe` is what logs and ``--check`` show.

See ``docs/notify.md`` for the reference and a full example.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from agents.errors import ConfigError
from agents.model.alerts import SEVERITIES
from streams.notify.urls import safe_origin, safe_url, url_secrets

PAGERDUTY: Final = "pagerduty"
SLACK: Final = "slack"
WEBHOOK: Final = "webhook"
DESTINATION_TYPES: Final = (PAGERDUTY, SLACK, WEBHOOK)
AUDIENCES: Final = ("sre", "security")

DEFAULT_PAGERDUTY_URL: Final = "https://events.pagerduty.com"
DEFAULT_SIGNATURE_HEADER: Final = "X-Relsec-Signature-256"
LINK_FIELDS: Final = ("alert_id", "rule", "service", "environment", "release", "severity")

# Spacing between two requests to one destination: PagerDuty's Events API takes
# 120 events a minute per integration key, a Slack incoming webhook one message a second.
DEFAULT_MIN_INTERVAL_MS: Final = {PAGERDUTY: 500, SLACK: 1000, WEBHOOK: 0}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long one delivery is retried.

    The n-th retry (n = 1, 2, ...) waits ``initial_backoff_ms * multiplier**(n-1)``
    capped at ``max_backoff_ms``, minus a random share of up to ``jitter_ratio``
    of it (so concurrent senders spread out), or the server's ``Retry-After``
    when that is longer. A delivery stops after ``max_attempts`` attempts or
    when the next attempt would start later than ``max_total_ms`` after the first.
    """

    max_attempts: int = 6
    initial_backoff_ms: int = 500
    max_backoff_ms: int = 30_000
    multiplier: float = 2.0
    jitter_ratio: float = 0.2
    max_total_ms: int = 120_000
    request_timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("retry.max_attempts must be at least 1")
        if self.initial_backoff_ms < 0 or self.max_backoff_ms < 0:
            raise ConfigError("retry backoffs must not be negative")
        if self.multiplier < 1.0:
            raise ConfigError("retry.multiplier must be at least 1.0")
        if not 0.0 <= self.jitter_ratio <= 1.0:
            raise ConfigError("retry.jitter_ratio must be between 0.0 and 1.0")
        if self.max_total_ms < 0:
            raise ConfigError("retry.max_total_ms must not be negative")
        if self.request_timeout_ms <= 0:
            raise ConfigError("retry.request_timeout_ms must be positive")


@dataclass(frozen=True, slots=True)
class GroupingPolicy:
    """How alerts are grouped into one PagerDuty incident and one Slack thread of messages.

    Alerts of one (rule, service, environment, release) whose ``occurred_at``
    falls into the same tumbling window of ``window_ms`` event time (aligned to
    the Unix epoch) form one group. ``window_ms = 0`` turns grouping off: every
    alert is its own group, keyed by its ``alert_id``.

    ``settle_ms``: a group's change is sent once no member joined or left for
    this long (wall clock), so a burst read over a few seconds is one message;
    ``max_delay_ms`` bounds that wait while members keep coming.
    ``update_interval_ms``: after a group was announced, further changes of
    its count go out at most this often per destination (a rise in severity
    and the resolve go out at once).
    ``forget_after_ms``: a group whose window ended this long ago in event time
    (behind the newest alert read) is no longer tracked, so memory and the
    restart's rebuild stay bounded; by default the duplicate window (7 days).
    """

    window_ms: int = 3_600_000
    settle_ms: int = 2_000
    max_delay_ms: int = 30_000
    update_interval_ms: int = 300_000
    forget_after_ms: int = 7 * 24 * 3_600_000

    def __post_init__(self) -> None:
        for name in (
            "window_ms",
            "settle_ms",
            "max_delay_ms",
            "update_interval_ms",
            "forget_after_ms",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"grouping.{name} must not be negative")
        if self.max_delay_ms < self.settle_ms:
            raise ConfigError("grouping.max_delay_ms must be at least grouping.settle_ms")

    @property
    def enabled(self) -> bool:
        return self.window_ms > 0


@dataclass(frozen=True, slots=True)
class Link:
    """A link attached to PagerDuty events; ``href`` and ``text`` may use alert fields.

    Placeholders: ``{alert_id}``, ``{rule}``, ``{service}``, ``{environment}``,
    ``{release}``, ``{severity}``.
    """

    href: str
    text: str


@dataclass(frozen=True, slots=True)
class Destination:
    """One place alerts go: its type, where it is, which audiences it serves.

    ``url`` is the full webhook URL (Slack, webhook) or the Events API base URL
    (PagerDuty; the event is posted to ``{url}/v2/enqueue``). ``secret`` is the
    PagerDuty routing key or the webhook's HMAC secret. ``url_is_secret`` is
    true when the URL came from the environment (a Slack webhook URL is a
    credential): then not even its host is shown.
    """

    name: str
    type: str
    audiences: frozenset[str]
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    url_is_secret: bool = False
    min_severity: str = "info"
    signature_header: str = DEFAULT_SIGNATURE_HEADER
    links: tuple[Link, ...] = ()
    min_interval_ms: int = 0

    @property
    def grouped(self) -> bool:
        """PagerDuty and Slack get one notification per alert group; webhooks every alert."""
        return self.type in (PAGERDUTY, SLACK)

    def describe(self) -> str:
        """A one-line description that is safe to log: no secret, no secret URL.

        A URL from the environment is shown as "url from environment" only; a URL
        from the file as scheme and host, with user-info masked
        (:func:`~streams.notify.urls.safe_origin`).
        """
        where = "url from environment" if self.url_is_secret else safe_origin(self.url)
        audiences = ",".join(sorted(self.audiences))
        extra = ""
        if self.type == WEBHOOK:
            extra = ", signed" if self.secret else ", unsigned"
        return f"{self.name} ({self.type}, {where}, audiences {audiences}{extra})"

    def secrets(self) -> tuple[str, ...]:
        """Every value that must never appear in a log line or dead-letter detail."""
        values = [self.secret] if self.secret else []
        if self.url_is_secret:
            # the URL came from the environment because something in it is a credential;
            # a receiver may echo any part of its path
            values.append(self.url)
            path = urlsplit(self.url).path
            values.extend(seg for seg in path.split("/") if len(seg) >= 8)
        values.extend(url_secrets(self.url))
        return tuple(dict.fromkeys(values))


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """The whole file: destinations in file order, the retry and grouping policies."""

    destinations: tuple[Destination, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    grouping: GroupingPolicy = field(default_factory=GroupingPolicy)


_RETRY_KEYS: Final = {
    "max_attempts": int,
    "initial_backoff_ms": int,
    "max_backoff_ms": int,
    "multiplier": float,
    "jitter_ratio": float,
    "max_total_ms": int,
    "request_timeout_ms": int,
}
_GROUPING_KEYS: Final = {
    "window_ms": int,
    "settle_ms": int,
    "max_delay_ms": int,
    "update_interval_ms": int,
    "forget_after_ms": int,
}
_DEST_KEYS: Final = frozenset(
    {
        "name",
        "type",
        "audiences",
        "url",
        "url_env",
        "routing_key_env",
        "secret_env",
        "min_severity",
        "signature_header",
        "links",
        "min_interval_ms",
    }
)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> NotifyConfig:
    """Read and check a config file; secrets are read from ``env`` (default: the process's)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"notify config {p}: {exc.strerror or exc}") from None
    return parse_config(text, env=env, origin=str(p))


def parse_config(
    text: str, env: Mapping[str, str] | None = None, origin: str = "notify config"
) -> NotifyConfig:
    """Parse config text (TOML); see :func:`load_config`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    e = os.environ if env is None else env
    unknown = set(doc) - {"destination", "retry", "grouping"}
    if unknown:
        raise ConfigError(f"{origin}: unknown table(s) {', '.join(sorted(unknown))}")
    retry = RetryPolicy(**_parse_numbers(doc.get("retry", {}), "retry", _RETRY_KEYS, origin))
    grouping = GroupingPolicy(
        **_parse_numbers(doc.get("grouping", {}), "grouping", _GROUPING_KEYS, origin)
    )
    raw_dests = doc.get("destination", [])
    if not isinstance(raw_dests, list) or not raw_dests:
        raise ConfigError(f"{origin}: no [[destination]] tables")
    dests: list[Destination] = []
    for i, raw in enumerate(raw_dests, start=1):
        dests.append(_parse_destination(raw, e, f"{origin}: destination #{i}"))
    names = [d.name for d in dests]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{origin}: destination names must be unique: {', '.join(dupes)}")
    return NotifyConfig(destinations=tuple(dests), retry=retry, grouping=grouping)


def _parse_numbers(raw: Any, table: str, keys: Mapping[str, type], origin: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: [{table}] must be a table")
    unknown = set(raw) - set(keys)
    if unknown:
        raise ConfigError(f"{origin}: [{table}] unknown key(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, kind in keys.items():
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{origin}: {table}.{key} must be a number")
        if kind is int and not isinstance(value, int):
            raise ConfigError(f"{origin}: {table}.{key} must be a whole number")
        values[key] = kind(value)
    return values


def _str(raw: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: '{key}' is required")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: '{key}' must be a non-empty string")
    return value


def _from_env(e: Mapping[str, str], var: str, key: str, where: str) -> str:
    value = e.get(var)
    if not value:
        raise ConfigError(f"{where}: environment variable {var} (named by '{key}') is not set")
    return value


def _check_url(url: str, where: str, secret: bool) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError:
        bad_port = True
    else:
        bad_port = False
    if parts.scheme not in ("http", "https") or not parts.hostname or bad_port:
        shown = "the URL from the environment" if secret else repr(safe_url(url))
        raise ConfigError(f"{where}: {shown} is not an http(s) URL")


def _parse_destination(raw: Any, e: Mapping[str, str], where: str) -> Destination:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    name = _str(raw, "name", where, required=True)
    assert name is not None
    where = f"{where} ({name})"
    unknown = set(raw) - _DEST_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    kind = _str(raw, "type", where, required=True)
    if kind not in DESTINATION_TYPES:
        raise ConfigError(f"{where}: type {kind!r} is not one of {', '.join(DESTINATION_TYPES)}")
    audiences = raw.get("audiences")
    if (
        not isinstance(audiences, list)
        or not audiences
        or not all(isinstance(a, str) for a in audiences)
    ):
        raise ConfigError(f"{where}: 'audiences' must be a non-empty list, e.g. [\"sre\"]")
    bad = sorted(set(audiences) - set(AUDIENCES))
    if bad:
        raise ConfigError(f"{where}: unknown audience(s) {', '.join(bad)} (use sre, security)")
    min_severity = _str(raw, "min_severity", where) or "info"
    if min_severity not in SEVERITIES:
        raise ConfigError(f"{where}: min_severity {min_severity!r} is not one of {SEVERITIES}")

    url = _str(raw, "url", where)
    url_env = _str(raw, "url_env", where)
    if url and url_env:
        raise ConfigError(f"{where}: give 'url' or 'url_env', not both")
    url_is_secret = False
    if url_env:
        url = _from_env(e, url_env, "url_env", where)
        url_is_secret = True
    secret: str | None = None
    routing_key_env = _str(raw, "routing_key_env", where)
    secret_env = _str(raw, "secret_env", where)

    if kind == PAGERDUTY:
        if routing_key_env is None:
            raise ConfigError(f"{where}: pagerduty needs 'routing_key_env'")
        if secret_env is not None:
            raise ConfigError(f"{where}: pagerduty takes 'routing_key_env', not 'secret_env'")
        secret = _from_env(e, routing_key_env, "routing_key_env", where)
        url = (url or DEFAULT_PAGERDUTY_URL).rstrip("/")
    else:
        if routing_key_env is not None:
            raise ConfigError(f"{where}: 'routing_key_env' is for pagerduty destinations")
        if url is None:
            hint = "url_env" if kind == SLACK else "url' or 'url_env"
            raise ConfigError(f"{where}: {kind} needs '{hint}'")
        if kind == SLACK and secret_env is not None:
            raise ConfigError(f"{where}: slack destinations are not signed; drop 'secret_env'")
        if secret_env is not None:
            secret = _from_env(e, secret_env, "secret_env", where)
    _check_url(url, where, url_is_secret)

    signature_header = _str(raw, "signature_header", where) or DEFAULT_SIGNATURE_HEADER
    min_interval_ms = raw.get("min_interval_ms", DEFAULT_MIN_INTERVAL_MS[kind])
    if (
        isinstance(min_interval_ms, bool)
        or not isinstance(min_interval_ms, int)
        or min_interval_ms < 0
    ):
        raise ConfigError(f"{where}: 'min_interval_ms' must be a whole number >= 0")
    links = _parse_links(raw.get("links", []), where)
    if links and kind != PAGERDUTY:
        raise ConfigError(f"{where}: 'links' is for pagerduty destinations")
    return Destination(
        name=name,
        type=kind,
        audiences=frozenset(audiences),
        url=url,
        secret=secret,
        url_is_secret=url_is_secret,
        min_severity=min_severity,
        signature_header=signature_header,
        links=links,
        min_interval_ms=min_interval_ms,
    )


def _parse_links(raw: Any, where: str) -> tuple[Link, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: 'links' must be a list of {{href, text}} tables")
    links: list[Link] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"href", "text"} or "href" not in item:
            raise ConfigError(f"{where}: each link is a table with 'href' and optional 'text'")
        href, text = item["href"], item.get("text", item["href"])
        if not isinstance(href, str) or not isinstance(text, str):
            raise ConfigError(f"{where}: link 'href' and 'text' must be strings")
        for template in (href, text):
            try:
                template.format_map(dict.fromkeys(LINK_FIELDS, "x"))
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"{where}: link template {template!r}: {type(exc).__name__} {exc} "
                    f"(placeholders: {', '.join('{' + f + '}' for f in LINK_FIELDS)})"
                ) from None
        links.append(Link(href=href, text=text))
    return tuple(links)
