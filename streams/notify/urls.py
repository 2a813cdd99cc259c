"""Showing a destination URL without the credentials people put into URLs.

A URL carries secrets in three places, and ``relsec notify`` meets all three:

* the user-info part, ``https://user:token@hooks.example/...``;
* the query string, ``...?token=abc`` or ``...?sig=...&sv=...`` (every value is
  treated as secret: which parameter names are credentials differs per receiver);
* the path, for receivers whose URL *is* the credential: a Slack incoming-webhook
  URL (``https://hooks.slack.com/services/T.../B.../SECRET``), a Slack workflow
  trigger, a Discord or Microsoft Teams / Power Automate webhook.

:func:`safe_origin` (scheme and host) is what logs and ``--check`` show,
:func:`safe_url` (the whole URL, masked) what a configuration error shows;
:func:`url_secrets` lists the pieces that must be scrubbed from any text that
could echo them (a response body quoted in a dead letter, an exception).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

MASK: Final = "***"

# Hosts whose webhook path is itself the credential (the path after the prefix is masked).
_SECRET_PATH_HOSTS: Final = (
    (re.compile(r"(^|\.)hooks\.slack(-gov)?\.com$"), ("/services/", "/workflows/", "/triggers/")),
    (re.compile(r"(^|\.)discord(app)?\.com$"), ("/api/webhooks/",)),
    (re.compile(r"(^|\.)webhook\.office\.com$"), ("/webhookb2/",)),
    (re.compile(r"(^|\.)logic\.azure\.com$"), ("/workflows/",)),
)


def _secret_path_prefix(host: str, path: str) -> str | None:
    for pattern, prefixes in _SECRET_PATH_HOSTS:
        if pattern.search(host):
            for prefix in prefixes:
                if path.startswith(prefix) and len(path) > len(prefix):
                    return prefix
    return None


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    return parts


def safe_url(url: str) -> str:
    """``url`` with user-info, query values, fragment and secret webhook paths masked.

    ``https://u:tok@h.example:8443/hook?token=abc`` becomes
    ``https://***@h.example:8443/hook?token=***``; a Slack webhook URL becomes
    ``https://hooks.slack.com/services/***``. Text that is not a URL at all is
    not shown (``<not a URL>``), since it may be a secret pasted in the wrong place.
    """
    parts = _split(url)
    if parts is None or not parts.scheme or not parts.hostname:
        return "<not a URL>"
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    path = parts.path
    prefix = _secret_path_prefix(host.lower(), path)
    if prefix is not None:
        path = prefix + MASK
    query = ""
    if parts.query:
        names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
        query = "&".join(f"{name}={MASK}" for name in names) if names else MASK
    return urlunsplit((parts.scheme, netloc, path, query, MASK if parts.fragment else ""))


def safe_origin(url: str) -> str:
    """Scheme and host (and port) of ``url``; user-info shows as ``***@``. What logs name."""
    shown = safe_url(url)
    parts = urlsplit(shown)
    if not parts.scheme:
        return shown
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret pieces of ``url`` (raw and percent-decoded), longest first.

    Scrubbing a text of these (after scrubbing the whole URL) leaves no
    credential of the URL in it.
    """
    parts = _split(url)
    if parts is None:
        return (url,) if url else ()
    pieces: set[str] = set()
    if parts.password:
        pieces.add(parts.password)
    if parts.username:
        pieces.add(parts.username)
    for _name, value in parse_qsl(parts.query, keep_blank_values=False):
        pieces.add(value)
    if parts.query:
        pieces.add(parts.query)
    if parts.fragment:
        pieces.add(parts.fragment)
    prefix = _secret_path_prefix((parts.hostname or "").lower(), parts.path)
    if prefix is not None:
        secret_path = parts.path[len(prefix) :]
        pieces.add(secret_path)
        pieces.update(segment for segment in secret_path.split("/") if len(segment) >= 6)
    pieces.update(unquote(p) for p in list(pieces))
    # very short values ("1", "en") are not credentials and would shred ordinary text
    kept = {p for p in pieces if len(p) >= 4}
    return tuple(sorted(kept, key=len, reverse=True))


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries something :func:`safe_url` masks (then it belongs in ``url_env``)."""
    parts = _split(url)
    if parts is None or not parts.hostname:
        return True
    return bool(
        parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or _secret_path_prefix(parts.hostname.lower(), parts.path) is not None
    )
