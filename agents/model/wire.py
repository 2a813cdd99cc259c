"""The fast path of input validation: SPEC §1 events straight from JSON bytes (msgspec).

:func:`event_from_json` decodes and validates a JSON record in one pass of compiled code
(msgspec Structs below mirror :func:`agents.model.events.parse_event`'s rules) and
returns the same :class:`~agents.model.events.Event` ``parse_event`` would. It never
refuses anything itself: where the fast path cannot accept a record (bad JSON, a wrong
type, a field it does not know, a name with a character ``str.isprintable`` refuses, an
odd timestamp) it returns ``None``, and the caller runs its usual path (``orjson.loads``
and ``parse_event``), which accepts or names what is wrong, word for word as before.
So the fast path is only ever *stricter* than ``parse_event`` and the error messages
cannot drift; ``tests/test_wire.py`` checks that both agree on acceptance and on the
value, for generated valid and hostile records.

Why each rule is at least as strict as ``parse_event``'s:

* every field is typed and unknown fields are refused (``forbid_unknown_fields``):
  orjson and msgspec differ on what they accept in a value nobody reads (an invalid
  UTF-8 byte, ``1e400``), so a record with an extra field takes the usual path;
* lengths are msgspec ``Meta`` bounds in code points, as ``len`` counts;
* names and texts are accepted only when ``str.isprintable()`` (the forbidden
  characters are all unprintable; a printable-but-odd name goes the usual way);
* timestamps are parsed by relsec's own strict RFC 3339 parser
  (:func:`~agents.model.timefmt.parse_rfc3339_ms`), not msgspec's ``datetime``, whose
  rules differ (it takes other offsets, years and leap seconds); see
  docs/decisions.md.

This module is not compiled by mypyc (msgspec Structs are a C type of their own);
msgspec is compiled already.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from agents.model.events import (
    MAX_ENVIRONMENT_CHARS,
    MAX_ID_CHARS,
    MAX_RELEASE_ALIASES,
    MAX_TEXT_CHARS,
    MAX_VULNERABILITIES,
    Deploy,
    Event,
    Incident,
    SecurityFlag,
)
from agents.model.timefmt import TimestampError, parse_rfc3339_ms

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
Environment = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ENVIRONMENT_CHARS)]
OptionalName = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)] | None
"""``""`` reads as null, as in ``parse_event``."""
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
OptionalText = Text | None
Vulnerabilities = Annotated[list[Name], msgspec.Meta(max_length=MAX_VULNERABILITIES)] | None
Aliases = Annotated[list[Name], msgspec.Meta(max_length=MAX_RELEASE_ALIASES)] | None

# The Structs hold only strings and lists of strings (no cycles), so the garbage
# collector need not track them (``gc=False``: faster to create and to free).


class DeployRecord(
    msgspec.Struct, tag_field="type", tag="deploy", forbid_unknown_fields=True, gc=False
):
    event_id: Name
    occurred_at: str
    source: Name
    service: Name
    environment: Environment
    release: Name
    action: Literal["deploy", "rollback"]
    previous_release: OptionalName = None
    status: Literal["succeeded", "failed"] | None = None
    team: Literal["sre", "security", "dev", ""] | None = None
    actor: OptionalText = None
    reason: OptionalText = None
    incident_id: OptionalName = None
    release_aliases: Aliases = None


class IncidentRecord(
    msgspec.Struct, tag_field="type", tag="incident", forbid_unknown_fields=True, gc=False
):
    event_id: Name
    occurred_at: str
    source: Name
    service: Name
    environment: Environment
    incident_id: Name
    status: Literal["opened", "acknowledged", "resolved"]
    severity: Literal["sev1", "sev2", "sev3", "sev4", "sev5"]
    title: Text
    suspected_release: OptionalName = None
    release_aliases: Aliases = None


class SecurityFlagRecord(
    msgspec.Struct, tag_field="type", tag="security_flag", forbid_unknown_fields=True, gc=False
):
    event_id: Name
    occurred_at: str
    source: Name
    service: Name
    flag_id: Name
    release: Name
    status: Literal["raised", "cleared", "risk_accepted"]
    severity: Literal["critical", "high", "medium", "low"]
    title: Text
    vulnerabilities: Vulnerabilities = None
    fixed_in: OptionalName = None
    release_aliases: Aliases = None


Record = DeployRecord | IncidentRecord | SecurityFlagRecord

# One decoder per expected type (a record of one topic: ``type`` may be absent, and must
# agree when present), and the tagged union for a file, where ``type`` is required.
_DECODERS: Final[dict[str | None, msgspec.json.Decoder[Record]]] = {
    None: msgspec.json.Decoder(Record),
    "deploy": msgspec.json.Decoder(DeployRecord),
    "incident": msgspec.json.Decoder(IncidentRecord),
    "security_flag": msgspec.json.Decoder(SecurityFlagRecord),
}


def _names_printable(names: list[str] | None) -> bool:
    return names is None or all(name.isprintable() for name in names)


def _aliases(names: list[str] | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names)) if names else ()


def _deploy(r: DeployRecord, at_ms: int) -> Deploy | None:
    if not (
        r.event_id.isprintable()
        and r.source.isprintable()
        and r.service.isprintable()
        and r.environment.isprintable()
        and r.release.isprintable()
        and (r.previous_release is None or r.previous_release.isprintable())
        and (r.actor is None or r.actor.isprintable())
        and (r.reason is None or r.reason.isprintable())
        and (r.incident_id is None or r.incident_id.isprintable())
        and _names_printable(r.release_aliases)
    ):
        return None
    return Deploy(
        event_id=r.event_id,
        occurred_at_ms=at_ms,
        source=r.source,
        service=r.service,
        environment=r.environment,
        release=r.release,
        previous_release=r.previous_release or None,
        action=r.action,
        status=r.status or "succeeded",
        team=r.team or None,
        actor=r.actor or None,
        reason=r.reason or None,
        incident_id=r.incident_id or None,
        release_aliases=_aliases(r.release_aliases),
    )


def _incident(r: IncidentRecord, at_ms: int) -> Incident | None:
    if not (
        r.event_id.isprintable()
        and r.source.isprintable()
        and r.service.isprintable()
        and r.environment.isprintable()
        and r.incident_id.isprintable()
        and r.title.isprintable()
        and (r.suspected_release is None or r.suspected_release.isprintable())
        and _names_printable(r.release_aliases)
    ):
        return None
    return Incident(
        event_id=r.event_id,
        occurred_at_ms=at_ms,
        source=r.source,
        service=r.service,
        environment=r.environment,
        incident_id=r.incident_id,
        status=r.status,
        severity=r.severity,
        title=r.title,
        suspected_release=r.suspected_release or None,
        release_aliases=_aliases(r.release_aliases),
    )


def _security_flag(r: SecurityFlagRecord, at_ms: int) -> SecurityFlag | None:
    if not (
        r.event_id.isprintable()
        and r.source.isprintable()
        and r.service.isprintable()
        and r.flag_id.isprintable()
        and r.release.isprintable()
        and r.title.isprintable()
        and (r.fixed_in is None or r.fixed_in.isprintable())
        and _names_printable(r.vulnerabilities)
        and _names_printable(r.release_aliases)
    ):
        return None
    return SecurityFlag(
        event_id=r.event_id,
        occurred_at_ms=at_ms,
        source=r.source,
        service=r.service,
        flag_id=r.flag_id,
        release=r.release,
        status=r.status,
        severity=r.severity,
        title=r.title,
        vulnerabilities=tuple(r.vulnerabilities) if r.vulnerabilities else (),
        fixed_in=r.fixed_in or None,
        release_aliases=_aliases(r.release_aliases),
    )


def event_from_json(raw: bytes, expected_type: str | None = None) -> Event | None:
    """The event of a JSON record, or ``None`` when the fast path cannot accept it.

    ``expected_type`` is the type the topic implies, as for ``parse_event``; an unknown
    one takes the usual path. ``None`` says nothing about the record's validity: run
    ``parse_event(orjson.loads(raw), expected_type)`` for the answer (or the error).
    """
    decoder = _DECODERS.get(expected_type)
    if decoder is None:
        return None
    try:
        record = decoder.decode(raw)
        at_ms = parse_rfc3339_ms(record.occurred_at)
    except (msgspec.DecodeError, TimestampError, RecursionError):  # msgspec: deep nesting
        return None
    if type(record) is DeployRecord:
        return _deploy(record, at_ms)
    if type(record) is IncidentRecord:
        return _incident(record, at_ms)
    assert type(record) is SecurityFlagRecord
    return _security_flag(record, at_ms)
