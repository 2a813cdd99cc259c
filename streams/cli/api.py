"""``relsec api`` (the read model, the check, the integrations, the timeline page) and
``relsec check`` (a verdict for CI pipelines, from a running ``relsec api``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any, Final

from agents.errors import ConfigError
from streams.cli import add_kafka_options

DEFAULT_PORT: Final = 8088
DEFAULT_API_URL: Final = f"http://127.0.0.1:{DEFAULT_PORT}"
EXIT_ALLOW: Final = 0
EXIT_WARN: Final = 1
EXIT_DENY: Final = 2
EXIT_UNAVAILABLE: Final = 3
EXIT_FOR_VERDICT: Final = {"allow": EXIT_ALLOW, "warn": EXIT_WARN, "deny": EXIT_DENY}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser(
        "api",
        help="serve the status API, the check and the timeline page from the worker's state",
        description="Follows the worker's state changelog, the alerts and the input topics "
        "(no consumer group, nothing committed) and answers over HTTP. Secrets come from the "
        "environment only: RELSEC_API_TOKEN (bearer token; required off loopback), "
        "RELSEC_GITHUB_WEBHOOK_SECRET, RELSEC_GITHUB_APP_ID, RELSEC_GITHUB_TOKEN.",
    )
    add_kafka_options(a)
    a.add_argument(
        "--host",
        default=os.environ.get("RELSEC_API_HOST", "127.0.0.1"),
        help="bind address (default $RELSEC_API_HOST or 127.0.0.1; elsewhere a token is required)",
    )
    a.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("RELSEC_API_PORT", DEFAULT_PORT)),
        help=f"port (default $RELSEC_API_PORT or {DEFAULT_PORT}; 0 picks a free one)",
    )
    a.add_argument(
        "--policy",
        default=os.environ.get("RELSEC_CHECK_POLICY"),
        help="YAML file: which rule outcomes deny and which warn (default: the built-in policy)",
    )
    a.add_argument(
        "--allowed-lateness",
        default=None,
        help="the workers' allowed lateness (default $RELSEC_ALLOWED_LATENESS or 24h)",
    )
    a.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate (PEM)")
    a.add_argument("--tls-key", default=None, help="the certificate's private key (PEM)")
    a.add_argument(
        "--tls-client-ca",
        default=None,
        help="accept client certificates signed by this CA as authentication (Gatekeeper mTLS)",
    )
    a.add_argument(
        "--history-days",
        type=float,
        default=400.0,
        help="event time kept per service for the timeline, behind its newest event (400)",
    )
    a.add_argument(
        "--history-max-events",
        type=int,
        default=500_000,
        help="events kept per service for the timeline, newest first (500000)",
    )
    a.add_argument("--request-timeout", type=float, default=10.0, help="seconds per request")
    a.add_argument(
        "--github-api-url",
        default=os.environ.get("RELSEC_GITHUB_API_URL", "https://api.github.com"),
        help="GitHub's REST API (GitHub Enterprise: https://HOST/api/v3)",
    )
    a.add_argument(
        "--github-private-key",
        default=os.environ.get("RELSEC_GITHUB_PRIVATE_KEY_PATH"),
        help="the GitHub App's private key file (PEM)",
    )
    a.add_argument(
        "--github-service",
        action="append",
        default=[],
        metavar="OWNER/REPO=SERVICE",
        help="the relsec service of a repository (default: the repository's name)",
    )
    a.add_argument(
        "--github-environment",
        action="append",
        default=[],
        metavar="GITHUB_ENV=ENVIRONMENT",
        help="the relsec environment of a GitHub environment (default: the same name)",
    )
    a.add_argument(
        "--github-warn",
        choices=("approve", "reject"),
        default="approve",
        help="what a 'warn' verdict answers GitHub (default approve, with the warning)",
    )
    a.add_argument("--loglevel", default="warning")
    a.set_defaults(func=run_api)

    c = sub.add_parser(
        "check",
        help="ask a running relsec api whether a deploy or rollback should go ahead",
        description="Prints the verdict and exits 0 (allow), 1 (warn), 2 (deny), or 3 when "
        "the API cannot answer (unreachable, loading, refused); --on-unavailable allow|deny "
        "turns that into 0 or 2. The API's address comes from --api-url or RELSEC_API_URL, "
        "a bearer token from RELSEC_API_TOKEN.",
    )
    c.add_argument("service")
    c.add_argument("environment")
    c.add_argument("release")
    c.add_argument("--action", choices=("deploy", "rollback"), default="deploy")
    c.add_argument("--team", choices=("sre", "security", "dev"), default=None)
    c.add_argument("--actor", default=None, help="who is making the change (free text)")
    c.add_argument(
        "--alias",
        action="append",
        default=[],
        help="another name of the release (an image digest, a commit SHA); repeatable",
    )
    c.add_argument(
        "--api-url",
        default=os.environ.get("RELSEC_API_URL", DEFAULT_API_URL),
        help=f"the relsec api (default $RELSEC_API_URL or {DEFAULT_API_URL})",
    )
    c.add_argument("--ca-file", default=None, help="CA bundle to trust for an HTTPS api")
    c.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the answer")
    c.add_argument(
        "--on-unavailable",
        choices=("fail", "allow", "deny"),
        default="fail",
        help="when the API cannot answer: exit 3 (fail, default), 0 (allow: fail open) "
        "or 2 (deny: fail closed)",
    )
    c.add_argument("--json", action="store_true", help="print the API's whole JSON answer")
    c.set_defaults(func=run_check_command)


# -- relsec api ----------------------------------------------------------------------


def build_api(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(api, follower, settings)`` from the options: nothing started yet."""
    import time

    from agents.engine import EngineConfig
    from agents.model.timefmt import MS_PER_DAY
    from streams.api.github import GitHubConfig
    from streams.api.history import HistoryStore
    from streams.api.policy import load_policy
    from streams.api.readmodel import ReadModel
    from streams.api.server import Api, ApiOptions
    from streams.api.source import TopicFollower, topic_kinds
    from streams.settings import Settings

    settings = Settings.resolve(
        bootstrap_servers=args.bootstrap_servers,
        topic_prefix=args.topic_prefix,
        allowed_lateness=args.allowed_lateness,
    )
    env = os.environ
    github = GitHubConfig.build(
        webhook_secret=env.get("RELSEC_GITHUB_WEBHOOK_SECRET") or None,
        api_url=args.github_api_url,
        app_id=env.get("RELSEC_GITHUB_APP_ID") or None,
        private_key_path=args.github_private_key,
        token=env.get("RELSEC_GITHUB_TOKEN") or None,
        services=args.github_service,
        environments=args.github_environment,
        warn_state="approved" if args.github_warn == "approve" else "rejected",
    )
    options = ApiOptions(
        host=args.host,
        port=args.port,
        token=env.get("RELSEC_API_TOKEN") or None,
        policy=load_policy(args.policy),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        request_timeout_s=args.request_timeout,
        github=github,
    )
    options.validate()

    def clock() -> int:
        return time.time_ns() // 1_000_000

    model = ReadModel(
        EngineConfig(allowed_lateness_ms=settings.allowed_lateness_ms),
        clock,
        topic_kinds(settings),
        HistoryStore(int(args.history_days * MS_PER_DAY), args.history_max_events),
    )
    follower = TopicFollower(settings, model, clock)
    return Api(model, options, follower), follower, settings


def run_api(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    api, follower, settings = build_api(args)
    return asyncio.run(_serve(api, follower, settings))


async def _serve(api: Any, follower: Any, settings: Any) -> int:
    from streams.api.server import ApiServer

    server = ApiServer(api)
    await server.start()
    follower.start()
    opts = api.options
    auth = "bearer token required" if opts.token else "no token (loopback only)"
    print(
        f"relsec api: {server.url} (timeline {server.url}/ui/), {auth}; following "
        f"{settings.topics.state_changelog} on {settings.bootstrap_servers}",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
        follower.stop()
    return 0


# -- relsec check --------------------------------------------------------------------


class Unavailable(Exception):
    """The API gave no verdict (not a relsec error: ``relsec check`` maps it to exit 3)."""


async def fetch_verdict(
    api_url: str,
    params: dict[str, Any],
    token: str | None,
    timeout_s: float,
    ca_file: str | None = None,
) -> dict[str, Any]:
    """POST the check to a relsec api; :class:`Unavailable` when no verdict comes back."""
    import ssl

    import aiohttp

    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    ssl_ctx: ssl.SSLContext | bool = True
    if ca_file:
        ssl_ctx = ssl.create_default_context(cafile=ca_file)
    url = api_url.rstrip("/") + "/v1/check"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.post(url, json=params, headers=headers, ssl=ssl_ctx) as resp,
        ):
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
            if resp.status != 200 or not isinstance(body, dict) or "verdict" not in body:
                detail = body.get("error") if isinstance(body, dict) else None
                raise Unavailable(f"{url} answered HTTP {resp.status}: {detail or 'no verdict'}")
            return body
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise Unavailable(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None


def run_check_command(args: argparse.Namespace) -> int:
    import orjson

    from streams.api.check import verdict_text

    params: dict[str, Any] = {
        "service": args.service,
        "environment": args.environment,
        "release": args.release,
        "action": args.action,
        "team": args.team,
        "actor": args.actor,
        "aliases": args.alias,
    }
    try:
        answer = asyncio.run(
            fetch_verdict(
                args.api_url,
                params,
                os.environ.get("RELSEC_API_TOKEN") or None,
                args.timeout,
                args.ca_file,
            )
        )
    except Unavailable as exc:
        code = {"fail": EXIT_UNAVAILABLE, "allow": EXIT_ALLOW, "deny": EXIT_DENY}[
            args.on_unavailable
        ]
        what = {"fail": "no verdict", "allow": "failing open", "deny": "failing closed"}[
            args.on_unavailable
        ]
        print(f"relsec check: {what}: {exc}", file=sys.stderr)
        return code
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(verdict_text(answer))
    verdict = answer["verdict"]
    if verdict not in EXIT_FOR_VERDICT:
        raise ConfigError(f"the API answered an unknown verdict {verdict!r}")
    return EXIT_FOR_VERDICT[verdict]
