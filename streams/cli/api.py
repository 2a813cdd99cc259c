"""``relsec api`` (the read model, the check, the integrations, the timeline page) and
``relsec check`` (a verdict for CI pipelines, from a running ``relsec api``)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any, Final

from agents.errors import ConfigError
from streams.settings import (
    BOOLEAN,
    INTEGER,
    JUDGMENT,
    KAFKA_FLAGS,
    NUMBER,
    TEXT,
    Setting,
    add_flags,
    at_least,
    not_empty,
)

DEFAULT_PORT: Final = 8088
DEFAULT_API_URL: Final = f"http://127.0.0.1:{DEFAULT_PORT}"
EXIT_ALLOW: Final = 0
EXIT_WARN: Final = 1
EXIT_DENY: Final = 2
EXIT_UNAVAILABLE: Final = 3
EXIT_FOR_VERDICT: Final = {"allow": EXIT_ALLOW, "warn": EXIT_WARN, "deny": EXIT_DENY}


API_HOST: Final = Setting(
    "host",
    TEXT,
    "127.0.0.1",
    "bind address (elsewhere a token is required)",
    env="RELSEC_API_HOST",
    check=not_empty,
)
API_PORT: Final = Setting(
    "port",
    INTEGER,
    DEFAULT_PORT,
    "port (0 picks a free one)",
    env="RELSEC_API_PORT",
    check=at_least(0),
)
CHECK_POLICY: Final = Setting(
    "policy",
    TEXT,
    None,
    "YAML file: which rule outcomes deny and which warn",
    env="RELSEC_CHECK_POLICY",
    default_text="the built-in policy",
)
API_TOKEN: Final = Setting(
    "api_token",
    TEXT,
    None,
    "the API's bearer token (required off loopback; relsec check sends it)",
    env="RELSEC_API_TOKEN",
    flag=None,
    secret=True,
)
GITHUB_WEBHOOK_SECRET: Final = Setting(
    "github_webhook_secret",
    TEXT,
    None,
    "the GitHub App's webhook secret",
    env="RELSEC_GITHUB_WEBHOOK_SECRET",
    flag=None,
    secret=True,
)
GITHUB_APP_ID: Final = Setting(
    "github_app_id", TEXT, None, "the GitHub App's id", env="RELSEC_GITHUB_APP_ID", flag=None
)
GITHUB_TOKEN: Final = Setting(
    "github_token",
    TEXT,
    None,
    "a GitHub token (instead of App credentials)",
    env="RELSEC_GITHUB_TOKEN",
    flag=None,
    secret=True,
)
API_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    *KAFKA_FLAGS,
    API_HOST,
    API_PORT,
    CHECK_POLICY,
    *JUDGMENT,
    Setting("tls_cert", TEXT, None, "serve HTTPS with this certificate (PEM)"),
    Setting("tls_key", TEXT, None, "the certificate's private key (PEM)"),
    Setting(
        "tls_client_ca",
        TEXT,
        None,
        "accept client certificates signed by this CA as authentication (Gatekeeper mTLS)",
    ),
    Setting(
        "history_days",
        NUMBER,
        400.0,
        "event time kept per service for the timeline, behind its newest event",
        check=at_least(0),
    ),
    Setting(
        "history_max_events",
        INTEGER,
        500_000,
        "events kept per service for the timeline, newest first",
        check=at_least(1),
    ),
    Setting("request_timeout", NUMBER, 10.0, "seconds per request", check=at_least(0)),
    Setting(
        "github_api_url",
        TEXT,
        "https://api.github.com",
        "GitHub's REST API (GitHub Enterprise: https://HOST/api/v3)",
        env="RELSEC_GITHUB_API_URL",
        check=not_empty,
    ),
    Setting(
        "github_private_key",
        TEXT,
        None,
        "the GitHub App's private key file (PEM)",
        env="RELSEC_GITHUB_PRIVATE_KEY_PATH",
    ),
    Setting(
        "github_service",
        TEXT,
        None,
        "the relsec service of a repository (repeatable; default: the repository's name)",
        metavar="OWNER/REPO=SERVICE",
        repeat=True,
        default_text="the repository's name",
    ),
    Setting(
        "github_environment",
        TEXT,
        None,
        "the relsec environment of a GitHub environment (repeatable)",
        metavar="GITHUB_ENV=ENVIRONMENT",
        repeat=True,
        default_text="the same name",
    ),
    Setting(
        "github_warn",
        TEXT,
        "approve",
        "what a 'warn' verdict answers GitHub (with the warning)",
        choices=("approve", "reject"),
    ),
    Setting("loglevel", TEXT, "warning", "log level"),
    API_TOKEN,
    GITHUB_WEBHOOK_SECRET,
    GITHUB_APP_ID,
    GITHUB_TOKEN,
)
"""What ``relsec api`` reads (and the connection's security, :data:`streams.settings.SECURITY`)."""

CHECK_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting("action", TEXT, "deploy", "what is about to happen", choices=("deploy", "rollback")),
    Setting("team", TEXT, None, "who asks", choices=("sre", "security", "dev")),
    Setting("actor", TEXT, None, "who is making the change (free text)"),
    Setting(
        "alias",
        TEXT,
        None,
        "another name of the release (an image digest, a commit SHA); repeatable",
        repeat=True,
    ),
    Setting(
        "api_url", TEXT, DEFAULT_API_URL, "the relsec api", env="RELSEC_API_URL", check=not_empty
    ),
    Setting("ca_file", TEXT, None, "CA bundle to trust for an HTTPS api"),
    Setting("timeout", NUMBER, 15.0, "seconds to wait for the answer", check=at_least(0)),
    Setting(
        "on_unavailable",
        TEXT,
        "fail",
        "when the API cannot answer: exit 3 (fail), 0 (allow: fail open) or 2 (deny: fail closed)",
        choices=("fail", "allow", "deny"),
    ),
    Setting("json", BOOLEAN, False, "print the API's whole JSON answer"),
    API_TOKEN,
)
"""What ``relsec check`` reads."""

COMMANDS: Final = {"api": API_SETTINGS, "check": CHECK_SETTINGS}
"""The declarations of each command of this module (``relsec settings`` lists them)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser(
        "api",
        help="serve the status API, the check and the timeline page from the worker's state",
        description="Follows the worker's state changelog, the alerts and the input topics "
        "(no consumer group, nothing committed) and answers over HTTP. Secrets come from the "
        "environment only: RELSEC_API_TOKEN (bearer token; required off loopback), "
        "RELSEC_GITHUB_WEBHOOK_SECRET, RELSEC_GITHUB_APP_ID, RELSEC_GITHUB_TOKEN.",
    )
    add_flags(a, API_SETTINGS)
    a.set_defaults(func=run_api, settings=API_SETTINGS)

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
    add_flags(c, CHECK_SETTINGS)
    c.set_defaults(func=run_check_command, settings=CHECK_SETTINGS)


# -- relsec api ----------------------------------------------------------------------


def build_api(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(api, follower, settings)`` from the options: nothing started yet."""
    import time

    from agents.model.timefmt import MS_PER_DAY
    from streams.api.github import GitHubConfig
    from streams.api.history import HistoryStore
    from streams.api.policy import load_policy
    from streams.api.readmodel import ReadModel
    from streams.api.server import Api, ApiOptions
    from streams.api.source import TopicFollower, topic_kinds
    from streams.settings import Settings

    settings = Settings.from_args(args)
    github = GitHubConfig.build(
        webhook_secret=args.github_webhook_secret,
        api_url=args.github_api_url,
        app_id=args.github_app_id,
        private_key_path=args.github_private_key,
        token=args.github_token,
        services=args.github_service,
        environments=args.github_environment,
        warn_state="approved" if args.github_warn == "approve" else "rejected",
    )
    options = ApiOptions(
        host=args.host,
        port=args.port,
        token=args.api_token,
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
        settings.engine_config(),
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
                args.api_token,
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
