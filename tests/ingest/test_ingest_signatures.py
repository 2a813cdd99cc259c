"""Request authentication: GitHub and PagerDuty HMACs, Flux generic-hmac, shared tokens."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from streams.ingest import SOURCES
from streams.ingest.signatures import (
    Secrets,
    SignatureError,
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


def _changed_byte(body: bytes) -> bytes:
    i = body.index(b"triggered")
    return body[:i] + b"T" + body[i + 1 :]


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
        with pytest.raises(SignatureError) as info:
            verify("github", headers, BODY, SECRETS)
        assert words in info.value.detail
    with pytest.raises(SignatureError):
        verify("github", {"X-Hub-Signature-256": good}, _changed_byte(BODY), SECRETS)


def test_pagerduty_several_v1_signatures_one_matching() -> None:
    good = sign_pagerduty(b"pd-s3cret", BODY)
    assert verify("pagerduty", {"X-PagerDuty-Signature": good}, BODY, SECRETS) == "hmac"
    rotated = f"{sign_pagerduty(b'old-secret', BODY)},{good}"
    assert verify("pagerduty", {"X-PagerDuty-Signature": rotated}, BODY, SECRETS) == "hmac"
    for value in (sign_pagerduty(b"old-secret", BODY), "v0=" + good[3:], "garbage", ""):
        with pytest.raises(SignatureError):
            verify("pagerduty", {"X-PagerDuty-Signature": value}, BODY, SECRETS)
    with pytest.raises(SignatureError):
        verify("pagerduty", {}, BODY, SECRETS)
    with pytest.raises(SignatureError):
        verify("pagerduty", {"X-PagerDuty-Signature": rotated}, _changed_byte(BODY), SECRETS)


def test_flux_generic_hmac_or_token() -> None:
    sig = "sha256=" + hmac.new(b"flux-s3cret", BODY, hashlib.sha256).hexdigest()
    assert verify("flux", {"X-Signature": sig}, BODY, SECRETS) == "hmac"
    sig512 = "sha512=" + hmac.new(b"flux-s3cret", BODY, hashlib.sha512).hexdigest()
    assert verify("flux", {"X-Signature": sig512}, BODY, SECRETS) == "hmac"
    assert verify("flux", {"Authorization": "Bearer common-t0ken"}, BODY, SECRETS) == "token"
    with pytest.raises(SignatureError):
        verify("flux", {"X-Signature": sig}, _changed_byte(BODY), SECRETS)
    with pytest.raises(SignatureError):  # a signature present and wrong is not rescued by nothing
        verify("flux", {"X-Signature": "sha256=" + "0" * 64}, BODY, SECRETS)


def test_tokens_per_source_then_common() -> None:
    assert verify("argocd", {"X-Relsec-Token": "argo-t0ken"}, BODY, SECRETS) == "token"
    with pytest.raises(SignatureError):  # the per-source token replaces the common one
        verify("argocd", {"X-Relsec-Token": "common-t0ken"}, BODY, SECRETS)
    assert verify("trivy", {"Authorization": "Bearer common-t0ken"}, BODY, SECRETS) == "token"
    assert verify("dependency-track", {"X-Api-Key": "common-t0ken"}, BODY, SECRETS) == "token"
    for headers in ({}, {"X-Relsec-Token": "common-t0ke"}, {"Authorization": "Basic Y29tbW9u"}):
        with pytest.raises(SignatureError):
            verify("opsgenie", headers, BODY, SECRETS)
    assert token_env("dependency-track") == "RELSEC_INGEST_DEPENDENCY_TRACK_TOKEN"


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
