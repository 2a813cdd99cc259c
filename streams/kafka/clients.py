"""Client configurations for confluent-kafka and aiokafka, built from :class:`Settings`.

Both clients relsec uses must agree on two things: how they reach the cluster
(bootstrap address, SASL/TLS passed through from ``settings.security``) and
which partition a key goes to. librdkafka's default partitioner
(``consistent_random``, CRC32) disagrees with the Java client and aiokafka, which
hash keys with murmur2; so every confluent-kafka producer here uses
``murmur2_random`` and :func:`murmur2_partition` is the same function in pure
Python, for checks and for code that must pick a partition itself.

The dictionaries returned may hold secrets (``sasl.password``,
``ssl.key.password``): pass them to the client, never to a logger. Use
:func:`redacted` for anything that is printed.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from collections.abc import Mapping
from typing import Any

from agents.errors import ConfigError
from streams.settings import KafkaSecurity, Settings

_SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "sasl_plain_password"})

_MURMUR2_SEED = 0x9747B28C
_MURMUR2_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data`` as the Java client computes it (a signed int)."""
    length = len(data)
    h = (_MURMUR2_SEED ^ length) & _MASK32
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _MURMUR2_M) & _MASK32
        k ^= k >> 24
        k = (k * _MURMUR2_M) & _MASK32
        h = (h * _MURMUR2_M) & _MASK32
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _MURMUR2_M) & _MASK32
    h ^= h >> 13
    h = (h * _MURMUR2_M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: bytes, num_partitions: int) -> int:
    """The partition of ``key`` as the Java client, aiokafka and ``murmur2_random`` choose it."""
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be at least 1, got {num_partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


def _base_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": settings.bootstrap_servers}
    conf.update(settings.security.confluent_config())
    return conf


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """confluent-kafka ``Producer`` settings: idempotent, ``acks=all``, murmur2 keys.

    No compression by default: aiokafka (the Faust worker) can only read
    lz4/snappy/zstd batches when optional Python packages are installed.

    ``overrides`` are librdkafka property names (``**{"linger.ms": 5}``) or
    Python callbacks (``on_delivery``, ``error_cb``) and win over the defaults.
    """
    conf = _base_config(settings)
    conf.update(
        {
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    conf.update(overrides)
    return conf


def consumer_config(
    settings: Settings, group_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """confluent-kafka ``Consumer`` settings, reading from the earliest offset.

    With ``group_id`` the consumer joins that group and commits as librdkafka
    does by default. Without it, it gets a fresh group of its own with
    auto-commit off: right for tools that read a topic and exit (``relsec alerts``)
    and must not disturb the worker's group.
    """
    conf = _base_config(settings)
    conf["auto.offset.reset"] = "earliest"
    conf["isolation.level"] = "read_committed"
    if group_id is None:
        conf["group.id"] = f"{settings.topics.prefix}reader-{uuid.uuid4().hex[:12]}"
        conf["enable.auto.commit"] = False
    else:
        conf["group.id"] = group_id
    conf.update(overrides)
    return conf


def admin_config(settings: Settings) -> dict[str, Any]:
    """confluent-kafka ``AdminClient`` settings."""
    return _base_config(settings)


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """A client TLS context from the CA / certificate / key files in ``security``."""
    try:
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH, cafile=security.ssl_ca_location
        )
        if security.ssl_cert_location:
            context.load_cert_chain(
                certfile=security.ssl_cert_location,
                keyfile=security.ssl_key_location,
                password=security.ssl_key_password,
            )
    except (OSError, ssl.SSLError) as exc:
        # The message names files, never the key password.
        raise ConfigError(
            "cannot build the Kafka TLS context from "
            f"RELSEC_KAFKA_SSL_CA_LOCATION={security.ssl_ca_location!r}, "
            f"RELSEC_KAFKA_SSL_CERT_LOCATION={security.ssl_cert_location!r}, "
            f"RELSEC_KAFKA_SSL_KEY_LOCATION={security.ssl_key_location!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return context


class _SaslRequestRedactor(logging.Filter):
    """Blanks SASL authentication requests in aiokafka's DEBUG log.

    aiokafka 0.14 logs every request at DEBUG on ``aiokafka.conn``, including
    ``SaslAuthenticateRequest(sasl_auth_bytes=b'user\\x00user\\x00PASSWORD')``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            name = type(arg).__name__
            if name.startswith("SaslAuthenticateRequest"):
                record.msg = "Request %s (SASL authentication bytes redacted by relsec)"
                record.args = (name,)
                break
        return True


_SASL_REDACTOR = _SaslRequestRedactor()


def _redact_aiokafka_sasl_logging() -> None:
    logger = logging.getLogger("aiokafka.conn")
    if _SASL_REDACTOR not in logger.filters:
        logger.addFilter(_SASL_REDACTOR)


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer`` / ``AIOKafkaConsumer`` / admin clients.

    aiokafka's default partitioner is already murmur2 (Java-compatible). With a
    SASL password, aiokafka's DEBUG log of the authentication request (which
    carries the password) is redacted.
    """
    sec = settings.security
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": sec.security_protocol,
    }
    if sec.sasl_mechanism:
        kwargs["sasl_mechanism"] = sec.sasl_mechanism
    if sec.sasl_username is not None:
        kwargs["sasl_plain_username"] = sec.sasl_username
    if sec.sasl_password is not None:
        kwargs["sasl_plain_password"] = sec.sasl_password
        _redact_aiokafka_sasl_logging()
    if sec.uses_tls():
        kwargs["ssl_context"] = ssl_context(sec)
    return kwargs


def redacted(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a client configuration with secrets replaced by ``***``: safe to log."""
    out: dict[str, Any] = {}
    for key, value in conf.items():
        if key in _SECRET_KEYS:
            out[key] = "***"
        elif key == "ssl_context":
            out[key] = "<SSLContext>"
        else:
            out[key] = value
    return out
