"""The three input event kinds of SPEC §1, their validation and their order key.

``parse_event`` turns a decoded JSON object (or an Avro record, which has the
same field names) into a frozen value, or raises :class:`ValidationError`
naming the field and the reason. ``event_to_dict`` is its inverse.

Decisions where the SPEC is silent (see docs/decisions.md):

* nullable fields may be omitted (read as null); ``vulnerabilities`` may be
  omitted (read as empty); ``status`` of a deploy defaults to ``succeeded``;
* identifiers and names are limited to 200 characters (``environment`` to
  100, as the SPEC says), free text (``title``, ``reason``, ``actor``) to
  4096 characters, ``vulnerabilities`` to 1000 entries;
* extra fields are ignored by the rules and not carried through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from agents.errors import ValidationError
from agents.model.timefmt import TimestampError, format_rfc3339_ms, parse_rfc3339_ms

EventType = Literal["deploy", "incident", "security_flag"]

TYPE_RANK: Final[dict[str, int]] = {"security_flag": 0, "incident": 1, "deploy": 2}

DEPLOY_ACTIONS: Final = frozenset({"deploy", "rollback"})
DEPLOY_STATUSES: Final = frozenset({"succeeded", "failed"})
TEAMS: Final = frozenset({"sre", "security", "dev"})
INCIDENT_STATUSES: Final = frozenset({"opened", "acknowledged", "resolved"})
INCIDENT_SEVERITIES: Final = frozenset({"sev1", "sev2", "sev3", "sev4", "sev5"})
FLAG_STATUSES: Final = frozenset({"raised", "cleared", "risk_accepted"})
FLAG_SEVERITIES: Final = frozenset({"critical", "high", "medium", "low"})

MAX_ID_CHARS: Final = 200
MAX_ENVIRONMENT_CHARS: Final = 100
MAX_TEXT_CHARS: Final = 4096
MAX_VULNERABILITIES: Final = 1000
MAX_RELEASE_ALIASES: Final = 64
"""SPEC §8: other names of an event's release (tags, digests, a commit SHA, a version)."""


@dataclass(frozen=True, slots=True)
class Deploy:
    """A change to what runs in (service, environment)."""

    event_id: str
    occurred_at_ms: int
    source: str
    service: str
    environment: str
    release: str
    previous_release: str | None
    action: str
    status: str = "succeeded"
    team: str | None = None
    actor: str | None = None
    reason: str | None = None
    incident_id: str | None = None
    release_aliases: tuple[str, ...] = ()
    """SPEC §8: other names of ``release``."""

    type: ClassVar[Literal["deploy"]] = "deploy"

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True, slots=True)
class Incident:
    """One event of an incident (opened, acknowledged, resolved)."""

    event_id: str
    occurred_at_ms: int
    source: str
    service: str
    environment: str
    incident_id: str
    status: str
    severity: str
    title: str
    suspected_release: str | None = None
    release_aliases: tuple[str, ...] = ()
    """SPEC §8: other names of ``suspected_release``."""

    type: ClassVar[Literal["incident"]] = "incident"


@dataclass(frozen=True, slots=True)
class SecurityFlag:
    """A security finding against one release of a service (all environments)."""

    event_id: str
    occurred_at_ms: int
    source: str
    service: str
    flag_id: str
    release: str
    status: str
    severity: str
    title: str
    vulnerabilities: tuple[str, ...] = ()
    fixed_in: str | None = None
    release_aliases: tuple[str, ...] = ()
    """SPEC §8: other names of ``release``."""

    type: ClassVar[Literal["security_flag"]] = "security_flag"


Event = Deploy | Incident | SecurityFlag


def order_key(event: Event) -> tuple[int, int, str]:
    """The SPEC §2 order key ``(occurred_at, type rank, event_id)``."""
    return (event.occurred_at_ms, TYPE_RANK[event.type], event.event_id)


# --- validation -------------------------------------------------------------

_MISSING: Final = object()


def _fail(field: str, reason: str, detail: str) -> ValidationError:
    return ValidationError(field, reason, detail)


def _str(
    obj: Mapping[str, Any], field: str, *, min_len: int = 1, max_len: int = MAX_ID_CHARS
) -> str:
    value = obj.get(field, _MISSING)
    if value is _MISSING or value is None:
        raise _fail(field, "missing", "is required")
    if type(value) is not str:
        raise _fail(field, "wrong_type", f"must be a string, got {type(value).__name__}")
    n = len(value)
    if n < min_len:
        raise _fail(field, "too_short", f"must have at least {min_len} character(s)")
    if n > max_len:
        raise _fail(field, "too_long", f"has {n} characters, at most {max_len} allowed")
    return value


def _opt_str(obj: Mapping[str, Any], field: str, *, max_len: int = MAX_ID_CHARS) -> str | None:
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is not str:
        raise _fail(field, "wrong_type", f"must be a string or null, got {type(value).__name__}")
    if len(value) > max_len:
        raise _fail(field, "too_long", f"has {len(value)} characters, at most {max_len} allowed")
    return value


def _enum(
    obj: Mapping[str, Any], field: str, allowed: frozenset[str], default: str | None = None
) -> str:
    value = obj.get(field, _MISSING)
    if value is _MISSING or value is None:
        if default is not None:
            return default
        raise _fail(field, "missing", f"is required (one of {', '.join(sorted(allowed))})")
    if type(value) is not str:
        raise _fail(field, "wrong_type", f"must be a string, got {type(value).__name__}")
    if value not in allowed:
        raise _fail(
            field, "unknown_enum", f"{value!r} is not one of {', '.join(sorted(allowed))}"
        )
    return value


def _opt_enum(obj: Mapping[str, Any], field: str, allowed: frozenset[str]) -> str | None:
    if obj.get(field) is None:
        return None
    return _enum(obj, field, allowed)


def _timestamp(obj: Mapping[str, Any], field: str) -> int:
    value = obj.get(field, _MISSING)
    if value is _MISSING or value is None:
        raise _fail(field, "missing", "is required")
    if type(value) is not str:
        raise _fail(field, "wrong_type", f"must be an RFC 3339 string, got {type(value).__name__}")
    try:
        return parse_rfc3339_ms(value)
    except TimestampError as exc:
        raise _fail(field, "bad_timestamp", str(exc)) from None


def _str_list(
    obj: Mapping[str, Any], field: str, max_entries: int = MAX_VULNERABILITIES
) -> tuple[str, ...]:
    value = obj.get(field)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _fail(field, "wrong_type", f"must be a list of strings, got {type(value).__name__}")
    if len(value) > max_entries:
        raise _fail(field, "too_long", f"has {len(value)} entries, at most {max_entries}")
    for i, item in enumerate(value):
        if type(item) is not str:
            raise _fail(f"{field}[{i}]", "wrong_type", "must be a string")
        if not item:
            raise _fail(f"{field}[{i}]", "too_short", "must have at least 1 character")
        if len(item) > MAX_ID_CHARS:
            raise _fail(
                f"{field}[{i}]", "too_long",
                f"has {len(item)} characters, at most {MAX_ID_CHARS} allowed",
            )
    return tuple(value)


def _aliases(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """``release_aliases``: distinct names, in the order given."""
    return tuple(dict.fromkeys(_str_list(obj, "release_aliases", MAX_RELEASE_ALIASES)))


def _deploy(obj: Mapping[str, Any]) -> Deploy:
    return Deploy(
        event_id=_str(obj, "event_id"),
        occurred_at_ms=_timestamp(obj, "occurred_at"),
        source=_str(obj, "source"),
        service=_str(obj, "service"),
        environment=_str(obj, "environment", max_len=MAX_ENVIRONMENT_CHARS),
        release=_str(obj, "release"),
        previous_release=_opt_str(obj, "previous_release"),
        action=_enum(obj, "action", DEPLOY_ACTIONS),
        status=_enum(obj, "status", DEPLOY_STATUSES, default="succeeded"),
        team=_opt_enum(obj, "team", TEAMS),
        actor=_opt_str(obj, "actor", max_len=MAX_TEXT_CHARS),
        reason=_opt_str(obj, "reason", max_len=MAX_TEXT_CHARS),
        incident_id=_opt_str(obj, "incident_id"),
        release_aliases=_aliases(obj),
    )


def _incident(obj: Mapping[str, Any]) -> Incident:
    return Incident(
        event_id=_str(obj, "event_id"),
        occurred_at_ms=_timestamp(obj, "occurred_at"),
        source=_str(obj, "source"),
        service=_str(obj, "service"),
        environment=_str(obj, "environment", max_len=MAX_ENVIRONMENT_CHARS),
        incident_id=_str(obj, "incident_id"),
        status=_enum(obj, "status", INCIDENT_STATUSES),
        severity=_enum(obj, "severity", INCIDENT_SEVERITIES),
        title=_str(obj, "title", min_len=0, max_len=MAX_TEXT_CHARS),
        suspected_release=_opt_str(obj, "suspected_release"),
        release_aliases=_aliases(obj),
    )


def _security_flag(obj: Mapping[str, Any]) -> SecurityFlag:
    return SecurityFlag(
        event_id=_str(obj, "event_id"),
        occurred_at_ms=_timestamp(obj, "occurred_at"),
        source=_str(obj, "source"),
        service=_str(obj, "service"),
        flag_id=_str(obj, "flag_id"),
        release=_str(obj, "release"),
        status=_enum(obj, "status", FLAG_STATUSES),
        severity=_enum(obj, "severity", FLAG_SEVERITIES),
        title=_str(obj, "title", min_len=0, max_len=MAX_TEXT_CHARS),
        vulnerabilities=_str_list(obj, "vulnerabilities"),
        fixed_in=_opt_str(obj, "fixed_in"),
        release_aliases=_aliases(obj),
    )


_PARSERS: Final[dict[str, Callable[[Mapping[str, Any]], Event]]] = {
    "deploy": _deploy,
    "incident": _incident,
    "security_flag": _security_flag,
}
EVENT_TYPES: Final = frozenset(_PARSERS)


def parse_event(obj: Any, expected_type: str | None = None) -> Event:
    """Validate a decoded object into an event.

    ``expected_type`` is the type the topic implies; when given, a ``type``
    field, if present, must agree with it. Without it, ``type`` is required.
    """
    if not isinstance(obj, Mapping):
        raise _fail("$", "wrong_type", f"an event must be a JSON object, got {type(obj).__name__}")
    declared = obj.get("type")
    if declared is not None and type(declared) is not str:
        raise _fail("type", "wrong_type", f"must be a string, got {type(declared).__name__}")
    if declared is not None and declared not in _PARSERS:
        allowed = ", ".join(sorted(_PARSERS))
        raise _fail("type", "unknown_enum", f"{declared!r} is not one of {allowed}")
    if expected_type is not None:
        if declared is not None and declared != expected_type:
            raise _fail("type", "unknown_enum", f"{declared!r} on a {expected_type} topic")
        kind = expected_type
    elif declared is None:
        raise _fail("type", "missing", "is required (deploy, incident or security_flag)")
    else:
        kind = declared
    parser: Callable[[Mapping[str, Any]], Event] = _PARSERS[kind]
    return parser(obj)


def event_to_dict(event: Event) -> dict[str, Any]:
    """The SPEC §1 JSON object of an event, ``type`` included."""
    out: dict[str, Any] = {
        "type": event.type,
        "event_id": event.event_id,
        "occurred_at": format_rfc3339_ms(event.occurred_at_ms),
        "source": event.source,
        "service": event.service,
    }
    if isinstance(event, Deploy):
        out.update(
            environment=event.environment,
            release=event.release,
            previous_release=event.previous_release,
            action=event.action,
            status=event.status,
            team=event.team,
            actor=event.actor,
            reason=event.reason,
            incident_id=event.incident_id,
        )
    elif isinstance(event, Incident):
        out.update(
            environment=event.environment,
            incident_id=event.incident_id,
            status=event.status,
            severity=event.severity,
            title=event.title,
            suspected_release=event.suspected_release,
        )
    else:
        out.update(
            flag_id=event.flag_id,
            release=event.release,
            status=event.status,
            severity=event.severity,
            vulnerabilities=list(event.vulnerabilities),
            title=event.title,
            fixed_in=event.fixed_in,
        )
    if event.release_aliases:
        out["release_aliases"] = list(event.release_aliases)
    return out
