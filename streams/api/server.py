"""The HTTP server of ``relsec api`` (aiohttp): JSON answers, the check, the integrations,
the timeline page.

Endpoints (JSON shapes in docs/api.md):

* ``GET /healthz`` — ready: 200 once the read model has read every topic to its end
  and its consumer runs, else 503 (loading / failing); ``GET /livez`` — the consumer
  thread turns;
* ``GET /v1/services`` — every service, those with active conflicts first;
* ``GET /v1/services/{service}`` — the status of a service, per environment;
* ``GET /v1/services/{service}/timeline`` — what the timeline page draws;
* ``GET|POST /v1/check`` — the verdict for a change (503 while the state is loading);
* ``GET /v1/policy`` — the check's policy in force;
* ``POST /v1/github/deployment-protection-rule`` — GitHub's webhook (HMAC-signed);
  ``GET /v1/github/reviews`` — the last review calls made;
* ``POST /v1/gatekeeper/provider`` — Gatekeeper external data;
* ``/ui/`` — the index of services and the timeline page (static files).

Security: bound to 127.0.0.1 unless told otherwise; bound elsewhere, a bearer token is
required (``RELSEC_API_TOKEN``; the server refuses to start without one). ``/v1/``
answers need the token (``Authorization: Bearer …``) or, with ``--tls-client-ca``, a
verified client certificate (Gatekeeper's mutual TLS); GitHub's webhook is checked by
its signature instead. Every handler has a deadline (``request_timeout_s``), bodies
are capped at 1 MiB, idle keep-alive connections close after 15 s.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web

from agents.errors import ConfigError, ValidationError
from agents.model.timefmt import format_rfc3339_ms
from streams.api.check import CheckRequest, run_check
from streams.api.gatekeeper import parse_provider_request, provider_response
from streams.api.github import (
    GitHubClient,
    GitHubConfig,
    ProtectionRequest,
    check_request_for,
    parse_protection_request,
    pending_body,
    review_body,
    validate_callback_url,
)
from streams.api.history import build_timeline
from streams.api.policy import DEFAULT_POLICY, Policy
from streams.api.readmodel import (
    ReadModel,
    environments_now,
    group_alerts,
    service_status,
    services_index,
)
from streams.api.source import CHANGELOG, TopicFollower
from streams.ingest.errors import AdapterError
from streams.notify.errors import DeliveryError

log = logging.getLogger("relsec.api")

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES: Final = 1024 * 1024
KEEPALIVE_TIMEOUT_S: Final = 15.0
GITHUB_WEBHOOK_PATH: Final = "/v1/github/deployment-protection-rule"
STALL_AFTER_MS: Final = 30_000
TIMELINE_CACHE_SERVICES: Final = 64
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """How ``relsec api`` serves (secrets hidden from repr)."""

    host: str = "127.0.0.1"
    port: int = 8088
    token: str | None = field(default=None, repr=False)
    policy: Policy = DEFAULT_POLICY
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    request_timeout_s: float = 10.0
    github: GitHubConfig = field(default_factory=GitHubConfig)

    def validate(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"relsec api bound to {self.host} needs a bearer token (set RELSEC_API_TOKEN): "
                "off the loopback interface every answer must be authenticated"
            )
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("RELSEC_API_TOKEN must be at least 16 characters")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key (HTTPS)")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls_cert:
            return None
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_client_ca:
                context.load_verify_locations(self.tls_client_ca)
                # Optional at the TLS layer (the page and curl come without one); the
                # handlers accept a verified certificate as authentication.
                context.verify_mode = ssl.CERT_OPTIONAL
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load TLS files (cert {self.tls_cert}, key {self.tls_key}, client CA "
                f"{self.tls_client_ca}): {exc}"
            ) from None
        return context

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Api:
    """The handlers over one read model."""

    def __init__(
        self,
        model: ReadModel,
        options: ApiOptions,
        follower: TopicFollower | None = None,
    ) -> None:
        self.model = model
        self.options = options
        self.follower = follower
        self.github = GitHubClient(options.github)
        self.reviews: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timelines: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        """Per service the last timeline built, and the versions it was built from."""

    # -- the application -------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._guard], client_max_size=MAX_BODY_BYTES, handler_args={
                "keepalive_timeout": KEEPALIVE_TIMEOUT_S,
            },
        )
        r = app.router
        r.add_get("/", self.root)
        r.add_get("/healthz", self.healthz)
        r.add_get("/livez", self.livez)
        r.add_get("/v1/services", self.services)
        r.add_get("/v1/services/{service}", self.service)
        r.add_get("/v1/services/{service}/timeline", self.timeline)
        r.add_get("/v1/check", self.check)
        r.add_post("/v1/check", self.check)
        r.add_get("/v1/policy", self.policy)
        r.add_post(GITHUB_WEBHOOK_PATH, self.github_webhook)
        r.add_get("/v1/github/reviews", self.github_reviews)
        r.add_post("/v1/gatekeeper/provider", self.gatekeeper)
        r.add_get("/ui/", self.ui_index)
        r.add_get("/ui/service", self.ui_service)
        r.add_get("/ui/assets/{name}", self.ui_asset)
        app.on_shutdown.append(self._cancel_tasks)
        return app

    async def _cancel_tasks(self, _app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _authorized(self, request: web.Request) -> bool:
        opts = self.options
        if opts.token is None and not opts.tls_client_ca:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if (
            opts.token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), opts.token.encode())
        ):
            return True
        if opts.tls_client_ca and request.transport is not None:
            # With CERT_OPTIONAL a presented certificate was verified by the handshake.
            return bool(request.transport.get_extra_info("peercert"))
        return False

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/v1/") and path != GITHUB_WEBHOOK_PATH and not self._authorized(
            request
        ):
            response: web.StreamResponse = _error(401, "a bearer token is required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="relsec"'
            return response
        try:
            async with asyncio.timeout(self.options.request_timeout_s):
                response = await handler(request)
        except TimeoutError:
            return _error(503, f"no answer within {self.options.request_timeout_s:g} s")
        except ValidationError as exc:
            return _error(400, str(exc), field=exc.field, reason=exc.reason)
        except AdapterError as exc:
            return _error(400, str(exc), path=exc.path)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if path.startswith("/ui/"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    # -- health ---------------------------------------------------------------------

    def _source_state(self) -> dict[str, Any]:
        f = self.follower
        if f is None:
            return {"alive": True, "error": None, "stalled": False}
        stalled = f.alive and self.model.clock() - f.turned_ms > STALL_AFTER_MS
        return {"alive": f.alive, "error": f.error, "stalled": stalled}

    async def healthz(self, _request: web.Request) -> web.Response:
        source = self._source_state()
        failing = not source["alive"] or source["stalled"]
        caught_up = self.model.caught_up()
        status = "failing" if failing else ("ok" if caught_up else "loading")
        return _json(
            {
                "status": status,
                "check_ready": not failing and self.model.caught_up(CHANGELOG),
                "source": source,
                "freshness": self.model.freshness(),
                "services": len(self.model.services()),
                "bad_records": dict(self.model.bad_records),
                "last_error": self.model.last_error,
            },
            200 if status == "ok" else 503,
        )

    async def livez(self, _request: web.Request) -> web.Response:
        source = self._source_state()
        ok = source["alive"] and not source["stalled"]
        return _json({"alive": ok, **source}, 200 if ok else 503)

    # -- answers ----------------------------------------------------------------------

    async def services(self, _request: web.Request) -> web.Response:
        return _json({"services": services_index(self.model), "freshness": self.model.freshness()})

    async def service(self, request: web.Request) -> web.Response:
        name = request.match_info["service"]
        status = service_status(self.model, name)
        if status is None:
            return self._unknown(name)
        return _json(status)

    async def timeline(self, request: web.Request) -> web.Response:
        name = request.match_info["service"]
        stored = self.model.stored(name)
        key = (
            self.model.history.version(name),
            self.model.alerts.version(name),
            stored.offset if stored else -1,
        )
        cached = self._timelines.get(name)
        if cached is not None and cached[0] == key:
            body = cached[1]
        else:
            if stored is None and key == (0, 0, -1):
                return self._unknown(name)
            environments = environments_now(self.model, name)
            body = {
                "service": name,
                "timeline": build_timeline(self.model.history.events_of(name)),
                "alerts": group_alerts(self.model.alerts.active(name)),
                "environments": environments,
            }
            if len(self._timelines) >= TIMELINE_CACHE_SERVICES:
                self._timelines.pop(next(iter(self._timelines)))
            self._timelines[name] = (key, body)
        return _json(
            {
                **body,
                "generated_at": format_rfc3339_ms(self.model.clock()),
                "freshness": self.model.freshness(),
            }
        )

    def _unknown(self, name: str) -> web.Response:
        return _error(404, f"relsec knows no service {name!r}", freshness=self.model.freshness())

    def _check_unavailable(self) -> str | None:
        source = self._source_state()
        if not source["alive"] or source["stalled"]:
            return f"the read model's consumer is not running ({source['error'] or 'stalled'})"
        if not self.model.caught_up(CHANGELOG):
            fresh = self.model.freshness(CHANGELOG)[CHANGELOG]
            return (
                f"the read model is catching up on the state changelog "
                f"({fresh['records_behind']} records behind)"
            )
        return None

    def answer(self, request: CheckRequest) -> dict[str, Any]:
        engine = self.model.engine(request.service)
        answer = run_check(engine, request, self.options.policy, self.model.clock())
        answer["freshness"] = self.model.freshness(CHANGELOG)
        return answer

    async def check(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                params = orjson.loads(await request.read())
            except orjson.JSONDecodeError as exc:
                return _error(400, f"the body is not JSON: {exc}")
            if not isinstance(params, dict):
                return _error(400, "the body must be a JSON object")
        else:
            params = dict(request.query)
        check_request = CheckRequest.from_params(params)
        unavailable = self._check_unavailable()
        if unavailable:
            return _error(503, unavailable, freshness=self.model.freshness(CHANGELOG))
        return _json(self.answer(check_request))

    async def policy(self, _request: web.Request) -> web.Response:
        return _json({"source": self.options.policy.source, **self.options.policy.to_dict()})

    # -- GitHub ---------------------------------------------------------------------

    async def github_webhook(self, request: web.Request) -> web.Response:
        from streams.ingest.errors import SignatureError
        from streams.ingest.signatures import Secrets, verify

        cfg = self.options.github
        if cfg.webhook_secret is None:
            return _error(404, "the GitHub integration is not configured")
        body = await request.read()
        try:
            secrets = Secrets(hmac_keys={"github": cfg.webhook_secret})
            verify("github", request.headers, body, secrets)
        except SignatureError as exc:
            return _error(401, str(exc))
        event = request.headers.get("X-GitHub-Event", "")
        delivery = request.headers.get("X-GitHub-Delivery", "")
        if event == "ping":
            return _json({"ok": True})
        if event != "deployment_protection_rule":
            return _json({"ignored": event}, 202)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        protection = parse_protection_request(payload)
        validate_callback_url(protection.callback_url, cfg.api_url)
        check_request_for(protection, cfg)  # a payload we cannot map fails now, with its path
        task = asyncio.get_running_loop().create_task(self._review(protection, delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return _json({"accepted": True, "delivery": delivery}, 202)

    async def _review(self, protection: ProtectionRequest, delivery: str) -> None:
        cfg = self.options.github
        record: dict[str, Any] = {
            "delivery": delivery,
            "repository": protection.repository,
            "environment": protection.environment,
            "received_at": format_rfc3339_ms(self.model.clock()),
        }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.wait_s
        while (why := self._check_unavailable()) and loop.time() < deadline:
            await asyncio.sleep(0.5)
        if why:
            body = pending_body(protection, why)
            record["verdict"] = None
        else:
            answer = self.answer(check_request_for(protection, cfg))
            body = review_body(protection, answer, cfg)
            record["verdict"] = answer["verdict"]
        record["state"] = body.get("state")
        try:
            record["status"] = await self.github.review(protection, body)
        except (DeliveryError, AdapterError) as exc:
            record["error"] = str(exc)
            log.warning("GitHub review for %s failed: %s", protection.repository, exc)
        self.reviews.append(record)

    async def github_reviews(self, _request: web.Request) -> web.Response:
        return _json({"reviews": list(self.reviews)})

    # -- Gatekeeper -----------------------------------------------------------------------

    async def gatekeeper(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        api_version, keys = parse_provider_request(body)
        unavailable = self._check_unavailable()
        return _json(provider_response(api_version, keys, self.answer, system_error=unavailable))

    # -- the page ---------------------------------------------------------------------------

    async def root(self, _request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def ui_index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def ui_service(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "service.html")

    async def ui_asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC_DIR / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)


class ApiServer:
    """The server bound and serving on the running event loop; :meth:`close` stops it."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.runner: web.AppRunner | None = None
        self.port = api.options.port

    async def start(self) -> None:
        opts = self.api.options
        opts.validate()
        self.runner = web.AppRunner(self.api.app(), access_log=None, shutdown_timeout=5.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, opts.host, opts.port, ssl_context=opts.ssl_context())
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        opts = self.api.options
        host = opts.host if ":" not in opts.host else f"[{opts.host}]"
        return f"{opts.scheme}://{host}:{self.port}"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
