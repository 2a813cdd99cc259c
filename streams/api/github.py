"""GitHub custom deployment protection rules: the webhook in, the review call out.

GitHub sends ``deployment_protection_rule`` (action ``requested``) to a GitHub App's
webhook when a workflow job targets an environment the App protects. relsec answers
by calling ``POST {deployment_callback_url}`` (the REST endpoint
``/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule``) as the App's
installation, with ``{"environment_name", "state": "approved"|"rejected", "comment"}``,
or, when it cannot answer, with a comment only, which leaves the gate pending for a
person (the request body's other documented shape).

Mapping (decisions in docs/decisions.md):

* service: ``--github-service OWNER/REPO=SERVICE``, else the repository's name;
* environment: ``--github-environment GITHUB_ENV=ENVIRONMENT``, else the same name;
* release: ``deployment.payload.release`` when the workflow sets one, else the commit
  SHA (``sha``, or ``deployment.sha``); the SHA is also passed as a release alias;
* action: ``deployment.payload.action`` (``rollback``), else ``deploy``;
* ``warn`` approves with the warning in the comment (``--github-warn reject`` to refuse).

The callback URL must lie under the configured API URL: relsec never sends its
installation token anywhere else, whatever a payload says.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agents.errors import ConfigError
from streams.api.check import CheckRequest, verdict_text
from streams.ingest.errors import AdapterError
from streams.notify.errors import DeliveryError

GITHUB_API: Final = "https://api.github.com"
API_VERSION: Final = "2022-11-28"
ACCEPT: Final = "application/vnd.github+json"
MAX_COMMENT_CHARS: Final = 4000
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
_CALLBACK_PATH: Final = re.compile(
    r"^/repos/[^/]+/[^/]+/actions/runs/\d+/deployment_protection_rule$"
)


@dataclass(frozen=True, slots=True)
class ProtectionRequest:
    """The fields of a ``deployment_protection_rule`` payload relsec uses."""

    environment: str
    callback_url: str
    repository: str
    installation_id: int | None
    sha: str | None
    ref: str | None
    event: str | None
    deployment_id: int | None
    release_hint: str | None
    action_hint: str | None
    sender: str | None


def _get(obj: Any, path: str) -> Any:
    value = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _opt_str(obj: Any, path: str) -> str | None:
    value = _get(obj, path)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AdapterError("github", f"$.{path}", f"must be a string, got {type(value).__name__}")
    return value or None


def _req_str(obj: Any, path: str) -> str:
    value = _opt_str(obj, path)
    if value is None:
        raise AdapterError("github", f"$.{path}", "is required")
    return value


def _opt_int(obj: Any, path: str) -> int | None:
    value = _get(obj, path)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise AdapterError("github", f"$.{path}", f"must be an integer, got {type(value).__name__}")
    return value


def parse_protection_request(payload: Any) -> ProtectionRequest:
    """Validate a ``deployment_protection_rule`` payload; :class:`AdapterError` names the path."""
    if not isinstance(payload, Mapping):
        raise AdapterError("github", "$", "the payload must be a JSON object")
    action = _opt_str(payload, "action")
    if action != "requested":
        raise AdapterError("github", "$.action", f"{action!r} is not 'requested'")
    deployment_payload = _get(payload, "deployment.payload")
    release_hint = action_hint = None
    if isinstance(deployment_payload, Mapping):
        release_hint = _opt_str(deployment_payload, "release")
        action_hint = _opt_str(deployment_payload, "action")
    return ProtectionRequest(
        environment=_req_str(payload, "environment"),
        callback_url=_req_str(payload, "deployment_callback_url"),
        repository=_req_str(payload, "repository.full_name"),
        installation_id=_opt_int(payload, "installation.id"),
        sha=_opt_str(payload, "sha") or _opt_str(payload, "deployment.sha"),
        ref=_opt_str(payload, "ref") or _opt_str(payload, "deployment.ref"),
        event=_opt_str(payload, "event"),
        deployment_id=_opt_int(payload, "deployment.id"),
        release_hint=release_hint,
        action_hint=action_hint,
        sender=_opt_str(payload, "sender.login"),
    )


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        left, sep, right = item.partition("=")
        if not sep or not left or not right:
            raise ConfigError(f"{option} {item!r}: expected NAME=VALUE")
        out[left] = right
    return out


@dataclass(frozen=True, slots=True)
class GitHubConfig:
    """How relsec answers GitHub (secrets hidden from repr)."""

    webhook_secret: bytes | None = field(default=None, repr=False)
    api_url: str = GITHUB_API
    app_id: str | None = None
    private_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    """A ready installation token (instead of App credentials): for GitHub Enterprise
    set-ups that mint tokens elsewhere, and for tests."""
    services: Mapping[str, str] = field(default_factory=dict)
    environments: Mapping[str, str] = field(default_factory=dict)
    warn_state: str = APPROVED
    wait_s: float = 30.0
    """How long a request waits for the read model to catch up before relsec gives up
    and leaves the gate to a person (a comment-only review)."""

    @staticmethod
    def build(
        webhook_secret: str | None,
        api_url: str,
        app_id: str | None,
        private_key_path: str | None,
        token: str | None,
        services: list[str],
        environments: list[str],
        warn_state: str,
    ) -> GitHubConfig:
        key = None
        if private_key_path:
            try:
                with open(private_key_path, encoding="utf-8") as handle:
                    key = handle.read()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the GitHub App private key {private_key_path}: {exc.strerror}"
                ) from None
        if webhook_secret and not (token or (app_id and key)):
            raise ConfigError(
                "the GitHub integration needs App credentials (RELSEC_GITHUB_APP_ID and "
                "--github-private-key) or RELSEC_GITHUB_TOKEN to answer"
            )
        if warn_state not in (APPROVED, REJECTED):
            raise ConfigError(f"--github-warn must be approve or reject, got {warn_state!r}")
        return GitHubConfig(
            webhook_secret=webhook_secret.encode() if webhook_secret else None,
            api_url=api_url.rstrip("/"),
            app_id=app_id,
            private_key=key,
            token=token,
            services=_pairs(services, "--github-service"),
            environments=_pairs(environments, "--github-environment"),
            warn_state=warn_state,
        )

    @property
    def enabled(self) -> bool:
        return self.webhook_secret is not None


def check_request_for(req: ProtectionRequest, config: GitHubConfig) -> CheckRequest:
    """The check a protection request asks for."""
    service = config.services.get(req.repository) or req.repository.rsplit("/", 1)[-1]
    environment = config.environments.get(req.environment, req.environment)
    release = req.release_hint or req.sha
    if release is None:
        raise AdapterError(
            "github", "$.sha", "no release: neither deployment.payload.release nor a commit SHA"
        )
    aliases = tuple(a for a in (req.sha,) if a and a != release)
    action = "rollback" if req.action_hint == "rollback" else "deploy"
    return CheckRequest(
        service=service,
        environment=environment,
        release=release,
        action=action,
        actor=req.sender,
        aliases=aliases,
    )


def _clip(text: str) -> str:
    if len(text) <= MAX_COMMENT_CHARS:
        return text
    return text[: MAX_COMMENT_CHARS - 1] + "…"


def review_body(
    req: ProtectionRequest, answer: Mapping[str, Any], config: GitHubConfig
) -> dict[str, str]:
    """The review call's body for a verdict: approved / rejected with the reasons."""
    verdict = answer["verdict"]
    state = {"allow": APPROVED, "warn": config.warn_state, "deny": REJECTED}[verdict]
    comment = "relsec check — " + verdict_text(dict(answer))
    return {"environment_name": req.environment, "state": state, "comment": _clip(comment)}


def pending_body(req: ProtectionRequest, why: str) -> dict[str, str]:
    """A comment-only review: relsec could not answer; the gate stays for a person."""
    return {
        "environment_name": req.environment,
        "comment": _clip(f"relsec check could not answer ({why}); review this deployment by hand."),
    }


def validate_callback_url(url: str, api_url: str) -> None:
    """The callback must be GitHub's review endpoint under ``api_url`` (no token elsewhere)."""
    base = api_url.rstrip("/")
    if not url.startswith(base + "/"):
        raise AdapterError(
            "github", "$.deployment_callback_url", f"is not under the configured API {base}"
        )
    path = url[len(base) :]
    if not _CALLBACK_PATH.match(path):
        raise AdapterError(
            "github",
            "$.deployment_callback_url",
            "is not /repos/OWNER/REPO/actions/runs/RUN_ID/deployment_protection_rule",
        )


def app_jwt(app_id: str, private_key: str, now_s: int | None = None) -> str:
    """The JWT a GitHub App authenticates with (RS256, 9 minutes, issued a minute early
    for clock drift, as GitHub's documentation advises)."""
    import jwt

    now = int(time.time()) if now_s is None else now_s
    token: str = jwt.encode(
        {"iat": now - 60, "exp": now + 540, "iss": app_id}, private_key, algorithm="RS256"
    )
    return token


class GitHubClient:
    """Installation tokens (cached until shortly before they expire) and review calls."""

    def __init__(self, config: GitHubConfig, timeout_s: float = 10.0) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self._tokens: dict[int, tuple[str, float]] = {}
        self._minting: Any = None  # an asyncio.Lock, made on the loop that first needs it

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Accept": ACCEPT,
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "relsec",
        }

    async def installation_token(self, session: Any, installation_id: int | None) -> str:
        cfg = self.config
        if cfg.token:
            return cfg.token
        if installation_id is None:
            raise DeliveryError("the payload names no installation to authenticate as")
        import asyncio

        if self._minting is None:
            self._minting = asyncio.Lock()
        async with self._minting:  # concurrent reviews share one token
            cached = self._tokens.get(installation_id)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            return await self._mint(session, installation_id)

    async def _mint(self, session: Any, installation_id: int) -> str:
        cfg = self.config
        assert cfg.app_id is not None and cfg.private_key is not None
        url = f"{cfg.api_url}/app/installations/{installation_id}/access_tokens"
        async with session.post(
            url, headers=self._headers(app_jwt(cfg.app_id, cfg.private_key))
        ) as resp:
            if resp.status != 201:
                raise DeliveryError(
                    f"GitHub refused an installation token for {installation_id}: "
                    f"HTTP {resp.status}"
                )
            body = await resp.json()
        token = str(body["token"])
        # Tokens live an hour; renew five minutes early.
        self._tokens[installation_id] = (token, time.monotonic() + 55 * 60)
        return token

    async def review(self, req: ProtectionRequest, body: Mapping[str, str]) -> int:
        """POST the review; the HTTP status GitHub answered (204 on success)."""
        import aiohttp

        validate_callback_url(req.callback_url, self.config.api_url)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            token = await self.installation_token(session, req.installation_id)
            last_status = 0
            for attempt in range(3):
                try:
                    async with session.post(
                        req.callback_url, json=dict(body), headers=self._headers(token)
                    ) as resp:
                        last_status = resp.status
                        if resp.status < 500:
                            return resp.status
                except aiohttp.ClientError as exc:
                    if attempt == 2:
                        raise DeliveryError(f"review call to GitHub failed: {exc}") from None
                await _sleep(0.5 * 2**attempt)
            return last_status


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
