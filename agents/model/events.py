"""The three input event kinds of SPEC §1, their validation and their order key.

``parse_event`` turns a decoded JSON object (or an Avro record, which has the
same field names) into a frozen value, or raises :class:`ValidationError`
naming the field and the reason. ``event_to_dict`` is its inverse.

Decisions where the SPEC is silent (see docs/decisions.md, "Input"):

* nullable fields may be omitted (read as null), and an empty string in one reads
  as null too (``fixed_in: ""`` is no fix); ``vulnerabilities`` may be omitted
  (read as empty); ``status`` of a deploy defaults to ``succeeded``;
* identifiers and names are limited to 200 characters (``environment`` to
  100, as the SPEC says), free text (``title``, ``reason``, ``actor``) to
  4096 characters, ``vulnerabilities`` to 1000 entries;
* names (every identity field, list entries included) hold no control, format or
  separator characters; free text may hold tab, LF and CR but no other control;
* extra fields are ignored by the rules and not carried through.

Every reason word and detail text comes from :mod:`agents.model.messages`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Literal

from agents.errors import ValidationError
from agents.model import messages
from agents.model.timefmt import TimestampError, format_rfc3339_ms, parse_rfc3339_ms
from agents.model.values import Value

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


class Deploy(Value):
    """A change to what runs in (service, environment)."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "event_id",
        "occurred_at_ms",
        "source",
        "service",
        "environment",
        "release",
        "previous_release",
        "action",
        "status",
        "team",
        "actor",
        "reason",
        "incident_id",
        "release_aliases",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        event_id: str,
        occurred_at_ms: int,
        source: str,
        service: str,
        environment: str,
        release: str,
        previous_release: str | None,
        action: str,
        status: str = "succeeded",
        team: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        incident_id: str | None = None,
        release_aliases: tuple[str, ...] = (),
    ) -> None:
        self.event_id: Final = event_id
        self.occurred_at_ms: Final = occurred_at_ms
        self.source: Final = source
        self.service: Final = service
        self.environment: Final = environment
        self.release: Final = release
        self.previous_release: Final = previous_release
        self.action: Final = action
        self.status: Final = status
        self.team: Final = team
        self.actor: Final = actor
        self.reason: Final = reason
        self.incident_id: Final = incident_id
        self.release_aliases: Final = release_aliases
        """SPEC §8: other names of ``release``."""

    def values(self) -> tuple[object, ...]:
        return (
            self.event_id,
            self.occurred_at_ms,
            self.source,
            self.service,
            self.environment,
            self.release,
            self.previous_release,
            self.action,
            self.status,
            self.team,
            self.actor,
            self.reason,
            self.incident_id,
            self.release_aliases,
        )

    @property
    def type(self) -> Literal["deploy"]:
        return "deploy"

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class Incident(Value):
    """One event of an incident (opened, acknowledged, resolved)."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "event_id",
        "occurred_at_ms",
        "source",
        "service",
        "environment",
        "incident_id",
        "status",
        "severity",
        "title",
        "suspected_release",
        "release_aliases",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        event_id: str,
        occurred_at_ms: int,
        source: str,
        service: str,
        environment: str,
        incident_id: str,
        status: str,
        severity: str,
        title: str,
        suspected_release: str | None = None,
        release_aliases: tuple[str, ...] = (),
    ) -> None:
        self.event_id: Final = event_id
        self.occurred_at_ms: Final = occurred_at_ms
        self.source: Final = source
        self.service: Final = service
        self.environment: Final = environment
        self.incident_id: Final = incident_id
        self.status: Final = status
        self.severity: Final = severity
        self.title: Final = title
        self.suspected_release: Final = suspected_release
        self.release_aliases: Final = release_aliases
        """SPEC §8: other names of ``suspected_release``."""

    def values(self) -> tuple[object, ...]:
        return (
            self.event_id,
            self.occurred_at_ms,
            self.source,
            self.service,
            self.environment,
            self.incident_id,
            self.status,
            self.severity,
            self.title,
            self.suspected_release,
            self.release_aliases,
        )

    @property
    def type(self) -> Literal["incident"]:
        return "incident"


class SecurityFlag(Value):
    """A security finding against one release of a service (all environments)."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "event_id",
        "occurred_at_ms",
        "source",
        "service",
        "flag_id",
        "release",
        "status",
        "severity",
        "title",
        "vulnerabilities",
        "fixed_in",
        "release_aliases",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        event_id: str,
        occurred_at_ms: int,
        source: str,
        service: str,
        flag_id: str,
        release: str,
        status: str,
        severity: str,
        title: str,
        vulnerabilities: tuple[str, ...] = (),
        fixed_in: str | None = None,
        release_aliases: tuple[str, ...] = (),
    ) -> None:
        self.event_id: Final = event_id
        self.occurred_at_ms: Final = occurred_at_ms
        self.source: Final = source
        self.service: Final = service
        self.flag_id: Final = flag_id
        self.release: Final = release
        self.status: Final = status
        self.severity: Final = severity
        self.title: Final = title
        self.vulnerabilities: Final = vulnerabilities
        self.fixed_in: Final = fixed_in
        self.release_aliases: Final = release_aliases
        """SPEC §8: other names of ``release``."""

    def values(self) -> tuple[object, ...]:
        return (
            self.event_id,
            self.occurred_at_ms,
            self.source,
            self.service,
            self.flag_id,
            self.release,
            self.status,
            self.severity,
            self.title,
            self.vulnerabilities,
            self.fixed_in,
            self.release_aliases,
        )

    @property
    def type(self) -> Literal["security_flag"]:
        return "security_flag"


Event = Deploy | Incident | SecurityFlag


def order_key(event: Event) -> tuple[int, int, str]:
    """The SPEC §2 order key ``(occurred_at, type rank, event_id)``."""
    return (event.occurred_at_ms, TYPE_RANK[event.type], event.event_id)


# --- validation -------------------------------------------------------------

_MISSING: Final = object()

# Characters no name may hold (SPEC §1: "no control characters"): Unicode categories
# Cc (controls), Cf (invisible format characters: bidi overrides, zero-width space,
# BOM), Cs (lone surrogates, which cannot be written as UTF-8) and Zl / Zp (line and
# paragraph separators), as of Unicode 15.1, written out so that the set does not move
# with the Python version's Unicode database (tests/test_model.py checks it against
# unicodedata). Names are identities: a name with an invisible character looks like
# another name, and U+001F is the separator inside alert ids.
NAME_FORBIDDEN_RANGES: Final = (
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
# Free text (title, reason, actor) may hold tab, line feed and carriage return (a
# multi-line reason is normal); other controls (NUL, ESC, DEL, C1) and lone
# surrogates are refused. Format characters and separators are fine in prose.
TEXT_FORBIDDEN_RANGES: Final = (
    (0x0000, 0x0008),
    (0x000B, 0x000C),
    (0x000E, 0x001F),
    (0x007F, 0x009F),
    (0xD800, 0xDFFF),
)


def _char_class(ranges: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    parts = (
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in ranges
    )
    return re.compile("[" + "".join(parts) + "]")


_NAME_FORBIDDEN: Final = _char_class(NAME_FORBIDDEN_RANGES)
_TEXT_FORBIDDEN: Final = _char_class(TEXT_FORBIDDEN_RANGES)


def _fail(field: str, reason: str, detail: str) -> ValidationError:
    return ValidationError(field, reason, detail)


def _check_name(value: str, field: str) -> None:
    # str.isprintable() is False for every forbidden character (and for a few allowed
    # ones: non-ASCII spaces, private use, unassigned), so the common case costs one
    # C call and only the rest meets the regex.
    if not value.isprintable():
        bad = _NAME_FORBIDDEN.search(value)
        if bad is not None:
            raise _fail(
                field,
                messages.CONTROL_CHARACTER,
                messages.control_character_in_name(bad.start(), bad.group()),
            )


def _check_text(value: str, field: str) -> None:
    if not value.isprintable():
        bad = _TEXT_FORBIDDEN.search(value)
        if bad is not None:
            raise _fail(
                field,
                messages.CONTROL_CHARACTER,
                messages.control_character_in_text(bad.start(), bad.group()),
            )


def _length(value: str, field: str, min_len: int, max_len: int) -> None:
    n = len(value)
    if n < min_len:
        raise _fail(field, messages.TOO_SHORT, messages.too_short(min_len))
    if n > max_len:
        raise _fail(field, messages.TOO_LONG, messages.too_long(n, max_len))


# Each check below starts with one condition that is true for nearly every real value
# (a short printable string) and returns it; the slow path names what is wrong.


def _name(obj: Mapping[str, Any], field: str, max_len: int = MAX_ID_CHARS) -> str:
    """A required name (an identity part): 1..max_len characters, none forbidden."""
    value = obj.get(field, _MISSING)
    if type(value) is str and 0 < len(value) <= max_len and value.isprintable():
        return value
    if value is _MISSING or value is None:
        raise _fail(field, messages.MISSING, messages.missing())
    if type(value) is not str:
        raise _fail(field, messages.WRONG_TYPE, messages.must_be_string(value))
    _length(value, field, 1, max_len)
    _check_name(value, field)
    return value


def _opt_name(obj: Mapping[str, Any], field: str) -> str | None:
    """An optional name; ``""`` reads as null (what a tool sending an empty string means)."""
    value = obj.get(field)
    if type(value) is str and 0 < len(value) <= MAX_ID_CHARS and value.isprintable():
        return value
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise _fail(field, messages.WRONG_TYPE, messages.must_be_string_or_null(value))
    _length(value, field, 1, MAX_ID_CHARS)
    _check_name(value, field)
    return value


def _text(obj: Mapping[str, Any], field: str) -> str:
    """Required free text; may be empty."""
    value = obj.get(field, _MISSING)
    if type(value) is str and len(value) <= MAX_TEXT_CHARS and value.isprintable():
        return value
    if value is _MISSING or value is None:
        raise _fail(field, messages.MISSING, messages.missing())
    if type(value) is not str:
        raise _fail(field, messages.WRONG_TYPE, messages.must_be_string(value))
    _length(value, field, 0, MAX_TEXT_CHARS)
    _check_text(value, field)
    return value


def _opt_text(obj: Mapping[str, Any], field: str) -> str | None:
    """Optional free text; ``""`` reads as null."""
    value = obj.get(field)
    if type(value) is str and 0 < len(value) <= MAX_TEXT_CHARS and value.isprintable():
        return value
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise _fail(field, messages.WRONG_TYPE, messages.must_be_string_or_null(value))
    _length(value, field, 0, MAX_TEXT_CHARS)
    _check_text(value, field)
    return value


def _enum(
    obj: Mapping[str, Any], field: str, allowed: frozenset[str], default: str | None = None
) -> str:
    value = obj.get(field, _MISSING)
    if value is _MISSING or value is None:
        if default is not None:
            return default
        raise _fail(field, messages.MISSING, messages.missing_one_of(allowed))
    if type(value) is not str:
        raise _fail(field, messages.WRONG_TYPE, messages.must_be_string(value))
    if value not in allowed:
        raise _fail(field, messages.UNKNOWN_ENUM, messages.unknown_enum(value, allowed))
    return value


def _opt_enum(obj: Mapping[str, Any], field: str, allowed: frozenset[str]) -> str | None:
    """An optional enum; ``""`` reads as null, like the optional names."""
    value = obj.get(field)
    if value is None or value == "":
        return None
    return _enum(obj, field, allowed)


def _timestamp(obj: Mapping[str, Any], field: str) -> int:
    value = obj.get(field, _MISSING)
    if value is _MISSING or value is None:
        raise _fail(field, messages.MISSING, messages.missing())
    if type(value) is not str:
        raise _fail(field, messages.WRONG_TYPE, messages.must_be_timestamp_string(value))
    try:
        return parse_rfc3339_ms(value)
    except TimestampError as exc:
        raise _fail(field, messages.BAD_TIMESTAMP, str(exc)) from None


def _name_list(
    obj: Mapping[str, Any], field: str, max_entries: int = MAX_VULNERABILITIES
) -> tuple[str, ...]:
    """A list of names (vulnerability ids, release aliases); null or absent is empty."""
    value = obj.get(field)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _fail(field, messages.WRONG_TYPE, messages.must_be_string_list(value))
    if len(value) > max_entries:
        raise _fail(field, messages.TOO_LONG, messages.too_many_entries(len(value), max_entries))
    for i, item in enumerate(value):
        if type(item) is str and 0 < len(item) <= MAX_ID_CHARS and item.isprintable():
            continue
        entry = f"{field}[{i}]"
        if type(item) is not str:
            raise _fail(entry, messages.WRONG_TYPE, messages.entry_must_be_string())
        _length(item, entry, 1, MAX_ID_CHARS)
        _check_name(item, entry)
    return tuple(value)


def _aliases(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """``release_aliases``: distinct names, in the order given."""
    return tuple(dict.fromkeys(_name_list(obj, "release_aliases", MAX_RELEASE_ALIASES)))


def _deploy(obj: Mapping[str, Any]) -> Deploy:
    return Deploy(
        event_id=_name(obj, "event_id"),
        occurred_at_ms=_timestamp(obj, "occurred_at"),
        source=_name(obj, "source"),
        service=_name(obj, "service"),
        environment=_name(obj, "environment", MAX_ENVIRONMENT_CHARS),
        release=_name(obj, "release"),
        previous_release=_opt_name(obj, "previous_release"),
        action=_enum(obj, "action", DEPLOY_ACTIONS),
        status=_enum(obj, "status", DEPLOY_STATUSES, default="succeeded"),
        team=_opt_enum(obj, "team", TEAMS),
        actor=_opt_text(obj, "actor"),
        reason=_opt_text(obj, "reason"),
        incident_id=_opt_name(obj, "incident_id"),
        release_aliases=_aliases(obj),
    )


def _incident(obj: Mapping[str, Any]) -> Incident:
    return Incident(
        event_id=_name(obj, "event_id"),
        occurred_at_ms=_timestamp(obj, "occurred_at"),
        source=_name(obj, "source"),
        service=_name(obj, "service"),
        environment=_name(obj, "environment", MAX_ENVIRONMENT_CHARS),
        incident_id=_name(obj, "incident_id"),
        status=_enum(obj, "status", INCIDENT_STATUSES),
        severity=_enum(obj, "severity", INCIDENT_SEVERITIES),
        title=_text(obj, "title"),
        suspected_release=_opt_name(obj, "suspected_release"),
        release_aliases=_aliases(obj),
    )


def _security_flag(obj: Mapping[str, Any]) -> SecurityFlag:
    return SecurityFlag(
        event_id=_name(obj, "event_id"),
        occurred_at_ms=_timestamp(obj, "occurred_at"),
        source=_name(obj, "source"),
        service=_name(obj, "service"),
        flag_id=_name(obj, "flag_id"),
        release=_name(obj, "release"),
        status=_enum(obj, "status", FLAG_STATUSES),
        severity=_enum(obj, "severity", FLAG_SEVERITIES),
        title=_text(obj, "title"),
        vulnerabilities=_name_list(obj, "vulnerabilities"),
        fixed_in=_opt_name(obj, "fixed_in"),
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
        raise _fail("$", messages.WRONG_TYPE, messages.must_be_object(obj))
    declared = obj.get("type")
    if declared is not None and type(declared) is not str:
        raise _fail("type", messages.WRONG_TYPE, messages.must_be_string(declared))
    if declared is not None and declared not in _PARSERS:
        raise _fail("type", messages.UNKNOWN_ENUM, messages.unknown_enum(declared, _PARSERS))
    if expected_type is not None:
        if declared is not None and declared != expected_type:
            raise _fail(
                "type", messages.UNKNOWN_ENUM, messages.type_on_wrong_topic(declared, expected_type)
            )
        kind = expected_type
    elif declared is None:
        raise _fail("type", messages.MISSING, messages.type_required())
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
