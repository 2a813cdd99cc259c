"""Client configurations and the murmur2 partitioner, checked against Kafka's own Java code."""

from __future__ import annotations

import os
import random
import ssl
import subprocess
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from agents.errors import ConfigError
from streams.devkafka import find_java, locate_kafka
from streams.kafka.clients import (
    admin_config,
    aiokafka_kwargs,
    consumer_config,
    murmur2,
    murmur2_partition,
    producer_config,
    redacted,
    ssl_context,
)
from streams.settings import Settings

SASL_ENV = {
    "RELSEC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "RELSEC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "RELSEC_KAFKA_SASL_USERNAME": "relsec",
    "RELSEC_KAFKA_SASL_PASSWORD": "s3cr3t-pw",
}


def _keys(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", "svc-\u00e9\u4e2d".encode()]
    while len(keys) < count:
        keys.append(rng.randbytes(rng.randrange(0, 64)))
    return keys


def test_murmur2_matches_aiokafka_default_partitioner() -> None:
    partitioner = DefaultPartitioner()
    for n in (1, 2, 3, 6, 7, 12, 100):
        parts = list(range(n))
        for key in _keys(500, seed=n):
            assert murmur2_partition(key, n) == partitioner(key, parts, parts), (key, n)


def test_murmur2_partition_rejects_zero_partitions() -> None:
    with pytest.raises(ValueError):
        murmur2_partition(b"k", 0)


JAVA_MURMUR = """
import java.util.HexFormat;
import org.apache.kafka.common.utils.Utils;
public class Murmur {
    public static void main(String[] args) throws Exception {
        var in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            byte[] key = HexFormat.of().parseHex(line.trim());
            int h = Utils.murmur2(key);
            System.out.println(h + " " + Utils.toPositive(h) % 7 + " " + Utils.toPositive(h) % 12);
        }
    }
}
"""


@pytest.mark.kafka
def test_murmur2_equals_kafka_java_utils(tmp_path: Path) -> None:
    """Kafka's own Utils.murmur2 (from the provisioned jars) agrees on the same keys."""
    dist = locate_kafka()
    source = tmp_path / "Murmur.java"
    source.write_text(JAVA_MURMUR)
    keys = [k for k in _keys(300, seed=42) if k]  # HexFormat cannot parse an empty line as bytes
    done = subprocess.run(
        [find_java(), "-cp", str(dist.libs_dir / "*"), str(source)],
        input="\n".join(k.hex() for k in keys) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = done.stdout.split("\n")[: len(keys)]
    assert len(rows) == len(keys), done.stderr
    for key, row in zip(keys, rows, strict=True):
        java_hash, p7, p12 = (int(x) for x in row.split())
        assert murmur2(key) == java_hash, key
        assert murmur2_partition(key, 7) == p7
        assert murmur2_partition(key, 12) == p12


def test_producer_config_defaults_and_overrides() -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:1")
    conf = producer_config(settings, **{"linger.ms": 50, "acks": "1"})
    assert conf["bootstrap.servers"] == "127.0.0.1:1"
    assert conf["partitioner"] == "murmur2_random"
    assert conf["enable.idempotence"] is True
    assert conf["security.protocol"] == "PLAINTEXT"
    assert conf["linger.ms"] == 50 and conf["acks"] == "1"
    assert "compression.type" not in conf  # aiokafka could not read lz4/zstd without extras
    assert producer_config(settings)["acks"] == "all"


def test_consumer_config_group_handling() -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:1")
    mine = consumer_config(settings, group_id="g")
    assert mine["group.id"] == "g" and "enable.auto.commit" not in mine
    assert mine["auto.offset.reset"] == "earliest"
    a, b = consumer_config(settings), consumer_config(settings)
    assert a["group.id"] != b["group.id"] and a["enable.auto.commit"] is False
    assert a["group.id"].startswith(settings.topics.prefix)


def test_sasl_passthrough_both_clients_and_secrets_redacted(tmp_path: Path) -> None:
    ca = _self_signed(tmp_path)
    settings = Settings.resolve(env={**SASL_ENV, "RELSEC_KAFKA_SSL_CA_LOCATION": str(ca)})
    for conf in (producer_config(settings), consumer_config(settings), admin_config(settings)):
        assert conf["security.protocol"] == "SASL_SSL"
        assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
        assert conf["sasl.username"] == "relsec"
        assert conf["sasl.password"] == "s3cr3t-pw"
        assert conf["ssl.ca.location"] == str(ca)
        assert "s3cr3t-pw" not in repr(redacted(conf))
    kwargs = aiokafka_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "relsec"
    assert kwargs["sasl_plain_password"] == "s3cr3t-pw"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1
    assert "s3cr3t-pw" not in repr(redacted(kwargs))
    assert "s3cr3t-pw" not in repr(settings)


def test_plaintext_aiokafka_kwargs_have_no_tls_or_sasl() -> None:
    kwargs = aiokafka_kwargs(Settings(bootstrap_servers="127.0.0.1:1"))
    assert kwargs == {"bootstrap_servers": "127.0.0.1:1", "security_protocol": "PLAINTEXT"}


def test_ssl_context_with_client_certificate(tmp_path: Path) -> None:
    ca = _self_signed(tmp_path)
    settings = Settings.resolve(
        env={
            "RELSEC_KAFKA_SECURITY_PROTOCOL": "SSL",
            "RELSEC_KAFKA_SSL_CA_LOCATION": str(ca),
            "RELSEC_KAFKA_SSL_CERT_LOCATION": str(ca),
            "RELSEC_KAFKA_SSL_KEY_LOCATION": str(tmp_path / "key.pem"),
            "RELSEC_KAFKA_SSL_KEY_PASSWORD": "keypw",
        }
    )
    assert isinstance(ssl_context(settings.security), ssl.SSLContext)
    wrong = Settings.resolve(
        env={
            "RELSEC_KAFKA_SECURITY_PROTOCOL": "SSL",
            "RELSEC_KAFKA_SSL_CA_LOCATION": str(ca),
            "RELSEC_KAFKA_SSL_CERT_LOCATION": str(ca),
            "RELSEC_KAFKA_SSL_KEY_LOCATION": str(tmp_path / "key.pem"),
            "RELSEC_KAFKA_SSL_KEY_PASSWORD": "not-the-pw",
        }
    )
    with pytest.raises(ConfigError) as info:
        aiokafka_kwargs(wrong)
    assert "not-the-pw" not in str(info.value)


def test_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings.resolve(
        env={
            "RELSEC_KAFKA_SECURITY_PROTOCOL": "SSL",
            "RELSEC_KAFKA_SSL_CA_LOCATION": str(tmp_path / "nope.pem"),
        }
    )
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        aiokafka_kwargs(settings)


def _self_signed(directory: Path) -> Path:
    """A self-signed certificate (cert.pem) and its encrypted key (key.pem, password keypw)."""
    cert = directory / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(directory / "key.pem"),
            "-out",
            str(cert),
            "-passout",
            "pass:keypw",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "RANDFILE": str(directory / ".rnd")},
        timeout=60,
    )
    return cert
