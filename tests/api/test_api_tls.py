"""HTTPS with client certificates (how Gatekeeper reaches a provider): a verified client
certificate authenticates like the bearer token; no certificate and no token is refused;
a certificate from another CA fails the handshake."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents.model.timefmt import parse_rfc3339_ms
from streams.api.server import Api, ApiOptions
from tests.api.browser import served
from tests.api.helpers import SEED_STORY, build_model, load_events

SEED_NOW = parse_rfc3339_ms("2026-03-05T00:00:00Z")
TOKEN = "a-token-of-at-least-16-chars"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca: tuple[Any, x509.Certificate], cn: str, server: bool) -> tuple[Any, x509.Certificate]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def write(path: Path, key: Any, cert: x509.Certificate) -> tuple[str, str]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".crt")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


def post(url: str, body: Any, context: ssl.SSLContext, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=orjson.dumps(body), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def test_gatekeeper_over_mutual_tls(tmp_path: Path) -> None:
    server_ca = make_ca("relsec test server CA")
    client_ca = make_ca("gatekeeper test CA")
    other_ca = make_ca("someone else")
    server_cert, server_key = write(tmp_path / "server", *issue(server_ca, "relsec-api", True))
    ca_file, _ = write(tmp_path / "client-ca", *client_ca)
    server_ca_file, _ = write(tmp_path / "server-ca", *server_ca)
    good_cert, good_key = write(tmp_path / "gatekeeper", *issue(client_ca, "gatekeeper", False))
    bad_cert, bad_key = write(tmp_path / "intruder", *issue(other_ca, "intruder", False))

    built = build_model(load_events(SEED_STORY), SEED_NOW)
    options = ApiOptions(
        port=0, token=TOKEN, tls_cert=server_cert, tls_key=server_key, tls_client_ca=ca_file
    )
    request = {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {
            "keys": ["service=checkout-api&environment=production&release=2.7.0&action=rollback"]
        },
    }
    with served(Api(built.model, options)) as url:
        assert url.startswith("https://")
        endpoint = f"{url}/v1/gatekeeper/provider"

        def context(cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
            ctx = ssl.create_default_context(cafile=server_ca_file)
            if cert:
                ctx.load_cert_chain(cert, key)
            return ctx

        status, body = post(endpoint, request, context(good_cert, good_key))
        assert status == 200
        assert body["response"]["items"][0]["value"]["verdict"] == "deny"
        status, _ = post(endpoint, request, context())
        assert status == 401
        status, body = post(endpoint, request, context(), token=TOKEN)
        assert status == 200
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            post(endpoint, request, context(bad_cert, bad_key))
