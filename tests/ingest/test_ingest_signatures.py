"""Request authentication: GitHub and PagerDuty HMACs, Flux generic-hmac, shared tokens.

Besides relsec's own cases, relsec's checks are held against the senders' own
verifiers over the same vectors: GitHub's ``@octokit/webhooks-methods`` 6.0.0
``verify`` (npm, run by node) and go-pagerduty v1.8.0 ``webhookv3.VerifySignature``
(Go module proxy, built by go). Both are installed once from their registries by
the fixtures below into ``$RELSEC_CACHE_DIR`` (default ``~/.cache/relsec``) from
the pinned manifests in tests/ingest/verifiers/ (package-lock.json, go.sum).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from multidict import CIMultiDict

from agents.errors import ConfigError
from streams.ingest import SOURCES
from streams.ingest.signatures import (
    PAGERDUTY_MAX_BODY_BYTES,
    Authenticated,
    PendingSignature,
    Secrets,
    SignatureError,
    check_headers,
    sign_flux,
    sign_github,
    sign_pagerduty,
    token_env,
    verify,
)

BODY = b'{"event": {"id": "01DEN7TVKQ0RMJ1DTGCN7U4SHS", "event_type": "incident.triggered"}}'
ENV = {
    "RELSEC_INGEST_GITHUB_SECRET": "gh-s3cret",
    "RELSEC_INGEST_PAGERDUTY_SECRET": "pd-s3cret",
    "RELSEC_INGEST_FLUX_SECRET": "flux-s3cret",
    "RELSEC_INGEST_ARGOCD_TOKEN": "argo-t0ken",
    "RELSEC_INGEST_TOKEN": "common-t0ken",
}
SECRETS = Secrets.from_env(SOURCES, ENV)
VERIFIERS = Path(__file__).resolve().parent / "verifiers"
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120


def _changed_byte(body: bytes) -> bytes:
    i = body.index(b"triggered")
    return body[:i] + b"T" + body[i + 1 :]


def _refused(source: str, headers: dict[str, str], body: bytes = BODY) -> str:
    with pytest.raises(SignatureError) as info:
        verify(source, headers, body, SECRETS)
    return info.value.detail


def test_github_good_bad_missing_and_replayed_with_a_changed_byte() -> None:
    good = sign_github(b"gh-s3cret", BODY)
    expected = "sha256=" + hmac.new(b"gh-s3cret", BODY, hashlib.sha256).hexdigest()
    assert good == expected  # the documented construction
    assert verify("github", {"X-Hub-Signature-256": good}, BODY, SECRETS) == "hmac"
    assert verify("github", {"x-hub-signature-256": good}, BODY, SECRETS) == "hmac"
    for headers, words in (
        ({"X-Hub-Signature-256": sign_github(b"wrong", BODY)}, "does not match"),
        ({}, "missing"),
        ({"X-Hub-Signature": "sha1=" + "0" * 40}, "missing"),
        ({"X-Hub-Signature-256": good.replace("sha256=", "sha1=")}, "sha256="),
        ({"X-Relsec-Token": "common-t0ken"}, "missing"),  # GitHub must sign; tokens are not enough
    ):
        assert words in _refused("github", headers)
    with pytest.raises(SignatureError):
        verify("github", {"X-Hub-Signature-256": good}, _changed_byte(BODY), SECRETS)


def test_github_refuses_what_octokit_refuses() -> None:
    good = sign_github(b"gh-s3cret", BODY)
    hex_digest = good[len("sha256=") :]
    assert "'sha256='" in _refused("github", {"X-Hub-Signature-256": good.upper()})
    assert "lower-case" in _refused(
        "github", {"X-Hub-Signature-256": "sha256=" + hex_digest.upper()}
    )
    for value in (
        hex_digest,  # no prefix
        "sha256=" + hex_digest[:-1],  # too short
        "sha256=" + hex_digest + "0",  # too long
        "sha256= " + hex_digest,
        f"{good},{good}",  # GitHub sends one signature
    ):
        _refused("github", {"X-Hub-Signature-256": value})
    assert "empty" in _refused(
        "github", {"X-Hub-Signature-256": sign_github(b"gh-s3cret", b"")}, b""
    )


def test_header_values_that_are_not_text_are_refused_with_a_reason() -> None:
    """aiohttp hands undecodable header bytes over as surrogates; they must not reach .encode()."""
    garbage = b"\xff\xfe\x80t0ken".decode("utf-8", "surrogateescape")
    for source, header in (
        ("trivy", "X-Relsec-Token"),
        ("dependency-track", "X-Api-Key"),
        ("trivy", "Authorization"),
        ("github", "X-Hub-Signature-256"),
        ("flux", "X-Signature"),
        ("pagerduty", "X-PagerDuty-Signature"),
    ):
        detail = _refused(source, {header: garbage})
        assert header in detail and "not valid header text" in detail, detail
    assert "not valid header text" in _refused("trivy", {"X-Relsec-Token": "common-t\u00f6ken"})


def test_a_header_sent_twice_is_refused() -> None:
    good = sign_github(b"gh-s3cret", BODY)
    twice = CIMultiDict([("X-Hub-Signature-256", good), ("x-hub-signature-256", good)])
    assert "appears 2 times" in _refused("github", twice)  # type: ignore[arg-type]
    tokens = CIMultiDict([("X-Relsec-Token", "common-t0ken"), ("X-Relsec-Token", "other")])
    assert "appears 2 times" in _refused("trivy", tokens)  # type: ignore[arg-type]


def test_pagerduty_several_v1_signatures_one_matching() -> None:
    good = sign_pagerduty(b"pd-s3cret", BODY)
    assert verify("pagerduty", {"X-PagerDuty-Signature": good}, BODY, SECRETS) == "hmac"
    rotated = f"{sign_pagerduty(b'old-secret', BODY)},{good}"
    assert verify("pagerduty", {"X-PagerDuty-Signature": rotated}, BODY, SECRETS) == "hmac"
    for value in (sign_pagerduty(b"old-secret", BODY), "v0=" + good[3:], "garbage", ""):
        _refused("pagerduty", {"X-PagerDuty-Signature": value})
    _refused("pagerduty", {})
    _refused("pagerduty", {"X-PagerDuty-Signature": rotated}, _changed_byte(BODY))


def test_pagerduty_is_as_strict_as_go_pagerduty() -> None:
    good = sign_pagerduty(b"pd-s3cret", BODY)
    old = sign_pagerduty(b"old-secret", BODY)
    accepted = ("v1=" + good[3:].upper(), f"{good}, {old}", f",,{good},", f"{good},v1=\u00e9")
    for value in accepted:  # hex of either case; entries that are not v1=<hex> are skipped
        assert verify("pagerduty", {"X-PagerDuty-Signature": value}, BODY, SECRETS) == "hmac"
    refused = (f"{old}, {good}", "V1=" + good[3:], f"{good};{old}", "v1=" + good[3:-1], " " + good)
    for value in refused:
        _refused("pagerduty", {"X-PagerDuty-Signature": value})
    big = b"x" * (PAGERDUTY_MAX_BODY_BYTES + 1)
    detail = _refused(
        "pagerduty", {"X-PagerDuty-Signature": sign_pagerduty(b"pd-s3cret", big)}, big
    )
    assert "2097152" in detail


def test_flux_generic_hmac_or_token() -> None:
    sig = "sha256=" + hmac.new(b"flux-s3cret", BODY, hashlib.sha256).hexdigest()
    assert sign_flux(b"flux-s3cret", BODY) == sig
    assert verify("flux", {"X-Signature": sig}, BODY, SECRETS) == "hmac"
    for algorithm in ("sha224", "sha384", "sha512"):
        value = sign_flux(b"flux-s3cret", BODY, algorithm)
        assert verify("flux", {"X-Signature": value}, BODY, SECRETS) == "hmac"
    assert verify("flux", {"Authorization": "Bearer common-t0ken"}, BODY, SECRETS) == "token"
    _refused("flux", {"X-Signature": sig}, _changed_byte(BODY))
    # a signature present and wrong is not rescued by a token
    _refused("flux", {"X-Signature": "sha256=" + "0" * 64, "X-Relsec-Token": "common-t0ken"})
    sha1 = "sha1=" + hmac.new(b"flux-s3cret", BODY, hashlib.sha1).hexdigest()
    for value in (sha1, sig.upper(), "SHA256=" + sig[7:], sig + "=", sig[:-2]):
        _refused("flux", {"X-Signature": value})  # as Flux's documented verifier refuses


def test_tokens_per_source_then_common() -> None:
    assert verify("argocd", {"X-Relsec-Token": "argo-t0ken"}, BODY, SECRETS) == "token"
    _refused("argocd", {"X-Relsec-Token": "common-t0ken"})  # the per-source token wins
    assert verify("trivy", {"Authorization": "Bearer common-t0ken"}, BODY, SECRETS) == "token"
    assert verify("trivy", {"Authorization": "bearer  common-t0ken"}, BODY, SECRETS) == "token"
    assert verify("dependency-track", {"X-Api-Key": "common-t0ken"}, BODY, SECRETS) == "token"
    for headers in ({}, {"X-Relsec-Token": "common-t0ke"}, {"Authorization": "Basic Y29tbW9u"}):
        _refused("opsgenie", headers)
    assert token_env("dependency-track") == "RELSEC_INGEST_DEPENDENCY_TRACK_TOKEN"


def test_tokens_that_cannot_travel_in_a_header_are_a_configuration_error() -> None:
    for token in ("t\u00f6ken", "two words", "tab\there"):
        with pytest.raises(ConfigError) as info:
            Secrets.from_env(SOURCES, {"RELSEC_INGEST_TRIVY_TOKEN": token})
        assert "RELSEC_INGEST_TRIVY_TOKEN" in str(info.value) and token not in str(info.value)


def test_headers_decide_before_the_body() -> None:
    """A token is checked completely from the headers; a signature waits for the body."""
    assert check_headers("trivy", {"X-Relsec-Token": "common-t0ken"}, SECRETS) == Authenticated(
        "token"
    )
    pending = check_headers(
        "pagerduty", {"X-PagerDuty-Signature": sign_pagerduty(b"pd-s3cret", BODY)}, SECRETS
    )
    assert isinstance(pending, PendingSignature) and pending.verify(BODY) == "hmac"
    assert "pd-s3cret" not in repr(pending)
    with pytest.raises(SignatureError):
        pending.verify(_changed_byte(BODY))
    for source, headers in (
        ("pagerduty", {}),
        ("github", {"X-Hub-Signature-256": "sha256=" + "A" * 64}),
        ("trivy", {"X-Relsec-Token": "nope"}),
    ):
        with pytest.raises(SignatureError):
            check_headers(source, headers, SECRETS)


def test_sources_without_secret_fail_closed_and_secrets_stay_hidden() -> None:
    secrets = Secrets.from_env(SOURCES, {"RELSEC_INGEST_GITHUB_SECRET": "gh-s3cret"})
    with pytest.raises(SignatureError) as info:
        verify("pagerduty", {"X-PagerDuty-Signature": sign_pagerduty(b"", BODY)}, BODY, secrets)
    assert "RELSEC_INGEST_PAGERDUTY_SECRET" in info.value.detail
    with pytest.raises(SignatureError) as info:
        verify("trivy", {"X-Relsec-Token": ""}, BODY, secrets)
    assert "RELSEC_INGEST_TRIVY_TOKEN" in info.value.detail
    assert "s3cret" not in repr(SECRETS) and "t0ken" not in repr(SECRETS)
    assert SECRETS.configured()["github"].startswith("hmac")
    assert "s3cret" not in str(SECRETS.configured())
    wrong_token = _refused("trivy", {"X-Relsec-Token": "guessed-value"})
    assert "guessed-value" not in wrong_token


# --- the senders' own verifiers over the same vectors ---------------------------------


@dataclass(frozen=True)
class Vector:
    """A request as an HTTP stack delivers it: the body and the raw signature header bytes."""

    name: str
    secret: str
    body: bytes
    signature: bytes

    def line(self) -> str:
        return json.dumps(
            {
                "secret": self.secret,
                "body": base64.b64encode(self.body).decode(),
                "signature": base64.b64encode(self.signature).decode(),
            }
        )


def _cache_root() -> Path:
    return Path(os.environ.get("RELSEC_CACHE_DIR") or Path.home() / ".cache" / "relsec")


def _install(dest: Path, build: Callable[[Path], None]) -> None:
    """Build into a staging folder beside ``dest`` and move it in place when it succeeded."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=dest.name + "-", dir=dest.parent))
    try:
        build(staging)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def octokit_verify() -> Callable[[list[Vector]], list[bool]]:
    """``@octokit/webhooks-methods`` 6.0.0 ``verify``, installed with ``npm ci`` from the lock."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm (Node.js 20+) are needed to run GitHub's verifier"
    source = VERIFIERS / "github"
    lock = (source / "package-lock.json").read_bytes()
    dest = _cache_root() / "verifiers" / f"octokit-{hashlib.sha256(lock).hexdigest()[:16]}"

    def build(staging: Path) -> None:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(source / name, staging / name)
        _run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            staging,
            INSTALL_TIMEOUT_S,
        )

    if not (dest / "node_modules" / "@octokit" / "webhooks-methods" / "package.json").is_file():
        _install(dest, build)
    shutil.copy(source / "verify.mjs", dest / "verify.mjs")  # resolves the package from dest

    def run(vectors: list[Vector]) -> list[bool]:
        done = subprocess.run(
            [node, str(dest / "verify.mjs")],
            input="\n".join(v.line() for v in vectors) + "\n",
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return _verdicts(done.stdout, len(vectors))

    return run


@pytest.fixture(scope="module")
def go_pagerduty_verify() -> Callable[[list[Vector]], list[bool]]:
    """go-pagerduty v1.8.0 ``webhookv3.VerifySignature``, built against the pinned go.sum."""
    go = shutil.which("go")
    assert go, "Go (1.21+) is needed to run PagerDuty's verifier"
    source = VERIFIERS / "pagerduty"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((source / name).read_bytes())
    dest = _cache_root() / "verifiers" / f"go-pagerduty-{digest.hexdigest()[:16]}"
    binary = dest / "verify-pagerduty"
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=readonly",
        "GOMODCACHE": str(_cache_root() / "go" / "mod"),
        "CGO_ENABLED": "0",
    }

    def build(staging: Path) -> None:
        for name in ("go.mod", "go.sum", "main.go"):
            shutil.copy(source / name, staging / name)
        _run([go, "build", "-o", "verify-pagerduty", "."], staging, INSTALL_TIMEOUT_S, env)

    if not binary.is_file():
        _install(dest, build)

    def run(vectors: list[Vector]) -> list[bool]:
        done = subprocess.run(
            [str(binary)],
            input="\n".join(v.line() for v in vectors) + "\n",
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return _verdicts(done.stdout, len(vectors))

    return run


def _verdicts(out: str, expected: int) -> list[bool]:
    lines = out.split()
    assert len(lines) == expected and set(lines) <= {"accept", "refuse"}, out[:500]
    return [line == "accept" for line in lines]


def _relsec_accepts(source: str, header: str, vector: Vector) -> bool:
    """relsec's check of the vector as aiohttp hands it over (undecodable bytes as surrogates)."""
    secrets = Secrets.from_env(SOURCES, {HMAC_ENV[source]: vector.secret})
    value = vector.signature.decode("utf-8", "surrogateescape")
    try:
        verify(source, {header: value}, vector.body, secrets)
    except SignatureError:
        return False
    return True


HMAC_ENV = {"github": "RELSEC_INGEST_GITHUB_SECRET", "pagerduty": "RELSEC_INGEST_PAGERDUTY_SECRET"}
BODIES = (
    BODY,
    '{"title": "caf\u00e9 \u2014 \U0001f525 5xx"}'.encode(),
    b"[]",
    b"",
)
_MUTATION_CHARS = (" ", ",", "\t", "=", "A", "f", "0", "\u00e9", "v", "\x7f", "\xff")


def _mutations(good: str, rng: random.Random, count: int) -> list[str]:
    """Near misses of a good signature: case flips, inserted, deleted, doubled characters."""
    out: list[str] = []
    for _ in range(count):
        value = list(good)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(value) + 1)
            kind = rng.randrange(4)
            if kind == 0 and i < len(value):
                value[i] = value[i].swapcase()
            elif kind == 1:
                value.insert(i, rng.choice(_MUTATION_CHARS))
            elif kind == 2 and i < len(value):
                del value[i]
            else:
                value[i:i] = list(good[: rng.randrange(len(good))])
        out.append("".join(value))
    return out


def _raw(value: str) -> bytes:
    """Header bytes for a test string: UTF-8, with U+00FF standing for a lone 0xFF byte."""
    return value.replace("\xff", "\udcff").encode("utf-8", "surrogateescape")


def _github_vectors() -> list[Vector]:
    rng = random.Random(20261201)
    secret = "gh-s3cret"
    vectors: list[Vector] = []
    for body in BODIES:
        good = sign_github(secret.encode(), body)
        digest = good[len("sha256=") :]
        cases = {
            "good": good,
            "upper-case hex": "sha256=" + digest.upper(),
            "upper-case prefix": good.upper(),
            "mixed-case hex": "sha256=" + digest[:32] + digest[32:].upper(),
            "no prefix": digest,
            "sha1 prefix": "sha1=" + digest,
            "space after =": "sha256= " + digest,
            "leading space": " " + good,
            "trailing space": good + " ",
            "too short": good[:-1],
            "too long": good + "0",
            "two signatures": f"{good},{good}",
            "two signatures, space": f"{good}, {good}",
            "wrong secret": sign_github(b"other", body),
            "other body": sign_github(secret.encode(), body + b" "),
            "non-ascii, same length": good[:-2] + "\u00e9",
            "latin-1 byte": good[:-1] + "\xff",
            "empty": "",
            "prefix only": "sha256=",
        }
        vectors += [
            Vector(f"{name} / {body[:12]!r}", secret, body, _raw(v)) for name, v in cases.items()
        ]
        vectors += [
            Vector(f"mutation / {body[:12]!r}", secret, body, _raw(v))
            for v in _mutations(good, rng, 60)
        ]
    return vectors


def _pagerduty_vectors() -> list[Vector]:
    rng = random.Random(20261202)
    secret = "pd-s3cret"
    vectors: list[Vector] = []
    for body in BODIES:
        good = sign_pagerduty(secret.encode(), body)
        old = sign_pagerduty(b"old-secret", body)
        digest = good[3:]
        cases = {
            "good": good,
            "upper-case hex": "v1=" + digest.upper(),
            "upper-case version": "V1=" + digest,
            "rotated, good second": f"{old},{good}",
            "rotated, space before the good one": f"{old}, {good}",
            "rotated, space before the old one": f"{good}, {old}",
            "empty entries": f",,{good},",
            "semicolon": f"{old};{good}",
            "v0": "v0=" + digest,
            "odd-length hex": "v1=" + digest[:-1],
            "short digest": "v1=" + digest[:-2],
            "long digest": good + "00",
            "non-ascii entry after": f"{good},v1=\u00e9",
            "non-ascii only": "v1=\u00e9\u00e9",
            "latin-1 byte": good[:-1] + "\xff",
            "wrong secret": old,
            "empty": "",
            "version only": "v1=",
            "space inside": "v1= " + digest,
        }
        vectors += [
            Vector(f"{name} / {body[:12]!r}", secret, body, _raw(v)) for name, v in cases.items()
        ]
        vectors += [
            Vector(f"mutation / {body[:12]!r}", secret, body, _raw(v))
            for v in _mutations(f"{old},{good}", rng, 60)
        ]
    return vectors


def _assert_agreement(source: str, header: str, vectors: list[Vector], theirs: list[bool]) -> None:
    ours = [_relsec_accepts(source, header, v) for v in vectors]
    disagreements = [
        f"{v.name}: {v.signature!r} relsec={'accept' if o else 'refuse'} "
        f"sender={'accept' if t else 'refuse'}"
        for v, o, t in zip(vectors, ours, theirs, strict=True)
        if o != t
    ]
    assert not disagreements, "\n".join(disagreements[:20])
    assert any(theirs) and not all(theirs)  # the vectors exercise both answers


def test_github_check_agrees_with_octokit_verify(
    octokit_verify: Callable[[list[Vector]], list[bool]],
) -> None:
    vectors = _github_vectors()
    theirs = octokit_verify(vectors)
    by_name = dict(zip((v.name for v in vectors), theirs, strict=False))
    assert by_name[f"good / {BODY[:12]!r}"] and not by_name[f"upper-case hex / {BODY[:12]!r}"]
    _assert_agreement("github", "X-Hub-Signature-256", vectors, theirs)


def test_pagerduty_check_agrees_with_go_pagerduty(
    go_pagerduty_verify: Callable[[list[Vector]], list[bool]],
) -> None:
    vectors = _pagerduty_vectors()
    theirs = go_pagerduty_verify(vectors)
    by_name = dict(zip((v.name for v in vectors), theirs, strict=False))
    assert by_name[f"upper-case hex / {BODY[:12]!r}"]
    assert not by_name[f"rotated, space before the good one / {BODY[:12]!r}"]
    _assert_agreement("pagerduty", "X-PagerDuty-Signature", vectors, theirs)


def test_pagerduty_bodies_beyond_what_go_pagerduty_reads(
    go_pagerduty_verify: Callable[[list[Vector]], list[bool]],
) -> None:
    """go-pagerduty reads 2 MiB of a body: past that it refuses a full signature and accepts
    one over the first 2 MiB (the rest unsigned). relsec refuses both; its PagerDuty body
    bound cannot be set above 2 MiB, so such a body never reaches the check in the gateway."""
    secret = "pd-s3cret"
    big = b'{"pad": "' + b"x" * PAGERDUTY_MAX_BODY_BYTES + b'"}'
    full = Vector("full", secret, big, sign_pagerduty(secret.encode(), big).encode())
    head = big[:PAGERDUTY_MAX_BODY_BYTES]
    truncated = Vector("truncated", secret, big, sign_pagerduty(secret.encode(), head).encode())
    assert go_pagerduty_verify([full, truncated]) == [False, True]
    header = "X-PagerDuty-Signature"
    assert not _relsec_accepts("pagerduty", header, full)
    assert not _relsec_accepts("pagerduty", header, truncated)
