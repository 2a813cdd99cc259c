"""Request authentication of the ingest gateway: HMAC signatures and shared-secret tokens.

* GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``,
  secret ``RELSEC_INGEST_GITHUB_SECRET``.
* PagerDuty webhooks v3: ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`` (several
  while a secret rotates; one match suffices), secret ``RELSEC_INGEST_PAGERDUTY_SECRET``.
* Flux ``generic-hmac`` provider: ``X-Signature: sha256=<hex>`` (sha1/sha384/sha512
  too), secret ``RELSEC_INGEST_FLUX_SECRET``; without it Flux may use a token.
* Every other source (and Flux without an HMAC secret): a shared secret in
  ``X-Relsec-Token: <token>``, ``Authorization: Bearer <token>`` or ``X-Api-Key: <token>``
  (Dependency-Track's default token header), from
  ``RELSEC_INGEST_<SOURCE>_TOKEN`` (``DEPENDENCY_TRACK`` for dependency-track), else
  ``RELSEC_INGEST_TOKEN``.

A source with no secret configured rejects every request (fail closed). All
comparisons use :func:`hmac.compare_digest`; secrets are never put in messages.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from agents.errors import RelsecError

HMAC_SOURCES: Final[dict[str, tuple[str, str]]] = {
    "github": ("RELSEC_INGEST_GITHUB_SECRET", "X-Hub-Signature-256"),
    "pagerduty": ("RELSEC_INGEST_PAGERDUTY_SECRET", "X-PagerDuty-Signature"),
    "flux": ("RELSEC_INGEST_FLUX_SECRET", "X-Signature"),
}
TOKEN_HEADER: Final = "X-Relsec-Token"
#: Dependency-Track's default header for a webhook alert's token.
API_KEY_HEADER: Final = "X-Api-Key"
COMMON_TOKEN_ENV: Final = "RELSEC_INGEST_TOKEN"
_DIGESTS: Final = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


class SignatureError(RelsecError):
    """A request is unsigned, badly signed or carries a wrong token (HTTP 401)."""

    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        self.detail = detail
        super().__init__(f"{source}: {detail}")


def token_env(source: str) -> str:
    return f"RELSEC_INGEST_{source.upper().replace('-', '_')}_TOKEN"


@dataclass(frozen=True, slots=True)
class Secrets:
    """HMAC secrets and shared tokens per source (values hidden from repr)."""

    hmac_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    tokens: dict[str, bytes] = field(default_factory=dict, repr=False)

    @staticmethod
    def from_env(sources: tuple[str, ...], env: Mapping[str, str] | None = None) -> Secrets:
        e = os.environ if env is None else env
        keys: dict[str, bytes] = {}
        tokens: dict[str, bytes] = {}
        common = e.get(COMMON_TOKEN_ENV) or None
        for source in sources:
            if source in HMAC_SOURCES:
                secret = e.get(HMAC_SOURCES[source][0])
                if secret:
                    keys[source] = secret.encode()
            if source in ("github", "pagerduty"):
                continue  # these tools sign; a token is not accepted instead
            token = e.get(token_env(source)) or common
            if token:
                tokens[source] = token.encode()
        return Secrets(keys, tokens)

    def configured(self) -> dict[str, str]:
        """Which kind of check each source gets (for the start-up log; no secret values)."""
        out: dict[str, str] = {}
        for source in set(self.hmac_keys) | set(self.tokens):
            kinds = []
            if source in self.hmac_keys:
                kinds.append(f"hmac {HMAC_SOURCES[source][1]}")
            if source in self.tokens:
                kinds.append("token")
            out[source] = " or ".join(kinds)
        return out


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def _hex_hmac(key: bytes, body: bytes, digest: str = "sha256") -> str:
    return hmac.new(key, body, _DIGESTS[digest]).hexdigest()


def sign_github(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub would send."""
    return f"sha256={_hex_hmac(secret, body)}"


def sign_pagerduty(secret: bytes, body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value PagerDuty would send for one secret."""
    return f"v1={_hex_hmac(secret, body)}"


def _check_prefixed(source: str, value: str, key: bytes, body: bytes, header: str) -> None:
    algo, sep, given = value.strip().partition("=")
    algo = algo.lower()
    if not sep or algo not in _DIGESTS or not given:
        raise SignatureError(source, f"{header} is not '<algorithm>=<hex>'")
    if not hmac.compare_digest(_hex_hmac(key, body, algo).encode(), given.strip().lower().encode()):
        raise SignatureError(source, f"{header} does not match the body")


def verify(source: str, headers: Mapping[str, str], body: bytes, secrets: Secrets) -> str:
    """Check a request; return how it was authenticated, or raise :class:`SignatureError`."""
    key = secrets.hmac_keys.get(source)
    token = secrets.tokens.get(source)
    if key is None and token is None:
        hint = HMAC_SOURCES[source][0] if source in HMAC_SOURCES else token_env(source)
        raise SignatureError(source, f"no secret configured for this source (set {hint})")
    if key is not None:
        header = HMAC_SOURCES[source][1]
        value = _header(headers, header)
        if value is not None or token is None:
            if value is None:
                raise SignatureError(source, f"{header} header is missing")
            if source == "github":
                if not value.startswith("sha256="):
                    raise SignatureError(source, f"{header} must start with 'sha256='")
                _check_prefixed(source, value, key, body, header)
            elif source == "pagerduty":
                expected = _hex_hmac(key, body).encode()
                ok = False
                for part in value.split(","):
                    version, sep, given = part.strip().partition("=")
                    if (
                        sep
                        and version == "v1"
                        and hmac.compare_digest(expected, given.strip().lower().encode())
                    ):
                        ok = True
                if not ok:
                    raise SignatureError(source, f"no v1 signature in {header} matches the body")
            else:
                _check_prefixed(source, value, key, body, header)
            return "hmac"
    assert token is not None
    given_token = _header(headers, TOKEN_HEADER)
    if given_token is None:
        given_token = _header(headers, API_KEY_HEADER)
    if given_token is None:
        auth = _header(headers, "Authorization") or ""
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            given_token = rest.strip()
    if given_token is None:
        raise SignatureError(source, f"{TOKEN_HEADER} (or Authorization: Bearer) header is missing")
    if not hmac.compare_digest(given_token.encode(), token):
        raise SignatureError(source, "the token does not match")
    return "token"
