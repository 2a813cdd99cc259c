"""Settings in one place: each declared once, the flags and the environment read built from it.

A :class:`Setting` names one value: its attribute, how text becomes the value
(:data:`INTEGER`, :data:`DURATION`, ...), its default, its help, the ``RELSEC_*``
environment variable that may set it, its command-line flag, and a check.
:func:`add_flags` turns declarations into argparse options (their help says the
default and the variable); :func:`resolve` reads a value from the flag if given,
else from the environment, else the default, and runs the check, so every
setting is named, parsed and checked the same way wherever it comes from.

The declarations of this module are the Kafka connection (:data:`CONNECTION`:
bootstrap address, topic prefix, allowed lateness, Schema Registry) and the client
security (:data:`SECURITY`, environment only: secrets are never flags). The
worker declares its own options in :mod:`streams.worker.options`, each command
module of :mod:`streams.cli` its commands' (``COMMANDS``), the local Kafka its
environment in :mod:`streams.devkafka.settings`. A command's parser gets its flags
from :func:`add_flags`, and :func:`streams.cli.main` runs :func:`apply` (flag, else
variable, else default; checked) before the handler. ``relsec settings`` prints
every declaration as the table of docs/settings.md.

Secrets (SASL passwords, key passwords) are read from the environment only and
never printed: :meth:`KafkaSecurity.redacted` is what logs may show.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from agents.engine import EngineConfig
from agents.engine.core import DUPLICATE_WINDOW_MS
from agents.engine.names import DEFAULT_MUTABLE_RELEASE_PATTERNS
from agents.errors import ConfigError
from agents.model._pure import PURE_ENV
from agents.model.timefmt import MS_PER_HOUR, parse_duration_ms

T = TypeVar("T")

DEFAULT_BOOTSTRAP: Final = "localhost:9092"
DEFAULT_PREFIX: Final = "relsec."
DEFAULT_PARTITIONS: Final = 6
"""Partitions of each topic ``relsec topics create`` makes (the inputs must share it)."""
DEFAULT_ALLOWED_LATENESS_MS: Final = 24 * MS_PER_HOUR


# -- how text becomes a value --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """How a setting's text (a flag or an environment variable) becomes its value."""

    name: str
    parse: Callable[[str], T]
    show: Callable[[T], str] = str


def _parse_int(text: str) -> int:
    return int(text.strip().replace("_", ""))


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def _show_duration(ms: int) -> str:
    for unit, size in (("h", MS_PER_HOUR), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


TEXT: Final[Kind[str]] = Kind("text", str)
INTEGER: Final[Kind[int]] = Kind("integer", _parse_int)
NUMBER: Final[Kind[float]] = Kind("number", float)
BOOLEAN: Final[Kind[bool]] = Kind("boolean", _parse_bool, lambda b: "true" if b else "false")
DURATION: Final[Kind[int]] = Kind("duration", parse_duration_ms, _show_duration)
"""A duration written ``24h``, ``90m``, ``30s`` or ``250ms``; the value is milliseconds."""


# -- checks ----------------------------------------------------------------------


def at_least(minimum: float) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return None if value >= minimum else f"must be at least {minimum}"

    return check


def one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


SHOWN_TEXT_CHARS: Final = 60
"""How much of a refused value an error quotes (a value may be a pasted file)."""


def _abridged(text: str) -> str:
    if len(text) <= SHOWN_TEXT_CHARS:
        return repr(text)
    return f"{text[:SHOWN_TEXT_CHARS]!r}… ({len(text)} chars)"


# -- declarations ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One setting, declared once.

    ``flag``: the command-line option (``""``, the default, derives it from ``name``:
    ``merge_idle_ms`` -> ``--merge-idle-ms``; ``None``: no flag, environment only).
    ``env``: the environment variable, or ``None``. ``default`` ``None`` means unset.
    ``check`` returns what is wrong with a value, or ``None``. ``repeat``: the flag may
    be given several times and the value is a list, empty when unset (the variable
    holds the items separated by ``os.pathsep``; ``default`` stays ``None``).
    ``default_text`` is what help says for a default computed where it is used (``the
    worker's group name + '-notify'``).
    """

    name: str
    kind: Kind[T]
    default: T | None
    help: str
    env: str | None = None
    flag: str | None = ""
    check: Callable[[T], str | None] | None = None
    choices: tuple[str, ...] | None = None
    secret: bool = False
    metavar: str | None = None
    repeat: bool = False
    default_text: str | None = None
    separator: str | None = os.pathsep
    """Between the items of a ``repeat`` setting's variable; ``None``: any whitespace."""

    @property
    def option(self) -> str | None:
        if self.flag == "":
            return "--" + self.name.replace("_", "-")
        return self.flag

    def describe_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if self.default is None:
            return "none" if self.repeat else "unset"
        if self.secret:
            return "***"
        return self.kind.show(self.default)

    def full_help(self) -> str:
        sources = [f"default {self.describe_default()}"]
        if self.env:
            sources.append(f"${self.env}")
        return f"{self.help} ({'; '.join(sources)})"

    def parse_env(self, text: str, source: str) -> Any:
        """The value of the environment variable's text (a list for a ``repeat`` setting)."""
        if self.repeat:
            items = text.split(self.separator)
            return [self.parse(item, source) for item in items if item.strip()]
        return self.parse(text, source)

    def parse(self, text: str, source: str) -> T:
        try:
            return self.kind.parse(text)
        except (ValueError, TypeError) as exc:
            if self.secret:  # the parser's message would quote the secret
                raise ConfigError(f"{source}=***: not a valid {self.kind.name}") from None
            raise ConfigError(
                f"{source}={_abridged(text)}: not a valid {self.kind.name}: {exc}"
            ) from None

    def checked(self, value: T, source: str) -> T:
        problem = None
        if self.choices is not None and str(value) not in self.choices:
            problem = f"must be one of {', '.join(self.choices)}"
        elif self.check is not None:
            problem = self.check(value)
        if problem is not None:
            shown = "***" if self.secret else repr(value)
            raise ConfigError(f"{source}={shown}: {problem}")
        return value


GIVEN: Final = "_relsec_flags_given"
"""The attribute of a parsed namespace naming the settings whose flag was given."""


def _mark_given(namespace: argparse.Namespace, dest: str) -> None:
    given = set(getattr(namespace, GIVEN, ()))  # a copy: the parser's default is shared
    given.add(dest)
    setattr(namespace, GIVEN, frozenset(given))


class _Store(argparse._StoreAction):
    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        super().__call__(parser, namespace, values, option)
        _mark_given(namespace, self.dest)


class _Append(argparse._AppendAction):
    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        if self.dest not in getattr(namespace, GIVEN, ()):
            setattr(namespace, self.dest, [])  # the first flag replaces the default
        super().__call__(parser, namespace, values, option)
        _mark_given(namespace, self.dest)


class _True(argparse._StoreConstAction):
    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        super().__call__(parser, namespace, values, option)
        _mark_given(namespace, self.dest)


def add_flags(parser: argparse.ArgumentParser, settings: Iterable[Setting[Any]]) -> None:
    """Add one option per declared setting that has a flag.

    An option's parsed default is the declared default (so a parsed namespace reads as
    before), and the namespace records which flags were given (:data:`GIVEN`), so
    :func:`resolve` tells a flag from the environment and the default. A flag's value
    stays text until :func:`resolve` parses and checks it (errors name the flag).
    """
    parser.set_defaults(**{GIVEN: frozenset()})
    for setting in settings:
        option = setting.option
        if option is None:
            continue
        shown = setting.full_help().replace("%", "%%")  # argparse formats help with %
        default = [] if setting.repeat else setting.default
        if setting.kind is BOOLEAN:
            parser.add_argument(
                option, dest=setting.name, action=_True, const=True, default=default, help=shown
            )
            continue
        parser.add_argument(
            option,
            dest=setting.name,
            action=_Append if setting.repeat else _Store,
            default=default,
            choices=setting.choices,
            metavar=setting.metavar or ("DURATION" if setting.kind is DURATION else None),
            help=shown,
        )


def resolve(
    settings: Iterable[Setting[Any]],
    given: Mapping[str, Any] | argparse.Namespace | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Each setting's value: the flag (or ``given`` entry) if not ``None``, else its
    environment variable if set and not empty, else its default; checked.

    From a namespace parsed with :func:`add_flags`, only the flags given count (the
    others hold their defaults).

    Flag values that are text are parsed by the setting's kind; values already typed
    (a caller passing Python values) are only checked. Errors name the flag or the
    variable and what is wrong, never a secret's value.
    """
    values_given: Mapping[str, Any]
    if given is None:
        values_given = {}
    elif isinstance(given, argparse.Namespace):
        values_given = vars(given)
        if GIVEN in values_given:
            flags = values_given[GIVEN]
            values_given = {k: v for k, v in values_given.items() if k in flags}
    else:
        values_given = given
    environ = os.environ if env is None else env
    out: dict[str, Any] = {}
    for setting in settings:
        raw = values_given.get(setting.name)
        source = setting.option or setting.name
        value: Any
        if raw is not None:
            if setting.repeat and isinstance(raw, list | tuple):
                value = [setting.parse(r, source) if isinstance(r, str) else r for r in raw]
            else:
                value = setting.parse(raw, source) if isinstance(raw, str) else raw
        elif setting.env and environ.get(setting.env):
            source = setting.env
            value = setting.parse_env(environ[setting.env], source)
        else:
            out[setting.name] = [] if setting.repeat else setting.default
            continue
        out[setting.name] = setting.checked(value, source)
    return out


class SecretText(str):
    """A secret's text: the value itself everywhere, but ``***`` in a repr, so a parsed
    namespace or a dataclass that holds it never prints it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


def flag_given(args: argparse.Namespace, name: str) -> Any:
    """The value of setting ``name``'s flag when it was given on the command line, else
    ``None`` (for a command that treats "not given" apart from the default)."""
    return getattr(args, name, None) if name in getattr(args, GIVEN, ()) else None


def apply(
    args: argparse.Namespace,
    settings: Iterable[Setting[Any]],
    env: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """Resolve ``settings`` from parsed flags and the environment and store the typed,
    checked values back on ``args`` (what :func:`streams.cli.main` does before a handler).
    Secrets are stored as :class:`SecretText`: ``repr(args)`` shows ``***``."""
    secrets = {s.name for s in settings if s.secret}
    for name, value in resolve(settings, args, env).items():
        if name in secrets and isinstance(value, str):
            value = SecretText(value)
        setattr(args, name, value)
    return args


def from_env(setting: Setting[T], env: Mapping[str, str] | None = None) -> T | None:
    """The setting's value from its environment variable only (checked), or ``None``
    when the variable is unset or empty: for a command that treats "not given" apart."""
    environ = os.environ if env is None else env
    if not setting.env or not environ.get(setting.env):
        return None
    value: T = setting.parse_env(environ[setting.env], setting.env)
    return setting.checked(value, setting.env)


def check_values(settings: Iterable[Setting[Any]], values: Mapping[str, Any]) -> None:
    """Run each setting's check on values set in code (errors name the attribute)."""
    for setting in settings:
        value = values.get(setting.name)
        if value is not None:
            setting.checked(value, setting.name)


# -- the Kafka connection ----------------------------------------------------------

BOOTSTRAP_SERVERS: Final = Setting(
    "bootstrap_servers",
    TEXT,
    DEFAULT_BOOTSTRAP,
    "Kafka address, host:port[,host:port...]",
    env="RELSEC_BOOTSTRAP_SERVERS",
    check=not_empty,
)
TOPIC_PREFIX: Final = Setting(
    "topic_prefix",
    TEXT,
    DEFAULT_PREFIX,
    "topic name prefix (also names the worker's consumer group)",
    env="RELSEC_TOPIC_PREFIX",
    check=not_empty,
)
ALLOWED_LATENESS: Final = Setting(
    "allowed_lateness_ms",
    DURATION,
    DEFAULT_ALLOWED_LATENESS_MS,
    "how far behind its service's newest event an event may arrive (24h, 90m, 30s)",
    env="RELSEC_ALLOWED_LATENESS",
    flag="--allowed-lateness",
    check=at_least(0),
)
def valid_pattern(patterns: Any) -> str | None:
    """What is wrong with a regular expression (or each of a list), or ``None``."""
    for pattern in patterns if isinstance(patterns, list | tuple) else [patterns]:
        try:
            re.compile(pattern)
        except re.error as exc:
            return f"{pattern!r} is not a regular expression: {exc}"
    return None


DUPLICATE_WINDOW: Final = Setting(
    "duplicate_window_ms",
    DURATION,
    DUPLICATE_WINDOW_MS,
    "how long, in event time behind its service's newest event, an event_id is remembered "
    "so that a repeat is a duplicate (SPEC §1; never less than the allowed lateness)",
    env="RELSEC_DUPLICATE_WINDOW",
    flag="--duplicate-window",
    check=at_least(0),
)
MUTABLE_RELEASE_PATTERNS: Final = Setting(
    "mutable_release_patterns",
    TEXT,
    None,
    "a regular expression (full match) of release names that move between releases and "
    "never link (SPEC §8), besides latest, channel words (stable, main, ...) and floating "
    "image tags (app:1, app:v2.7); repeatable (the variable: separated by whitespace)",
    env="RELSEC_MUTABLE_RELEASE_PATTERNS",
    flag="--mutable-release-pattern",
    check=valid_pattern,
    repeat=True,
    metavar="REGEX",
    separator=None,
)
JUDGMENT: Final = (ALLOWED_LATENESS, DUPLICATE_WINDOW, MUTABLE_RELEASE_PATTERNS)
"""How the engine judges events: every process that runs or previews it (the worker,
the API's check, the demo) must agree on these, so they are declared once, here."""
PURE_PYTHON: Final = Setting(
    "pure_python",
    TEXT,
    None,
    "1: build (pip install) or run the engine and model from their Python sources, not "
    "the mypyc-compiled modules (agents/model/_pure.py reads it, before any setting)",
    env=PURE_ENV,
    flag=None,
)
BUILD_ENVIRONMENT: Final = (PURE_PYTHON,)
"""Read before relsec's settings exist (by the package inits and setup.py)."""
SCHEMA_REGISTRY_URL: Final = Setting(
    "schema_registry_url",
    TEXT,
    None,
    "Confluent Schema Registry URL (Avro in the registry's wire format)",
    env="RELSEC_SCHEMA_REGISTRY_URL",
    flag=None,
)
KAFKA_FLAGS: Final = (BOOTSTRAP_SERVERS, TOPIC_PREFIX)
"""The options every Kafka-facing subcommand shares."""
CONNECTION: Final = (BOOTSTRAP_SERVERS, TOPIC_PREFIX, *JUDGMENT, SCHEMA_REGISTRY_URL)

_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
UPPER_TEXT: Final[Kind[str]] = Kind("text", lambda text: text.strip().upper())

SECURITY: Final = (
    Setting(
        "security_protocol",
        UPPER_TEXT,
        "PLAINTEXT",
        "how clients reach Kafka",
        env="RELSEC_KAFKA_SECURITY_PROTOCOL",
        flag=None,
        choices=_PROTOCOLS,
    ),
    Setting(
        "sasl_mechanism",
        UPPER_TEXT,
        None,
        "SASL mechanism",
        env="RELSEC_KAFKA_SASL_MECHANISM",
        flag=None,
        choices=_MECHANISMS,
    ),
    Setting("sasl_username", TEXT, None, "SASL user", env="RELSEC_KAFKA_SASL_USERNAME", flag=None),
    Setting(
        "sasl_password",
        TEXT,
        None,
        "SASL password",
        env="RELSEC_KAFKA_SASL_PASSWORD",
        flag=None,
        secret=True,
    ),
    Setting(
        "ssl_ca_location",
        TEXT,
        None,
        "CA certificate file",
        env="RELSEC_KAFKA_SSL_CA_LOCATION",
        flag=None,
    ),
    Setting(
        "ssl_cert_location",
        TEXT,
        None,
        "client certificate file",
        env="RELSEC_KAFKA_SSL_CERT_LOCATION",
        flag=None,
    ),
    Setting(
        "ssl_key_location",
        TEXT,
        None,
        "client key file",
        env="RELSEC_KAFKA_SSL_KEY_LOCATION",
        flag=None,
    ),
    Setting(
        "ssl_key_password",
        TEXT,
        None,
        "client key password",
        env="RELSEC_KAFKA_SSL_KEY_PASSWORD",
        flag=None,
        secret=True,
    ),
)


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

    Read from the environment only (:data:`SECURITY`): ``RELSEC_KAFKA_SECURITY_PROTOCOL``
    (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), ``RELSEC_KAFKA_SASL_MECHANISM`` (PLAIN,
    SCRAM-SHA-256, SCRAM-SHA-512), ``RELSEC_KAFKA_SASL_USERNAME``,
    ``RELSEC_KAFKA_SASL_PASSWORD``, ``RELSEC_KAFKA_SSL_CA_LOCATION``,
    ``RELSEC_KAFKA_SSL_CERT_LOCATION``, ``RELSEC_KAFKA_SSL_KEY_LOCATION``,
    ``RELSEC_KAFKA_SSL_KEY_PASSWORD``.
    """

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_cert_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.security_protocol not in _PROTOCOLS:
            raise ConfigError(
                f"RELSEC_KAFKA_SECURITY_PROTOCOL={self.security_protocol!r} is not one of "
                f"{', '.join(_PROTOCOLS)}"
            )
        if self.sasl_mechanism is not None and self.sasl_mechanism not in _MECHANISMS:
            raise ConfigError(
                f"RELSEC_KAFKA_SASL_MECHANISM={self.sasl_mechanism!r} is not one of "
                f"{', '.join(_MECHANISMS)}"
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
        return KafkaSecurity(**resolve(SECURITY, env=env))

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
    duplicate_window_ms: int = DUPLICATE_WINDOW_MS
    mutable_release_patterns: tuple[str, ...] = ()
    """Patterns of mutable release names besides the engine's defaults."""

    def engine_config(self) -> EngineConfig:
        """The engine's configuration these settings ask for (the worker's, the check's)."""
        return EngineConfig(
            allowed_lateness_ms=self.allowed_lateness_ms,
            duplicate_window_ms=self.duplicate_window_ms,
            mutable_release_patterns=(
                *DEFAULT_MUTABLE_RELEASE_PATTERNS,
                *self.mutable_release_patterns,
            ),
        )

    @staticmethod
    def resolve(
        bootstrap_servers: str | None = None,
        topic_prefix: str | None = None,
        allowed_lateness: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Options first, then ``RELSEC_*`` environment variables, then defaults."""
        given = {
            "bootstrap_servers": bootstrap_servers or None,
            "topic_prefix": topic_prefix or None,
            "allowed_lateness_ms": allowed_lateness or None,
        }
        return Settings.from_values(resolve(CONNECTION, given, env), env)

    @staticmethod
    def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
        """From a parser built with :data:`KAFKA_FLAGS` (and maybe ``--allowed-lateness``)."""
        return Settings.from_values(resolve(CONNECTION, args, env), env)

    @staticmethod
    def from_values(values: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
        return Settings(
            bootstrap_servers=values["bootstrap_servers"],
            topics=Topics(values["topic_prefix"]),
            security=KafkaSecurity.from_env(env),
            schema_registry_url=values["schema_registry_url"],
            allowed_lateness_ms=values["allowed_lateness_ms"],
            duplicate_window_ms=values["duplicate_window_ms"],
            mutable_release_patterns=tuple(values["mutable_release_patterns"]),
        )
