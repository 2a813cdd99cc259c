"""Request authentication of the ingest gateway: HMAC signatures and shared-secret tokens.

* GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``,
  secret ``RELSEC_INGEST_GITHUB_SECRET``.
* PagerDuty webhooks v3: ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`` (several
  while a secret rotates; one match suffices), secret ``RELSEC_INGEST_PAGERDUTY_SECRET``.
* Flux ``generic-hmac`` provider: ``X-Signature: sha256=<hex>`` (sha224/sha384/sha512
  too), secret ``RELSEC_INGEST_FLUX_SECRET``; without it Flux may use a token.
* Every other source (and Flux without an HMAC secret): a shared secret in
  ``X-Relsec-Token: <token>``, ``Authorization: Bearer <token>`` or ``X-Api-Key: <token>``
  (Dependency-Track's default token header), from
  ``RELSEC_INGEST_<SOURCE>_TOKEN`` (``DEPENDENCY_TRACK`` for dependency-track), else
  ``RELSEC_INGEST_TOKEN``.

Each check is exactly as strict as the sending tool's own verifier, never looser:
GitHub's is ``@octokit/webhooks-methods`` ``verify`` (the value must equal
``sha256=`` and the lower-case hex digest, byte for byte); PagerDuty's is
go-pagerduty's ``webhookv3.VerifySignature`` (comma-separated entries, each
exactly ``v1=`` then hex of either case; entries that are not are skipped; the
body is at most 2 MiB); Flux's is the verifier its provider documentation gives
(``<hash>=<lower-case hex>``). tests/ingest/test_ingest_signatures.py runs the
first two over the same vectors as relsec.

The check is split in two so the gateway can refuse before it reads a body:
:func:`check_headers` decides everything the headers can decide (a token is
checked completely; a signature header must be present, once, and well formed)
and returns :class:`PendingSignature` when only the body can decide.
:func:`verify` does both steps on a complete request.

A source with no secret configured rejects every request (fail closed). All
comparisons use :func:`hmac.compare_digest`; neither secrets nor header values
are put in messages.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from agents.errors import ConfigError
from streams.ingest.errors import SignatureError

HMAC_SOURCES: Final[dict[str, tuple[str, str]]] = {
    "github": ("RELSEC_INGEST_GITHUB_SECRET", "X-Hub-Signature-256"),
    "pagerduty": ("RELSEC_INGEST_PAGERDUTY_SECRET", "X-PagerDuty-Signature"),
    "flux": ("RELSEC_INGEST_FLUX_SECRET", "X-Signature"),
}
TOKEN_HEADER: Final = "X-Relsec-Token"
#: Dependency-Track's default header for a webhook alert's token.
API_KEY_HEADER: Final = "X-Api-Key"
AUTHORIZATION_HEADER: Final = "Authorization"
COMMON_TOKEN_ENV: Final = "RELSEC_INGEST_TOKEN"
#: go-pagerduty's VerifySignature reads at most this much of a body (webhookBodyReaderLimit).
PAGERDUTY_MAX_BODY_BYTES: Final = 2 * 1024 * 1024
#: The hash functions of Flux's documented generic-hmac verifier.
FLUX_DIGESTS: Final = ("sha224", "sha256", "sha384", "sha512")
_GITHUB_VALUE: Final = re.compile(r"sha256=([0-9a-f]{64})")
_PAGERDUTY_ENTRY: Final = re.compile(r"v1=((?:[0-9a-fA-F]{2})*)")
_FLUX_VALUE: Final = re.compile(r"([a-z0-9]+)=([0-9a-f]+)")
#: What a token may hold: visible US-ASCII (RFC 9110 field content without obs-text).
_TOKEN_TEXT: Final = re.compile(r"[\x21-\x7e]+")
_BEARER: Final = re.compile(r"([A-Za-z]+) +([\x21-\x7e]+)")


def token_env(source: str) -> str:
    return f"RELSEC_INGEST_{source.upper().replace('-', '_')}_TOKEN"


@dataclass(frozen=True, slots=True)
class Secrets:
    """HMAC secrets and shared tokens per source (values hidden from repr)."""

    hmac_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    tokens: dict[str, bytes] = field(default_factory=dict, repr=False)

    @staticmethod
    def from_env(sources: tuple[str, ...], env: Mapping[str, str] | None = None) -> Secrets:
        """The secrets of ``sources``; ConfigError when a token could never arrive in a header."""
        e = os.environ if env is None else env
        keys: dict[str, bytes] = {}
        tokens: dict[str, bytes] = {}
        for source in sources:
            if source in HMAC_SOURCES:
                secret = e.get(HMAC_SOURCES[source][0])
                if secret:
                    keys[source] = secret.encode()
            if source in ("github", "pagerduty"):
                continue  # these tools sign; a token is not accepted instead
            name = token_env(source) if e.get(token_env(source)) else COMMON_TOKEN_ENV
            token = e.get(name)
            if token:
                if not _TOKEN_TEXT.fullmatch(token):
                    raise ConfigError(
                        f"{name} must be visible ASCII characters without spaces: "
                        "it travels in an HTTP header"
                    )
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


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The headers alone authenticated the request; ``how`` is ``token``."""

    how: str


@dataclass(frozen=True, slots=True)
class PendingSignature:
    """A signature header that passed every check the headers allow; the body decides.

    ``candidates`` are the raw digests the header offers (PagerDuty may offer
    several); ``digest`` is the hash function's name.
    """

    source: str
    header: str
    digest: str
    candidates: tuple[bytes, ...]
    key: bytes = field(repr=False)
    max_body_bytes: int | None = None

    def verify(self, body: bytes) -> str:
        """``hmac`` when one candidate is the body's HMAC, else :class:`SignatureError`."""
        if not body:
            raise SignatureError(self.source, "the body is empty: there is nothing to verify")
        if self.max_body_bytes is not None and len(body) > self.max_body_bytes:
            raise SignatureError(
                self.source,
                f"the body is larger than the {self.max_body_bytes} bytes the sender's "
                "verifier reads",
            )
        expected = hmac.new(self.key, body, self.digest).digest()
        matched = False
        for candidate in self.candidates:  # no early exit: every candidate costs the same
            matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise SignatureError(self.source, f"{self.header} does not match the body")
        return "hmac"


HeaderCheck = Authenticated | PendingSignature


def _header(source: str, headers: Mapping[str, str], name: str) -> str | None:
    """The one value of header ``name`` (any case); a header sent twice is refused."""
    lower = name.lower()
    values = [value for key, value in headers.items() if key.lower() == lower]
    if not values:
        return None
    if len(values) > 1:
        raise SignatureError(source, f"{name} appears {len(values)} times; send it once")
    return values[0]


def _not_text(source: str, name: str) -> SignatureError:
    return SignatureError(
        source, f"{name} is not valid header text (only visible ASCII characters are accepted)"
    )


def _github(source: str, value: str, key: bytes, header: str) -> PendingSignature:
    if not value.isascii() or not value.isprintable():
        raise _not_text(source, header)
    m = _GITHUB_VALUE.fullmatch(value)
    if m is None:
        if not value.startswith("sha256="):
            raise SignatureError(source, f"{header} must start with 'sha256='")
        rest = value[len("sha256=") :]
        if re.fullmatch(r"[0-9a-fA-F]{64}", rest):
            raise SignatureError(
                source, f"{header} must be lower-case hex, as GitHub sends it and verifies it"
            )
        raise SignatureError(source, f"{header} must be 'sha256=' and 64 lower-case hex digits")
    return PendingSignature(source, header, "sha256", (bytes.fromhex(m.group(1)),), key)


def _pagerduty(source: str, value: str, key: bytes, header: str) -> PendingSignature:
    # go-pagerduty splits on ',' and keeps each entry that is exactly 'v1=' + hex;
    # anything else (a space after the comma, 'V1=', odd-length hex) is skipped.
    candidates = tuple(
        bytes.fromhex(m.group(1))
        for entry in value.split(",")
        if (m := _PAGERDUTY_ENTRY.fullmatch(entry)) is not None
    )
    if not candidates:
        if not value.isascii() or not value.isprintable():
            raise _not_text(source, header)
        raise SignatureError(
            source,
            f"{header} holds no 'v1=<hex>' entry (entries are separated by ',' without spaces)",
        )
    return PendingSignature(
        source, header, "sha256", candidates, key, max_body_bytes=PAGERDUTY_MAX_BODY_BYTES
    )


def _flux(source: str, value: str, key: bytes, header: str) -> PendingSignature:
    if not value.isascii() or not value.isprintable():
        raise _not_text(source, header)
    m = _FLUX_VALUE.fullmatch(value)
    if m is None or m.group(1) not in FLUX_DIGESTS:
        raise SignatureError(
            source, f"{header} is not '<{'|'.join(FLUX_DIGESTS)}>=<lower-case hex>'"
        )
    algorithm, given = m.group(1), m.group(2)
    if len(given) != 2 * hashlib.new(algorithm).digest_size:
        raise SignatureError(source, f"{header} has the wrong length for {algorithm}")
    return PendingSignature(source, header, algorithm, (bytes.fromhex(given),), key)


_SIGNATURE_PARSERS: Final[dict[str, Callable[[str, str, bytes, str], PendingSignature]]] = {
    "github": _github,
    "pagerduty": _pagerduty,
    "flux": _flux,
}


def _given_token(source: str, headers: Mapping[str, str]) -> str:
    for name in (TOKEN_HEADER, API_KEY_HEADER):
        value = _header(source, headers, name)
        if value is not None:
            if not _TOKEN_TEXT.fullmatch(value):
                raise _not_text(source, name)
            return value
    auth = _header(source, headers, AUTHORIZATION_HEADER)
    if auth is not None:
        m = _BEARER.fullmatch(auth)
        if m is not None and m.group(1).lower() == "bearer":
            return m.group(2)
        if not auth.isascii() or not auth.isprintable():
            raise _not_text(source, AUTHORIZATION_HEADER)
        raise SignatureError(source, f"{AUTHORIZATION_HEADER} is not 'Bearer <token>'")
    raise SignatureError(source, f"{TOKEN_HEADER} (or Authorization: Bearer) header is missing")


def check_headers(source: str, headers: Mapping[str, str], secrets: Secrets) -> HeaderCheck:
    """Everything the headers can decide; :class:`SignatureError` when they already refuse."""
    key = secrets.hmac_keys.get(source)
    token = secrets.tokens.get(source)
    if key is None and token is None:
        hint = HMAC_SOURCES[source][0] if source in HMAC_SOURCES else token_env(source)
        raise SignatureError(source, f"no secret configured for this source (set {hint})")
    if key is not None:
        header = HMAC_SOURCES[source][1]
        value = _header(source, headers, header)
        if value is not None:
            return _SIGNATURE_PARSERS[source](source, value, key, header)
        if token is None:
            raise SignatureError(source, f"{header} header is missing")
    assert token is not None
    if not hmac.compare_digest(_given_token(source, headers).encode(), token):
        raise SignatureError(source, "the token does not match")
    return Authenticated("token")


def verify(source: str, headers: Mapping[str, str], body: bytes, secrets: Secrets) -> str:
    """Check a complete request; return how it was authenticated, or raise SignatureError."""
    checked = check_headers(source, headers, secrets)
    if isinstance(checked, Authenticated):
        return checked.how
    return checked.verify(body)


def sign_github(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub would send."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_pagerduty(secret: bytes, body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value PagerDuty would send for one secret."""
    return "v1=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_flux(secret: bytes, body: bytes, algorithm: str = "sha256") -> str:
    """The ``X-Signature`` value Flux's generic-hmac provider would send."""
    return f"{algorithm}=" + hmac.new(secret, body, algorithm).hexdigest()
