"""SASL and TLS settings reach both clients: a real broker with SASL_PLAINTEXT + SASL_SSL.

The broker (started here through ``LocalKafka`` with extra listeners) accepts user
``relsec`` with PLAIN on both; SASL_SSL uses a server certificate for 127.0.0.1
signed by a throwaway CA made with openssl. The client side is configured only
through ``RELSEC_KAFKA_*`` variables, as a deployment would be.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from kafka_helpers import aio_consume, aio_produce, confluent_consume, confluent_produce

from streams.devkafka import LocalKafka, pick_free_ports
from streams.kafka.clients import admin_config, aiokafka_kwargs
from streams.settings import Settings

pytestmark = pytest.mark.kafka

PASSWORD = "s3cret-Pw-42"


@dataclass(frozen=True, slots=True)
class SecureBroker:
    sasl_plaintext: str
    sasl_ssl: str
    ca: Path
    other_ca: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """CA, a server keystore (PKCS#8 key + cert for IP 127.0.0.1) and an unrelated CA."""
    d = directory
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=relsec-test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=other-ca",
        "-keyout",
        str(d / "other.key"),
        "-out",
        str(d / "other.pem"),
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(d / "srv.key"),
        "-out",
        str(d / "srv.csr"),
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(d / "srv.csr"),
        "-CA",
        str(d / "ca.pem"),
        "-CAkey",
        str(d / "ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(d / "ext.cnf"),
        "-out",
        str(d / "srv.pem"),
    )
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(d / "srv.key"), "-out", str(d / "srv.pk8"))
    keystore = d / "keystore.pem"
    keystore.write_text((d / "srv.pk8").read_text() + (d / "srv.pem").read_text())
    return d / "ca.pem", keystore, d / "other.pem"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    work = tmp_path_factory.mktemp("kafka-secure")
    ca, keystore, other_ca = _make_certs(work)
    broker, controller, plain_port, ssl_port = pick_free_ports(4)
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="broker" password="broker-pw" user_broker="broker-pw" '
        f'user_relsec="{PASSWORD}";'
    )
    listeners = (
        f"PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller},"
        f"SASL_PLAINTEXT://127.0.0.1:{plain_port},SASL_SSL://127.0.0.1:{ssl_port}"
    )
    cluster = LocalKafka(
        work / "state",
        broker_ports=[broker],
        controller_ports=[controller],
        heap_min="128m",
        heap_max="512m",
        die_with_parent=True,
        extra_properties={
            "listeners": listeners,
            "advertised.listeners": listeners,
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(keystore),
        },
    )
    atexit.register(cluster.down)
    try:
        cluster.up()
        yield SecureBroker(f"127.0.0.1:{plain_port}", f"127.0.0.1:{ssl_port}", ca, other_ca)
    finally:
        cluster.down()


def _settings(bootstrap: str, protocol: str, ca: Path, password: str = PASSWORD) -> Settings:
    return Settings.resolve(
        topic_prefix=f"sec-{uuid.uuid4().hex[:8]}.",
        env={
            "RELSEC_BOOTSTRAP_SERVERS": bootstrap,
            "RELSEC_KAFKA_SECURITY_PROTOCOL": protocol,
            "RELSEC_KAFKA_SASL_MECHANISM": "PLAIN",
            "RELSEC_KAFKA_SASL_USERNAME": "relsec",
            "RELSEC_KAFKA_SASL_PASSWORD": password,
            "RELSEC_KAFKA_SSL_CA_LOCATION": str(ca),
        },
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _librdkafka_messages(settings: Settings) -> list[str]:
    """What librdkafka logs while a metadata request fails (it must fail)."""
    logger = logging.getLogger(f"test.librdkafka.{uuid.uuid4().hex}")
    logger.propagate = False
    collect = _Collect()
    logger.addHandler(collect)
    admin = AdminClient({**admin_config(settings), "logger": logger})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=4)
    admin.poll(0.5)  # log lines are handed to Python when the client is polled
    return collect.messages


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_both_clients_round_trip_over_sasl_and_tls(
    secure_broker: SecureBroker, protocol: str
) -> None:
    bootstrap = secure_broker.sasl_ssl if protocol == "SASL_SSL" else secure_broker.sasl_plaintext
    settings = _settings(bootstrap, protocol, secure_broker.ca)
    topic = f"{settings.topics.prefix}secure"
    # Auto-created on first write (Kafka's default); one partition.
    from_confluent = [(f"k{i}".encode(), f"c{i}".encode()) for i in range(50)]
    from_aio = [(f"k{i}".encode(), f"a{i}".encode()) for i in range(50)]
    confluent_produce(settings, topic, from_confluent)
    asyncio.run(aio_produce(settings, topic, from_aio))
    by_aio = asyncio.run(aio_consume(settings, topic, 100, None))
    by_confluent = confluent_consume(settings, topic, 100)
    expected = sorted(from_confluent + from_aio)
    assert sorted((k, v) for k, v, _ in by_aio) == expected
    assert sorted((k, v) for k, v, _ in by_confluent) == expected


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_wrong_password_is_refused_by_both_clients(
    secure_broker: SecureBroker, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = secure_broker.sasl_ssl if protocol == "SASL_SSL" else secure_broker.sasl_plaintext
    settings = _settings(bootstrap, protocol, secure_broker.ca, password="wrong-" + PASSWORD)
    librdkafka_log = _librdkafka_messages(settings)
    assert any("Authentication failed" in m for m in librdkafka_log), librdkafka_log[:3]
    assert not any("wrong-" in m for m in librdkafka_log)

    async def start() -> None:
        producer = AIOKafkaProducer(**aiokafka_kwargs(settings), request_timeout_ms=10000)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with caplog.at_level(logging.DEBUG, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        asyncio.run(start())
    aio_log = [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")]
    assert any("Authentication failed" in m for m in aio_log), aio_log[:5]
    # Not even aiokafka's DEBUG log (which would print the SASL request) shows the password.
    assert not any("wrong-" in m for m in aio_log)
    assert any("SASL authentication bytes redacted" in m for m in aio_log)


def test_tls_with_an_unrelated_ca_is_refused(
    secure_broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(secure_broker.sasl_ssl, "SASL_SSL", secure_broker.other_ca)

    async def start() -> None:
        producer = AIOKafkaProducer(**aiokafka_kwargs(settings), request_timeout_ms=10000)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with caplog.at_level(logging.DEBUG, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        asyncio.run(start())
    aio_log = [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")]
    assert any("CERTIFICATE_VERIFY_FAILED" in m for m in aio_log), aio_log[:5]
    librdkafka_log = _librdkafka_messages(settings)
    assert any("certificate verify failed" in m for m in librdkafka_log), librdkafka_log[:3]
