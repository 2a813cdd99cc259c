"""Routing an alert to destinations and delivering it over HTTP, with retries.

:func:`route` picks the destinations of an alert: those serving one of its
audiences (the alert's ``notify`` list) at or above their ``min_severity``.
:func:`build_request` renders the HTTP request about one alert for one
destination, :func:`build_group_request` the one about a group
(:mod:`streams.notify.groups`). :class:`Notifier` sends to several destinations
side by side (one thread per destination), each with
:func:`~streams.notify.retry.deliver_with_retry`, and keeps each destination's
requests ``min_interval_ms`` apart (PagerDuty takes 120 events a minute per
integration key, a Slack webhook one message a second).

HTTP goes through a *transport*, a function from a request and a timeout to an
:class:`~streams.notify.retry.AttemptResult`; the default uses urllib, does not
follow redirects, and never puts the URL in a result's detail. Details are
scrubbed of the destination's secrets before anyone sees them.
"""

from __future__ import annotations

import base64
import http.client
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

from agents.model.alerts import SEVERITIES
from streams.notify.config import PAGERDUTY, SLACK, Destination, NotifyConfig
from streams.notify.groups import GroupSnapshot, Notice
from streams.notify.render import (
    pagerduty_event,
    pagerduty_group_event,
    signature,
    slack_group_message,
    slack_message,
    webhook_body,
)
from streams.notify.retry import (
    AttemptResult,
    DeliveryOutcome,
    deliver_with_retry,
    parse_retry_after,
)

USER_AGENT: Final = "relsec-notify/0.1"
BODY_SNIPPET_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """One HTTP POST: where, what, with which headers."""

    url: str = field(repr=False)
    body: bytes
    headers: tuple[tuple[str, str], ...]


Transport = Callable[[OutboundRequest, int], AttemptResult]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How the delivery of one alert (or one group notice) to one destination ended."""

    destination: Destination
    outcome: DeliveryOutcome
    notice: Notice | None = None


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def route(alert: Mapping[str, Any], destinations: tuple[Destination, ...]) -> list[Destination]:
    """The destinations of an alert, in config order.

    A destination is chosen when it serves at least one of the alert's
    audiences and the alert's severity is at least its ``min_severity``. A
    retraction routes exactly as the firing did (same audiences and severity),
    so whoever was told an alert fired is told it was retracted.
    """
    audiences = {str(a) for a in alert.get("notify") or []}
    rank = _severity_rank(str(alert.get("severity")))
    return [
        d
        for d in destinations
        if d.audiences & audiences and rank >= _severity_rank(d.min_severity)
    ]


def split_credentials(url: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``url`` without its user-info, and the Basic ``Authorization`` header it stood for.

    ``https://user:token@hooks.example/x`` is posted to ``https://hooks.example/x``
    with ``Authorization: Basic base64(user:token)``, as curl does; the
    credential then never travels in a request line or a proxy log.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, ()
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, (("Authorization", f"Basic {token}"),)


def _request(url: str, body: bytes, headers: list[tuple[str, str]]) -> OutboundRequest:
    bare, auth = split_credentials(url)
    return OutboundRequest(bare, body, (*headers, *auth))


def _json_headers() -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("User-Agent", USER_AGENT)]


def build_request(dest: Destination, alert: Mapping[str, Any]) -> OutboundRequest:
    """The HTTP request that delivers ``alert`` to ``dest``."""
    headers = _json_headers()
    if dest.type == PAGERDUTY:
        assert dest.secret is not None
        body = webhook_body(pagerduty_event(alert, dest.secret, dest.links))
        return _request(f"{dest.url}/v2/enqueue", body, headers)
    if dest.type == SLACK:
        return _request(dest.url, webhook_body(slack_message(alert)), headers)
    body = webhook_body(alert)
    headers.append(("X-Relsec-Alert-Id", str(alert.get("alert_id"))))
    headers.append(("X-Relsec-Alert-Status", str(alert.get("status"))))
    if dest.secret:
        headers.append((dest.signature_header, signature(body, dest.secret)))
    return _request(dest.url, body, headers)


def build_group_request(
    dest: Destination, snapshot: GroupSnapshot, notice: Notice
) -> OutboundRequest:
    """The HTTP request telling ``dest`` about a group (PagerDuty and Slack only)."""
    headers = _json_headers()
    if dest.type == PAGERDUTY:
        assert dest.secret is not None
        event = pagerduty_group_event(snapshot, notice.action, dest.secret, dest.links)
        return _request(f"{dest.url}/v2/enqueue", webhook_body(event), headers)
    if dest.type == SLACK:
        message = slack_group_message(snapshot, notice.action, notice.previous_count)
        return _request(dest.url, webhook_body(message), headers)
    raise ValueError(f"destination {dest.name} ({dest.type}) takes single alerts, not groups")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _snippet(raw: bytes) -> str:
    text = raw[: BODY_SNIPPET_CHARS * 4].decode("utf-8", "replace").strip()
    text = " ".join(text.split())
    return text[:BODY_SNIPPET_CHARS]


def urllib_transport(req: OutboundRequest, timeout_ms: int) -> AttemptResult:
    """POST with urllib; any HTTP status is a result, a network failure has status ``None``."""
    request = urllib.request.Request(req.url, data=req.body, method="POST")
    for name, value in req.headers:
        request.add_header(name, value)
    now_ms = int(time.time() * 1000)
    try:
        with _OPENER.open(request, timeout=timeout_ms / 1000) as resp:
            raw = resp.read(BODY_SNIPPET_CHARS * 4)
            return AttemptResult(resp.status, f"HTTP {resp.status} {_snippet(raw)}".strip())
    except urllib.error.HTTPError as exc:
        try:
            raw = exc.read(BODY_SNIPPET_CHARS * 4)
        except (OSError, http.client.HTTPException):
            raw = b""
        retry_after = parse_retry_after(exc.headers.get("Retry-After"), now_ms)
        exc.close()
        return AttemptResult(exc.code, f"HTTP {exc.code} {_snippet(raw)}".strip(), retry_after)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return AttemptResult(None, f"timed out after {timeout_ms} ms")
        return AttemptResult(None, f"connection failed: {type(reason).__name__}: {reason}")
    except TimeoutError:
        return AttemptResult(None, f"timed out after {timeout_ms} ms")
    except (OSError, http.client.HTTPException) as exc:
        return AttemptResult(None, f"connection failed: {type(exc).__name__}: {exc}")


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class Notifier:
    """Delivers alerts to the destinations of a config; thread-safe for one caller at a time.

    ``stop`` (a :class:`threading.Event`) cuts retry waits short: a delivery
    interrupted that way reports ``interrupted`` and is neither delivered nor
    given up.
    """

    def __init__(
        self,
        config: NotifyConfig,
        *,
        transport: Transport = urllib_transport,
        clock_ms: Callable[[], int] | None = None,
        rand: Callable[[], float] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self._transport = transport
        self._clock_ms = clock_ms or (lambda: time.monotonic_ns() // 1_000_000)
        self._rand = rand or random.random
        self._stop = stop or threading.Event()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(config.destinations)), thread_name_prefix="relsec-notify"
        )
        # per destination: the earliest monotonic ms the next request may start
        self._next_slot: dict[str, int] = {}
        self._slot_lock = threading.Lock()

    def _sleep_ms(self, wait_ms: int) -> bool:
        return not self._stop.wait(wait_ms / 1000)

    def _wait_for_slot(self, dest: Destination) -> bool:
        """Keep ``dest``'s requests ``min_interval_ms`` apart; ``False`` when stopped meanwhile."""
        if dest.min_interval_ms <= 0:
            return True
        with self._slot_lock:
            now = self._clock_ms()
            start = max(now, self._next_slot.get(dest.name, now))
            self._next_slot[dest.name] = start + dest.min_interval_ms
        wait = start - now
        return wait <= 0 or self._sleep_ms(wait)

    def deliver_to(self, dest: Destination, alert: Mapping[str, Any]) -> DeliveryResult:
        """Deliver one alert to one destination, retrying per the policy."""
        return self.send(dest, build_request(dest, alert))

    def send(
        self, dest: Destination, request: OutboundRequest, notice: Notice | None = None
    ) -> DeliveryResult:
        """POST ``request`` to ``dest``, spaced and retried per the policy."""
        timeout_ms = self.config.retry.request_timeout_ms
        secrets = dest.secrets()

        def attempt() -> AttemptResult:
            if not self._wait_for_slot(dest):
                return AttemptResult(None, "stopped while waiting for a send slot")
            result = self._transport(request, timeout_ms)
            return AttemptResult(
                result.status, redact(result.detail, secrets), result.retry_after_ms
            )

        outcome = deliver_with_retry(
            attempt,
            self.config.retry,
            clock_ms=self._clock_ms,
            sleep_ms=self._sleep_ms,
            rand=self._rand,
        )
        if self._stop.is_set() and not outcome.ok and not outcome.interrupted:
            outcome = DeliveryOutcome(
                False,
                outcome.attempts,
                outcome.status,
                "stopped while delivering",
                outcome.elapsed_ms,
                outcome.waits_ms,
                interrupted=True,
            )
        return DeliveryResult(dest, outcome, notice)

    def deliver(
        self, alert: Mapping[str, Any], destinations: tuple[Destination, ...] | None = None
    ) -> list[DeliveryResult]:
        """Deliver one alert to every destination :func:`route` picks, side by side.

        ``destinations``: route among these (default: all of the config).
        """
        targets = route(alert, self.config.destinations if destinations is None else destinations)
        if len(targets) <= 1:
            return [self.deliver_to(d, alert) for d in targets]
        futures = [self._pool.submit(self.deliver_to, d, alert) for d in targets]
        return [f.result() for f in futures]

    def deliver_group(self, snapshot: GroupSnapshot, notices: list[Notice]) -> list[DeliveryResult]:
        """Send each notice about one group to its destination, side by side."""
        requests = [(n, build_group_request(n.destination, snapshot, n)) for n in notices]
        if len(requests) <= 1:
            return [self.send(n.destination, r, n) for n, r in requests]
        futures = [self._pool.submit(self.send, n.destination, r, n) for n, r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
