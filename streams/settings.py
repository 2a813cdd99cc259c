"""Settings in one place: Kafka address, topic names, client security, lateness.

Every value comes from a command-line option, else an environment variable,
else a default. Secrets (SASL passwords, key passwords) are read from the
environment only and never printed: :meth:`KafkaSecurity.redacted` is what logs
and ``--help`` output may show.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.errors import ConfigError
from agents.model.timefmt import MS_PER_HOUR, parse_duration_ms

DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_PREFIX = "relsec."
DEFAULT_PARTITIONS = 6
DEFAULT_ALLOWED_LATENESS_MS = 24 * MS_PER_HOUR


@dataclass(frozen=True, slots=True)
class Topics:
    """Names of relsec's topics under one prefix (SPEC §7)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def deploys(self) -> str:
        return f"{self.prefix}deploys"

    @property
    def incidents(self) -> str:
        return f"{self.prefix}incidents"

    @property
    def security_flags(self) -> str:
        return f"{self.prefix}security-flags"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    @property
    def alerts_ocsf(self) -> str:
        return f"{self.prefix}alerts.ocsf"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.deploys, self.incidents, self.security_flags)

    def input_for_type(self, event_type: str) -> str:
        return {
            "deploy": self.deploys,
            "incident": self.incidents,
            "security_flag": self.security_flags,
        }[event_type]

    def type_for_input(self, topic: str) -> str | None:
        return {
            self.deploys: "deploy",
            self.incidents: "incident",
            self.security_flags: "security_flag",
        }.get(topic)

    @property
    def consumer_group(self) -> str:
        """The worker's consumer group / Faust app id, named after the prefix."""
        return f"{self.prefix.rstrip('.-_') or 'relsec'}-worker"

    @property
    def state_changelog(self) -> str:
        """The compacted topic of the worker's engine state per service (both runtimes).

        Faust names a Table's changelog ``{app id}-{table}-changelog``; the confluent-kafka
        runtime writes the same topic, so a worker can switch runtimes across a restart.
        """
        return f"{self.consumer_group}-service-state-changelog"


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """SASL/TLS settings passed through to both clients (confluent-kafka and aiokafka).

    Read from ``RELSEC_KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT,
    SASL_SSL), ``RELSEC_KAFKA_SASL_MECHANISM`` (PLAIN, SCRAM-SHA-256,
    SCRAM-SHA-512), ``RELSEC_KAFKA_SASL_USERNAME``, ``RELSEC_KAFKA_SASL_PASSWORD``,
    ``RELSEC_KAFKA_SSL_CA_LOCATION``, ``RELSEC_KAFKA_SSL_CERT_LOCATION``,
    ``RELSEC_KAFKA_SSL_KEY_LOCATION``, ``RELSEC_KAFKA_SSL_KEY_PASSWORD``.
    """

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_cert_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    _PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    _MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

    def __post_init__(self) -> None:
        if self.security_protocol not in self._PROTOCOLS:
            raise ConfigError(
                f"RELSEC_KAFKA_SECURITY_PROTOCOL={self.security_protocol!r} is not one of "
                f"{', '.join(self._PROTOCOLS)}"
            )
        if self.sasl_mechanism is not None and self.sasl_mechanism not in self._MECHANISMS:
            raise ConfigError(
                f"RELSEC_KAFKA_SASL_MECHANISM={self.sasl_mechanism!r} is not one of "
                f"{', '.join(self._MECHANISMS)}"
            )
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password is not None
        ):
            raise ConfigError(
                f"security protocol {self.security_protocol} needs RELSEC_KAFKA_SASL_MECHANISM, "
                "RELSEC_KAFKA_SASL_USERNAME and RELSEC_KAFKA_SASL_PASSWORD"
            )

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> KafkaSecurity:
        e = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = e.get(f"RELSEC_KAFKA_{name}")
            return value if value else None

        return KafkaSecurity(
            security_protocol=(get("SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=(get("SASL_MECHANISM") or "").upper() or None,
            sasl_username=get("SASL_USERNAME"),
            sasl_password=get("SASL_PASSWORD"),
            ssl_ca_location=get("SSL_CA_LOCATION"),
            ssl_cert_location=get("SSL_CERT_LOCATION"),
            ssl_key_location=get("SSL_KEY_LOCATION"),
            ssl_key_password=get("SSL_KEY_PASSWORD"),
        )

    def confluent_config(self) -> dict[str, Any]:
        """librdkafka properties for confluent-kafka clients."""
        conf: dict[str, Any] = {"security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password
        for attr, key in (
            ("ssl_ca_location", "ssl.ca.location"),
            ("ssl_cert_location", "ssl.certificate.location"),
            ("ssl_key_location", "ssl.key.location"),
            ("ssl_key_password", "ssl.key.password"),
        ):
            value = getattr(self, attr)
            if value is not None:
                conf[key] = value
        return conf

    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def redacted(self) -> dict[str, Any]:
        """The settings with secrets replaced by ``***``: safe to log."""
        conf = self.confluent_config()
        for key in ("sasl.password", "ssl.key.password"):
            if key in conf:
                conf[key] = "***"
        return conf


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a relsec process needs to reach Kafka and name its topics."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topics: Topics = field(default_factory=Topics)
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    schema_registry_url: str | None = None
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS

    @staticmethod
    def resolve(
        bootstrap_servers: str | None = None,
        topic_prefix: str | None = None,
        allowed_lateness: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Options first, then ``RELSEC_*`` environment variables, then defaults."""
        e = os.environ if env is None else env
        lateness_text = allowed_lateness or e.get("RELSEC_ALLOWED_LATENESS")
        try:
            lateness_ms = (
                parse_duration_ms(lateness_text) if lateness_text else DEFAULT_ALLOWED_LATENESS_MS
            )
        except ValueError as exc:
            raise ConfigError(f"allowed lateness: {exc}") from None
        return Settings(
            bootstrap_servers=bootstrap_servers
            or e.get("RELSEC_BOOTSTRAP_SERVERS")
            or DEFAULT_BOOTSTRAP,
            topics=Topics(topic_prefix or e.get("RELSEC_TOPIC_PREFIX") or DEFAULT_PREFIX),
            security=KafkaSecurity.from_env(e),
            schema_registry_url=e.get("RELSEC_SCHEMA_REGISTRY_URL") or None,
            allowed_lateness_ms=lateness_ms,
        )
