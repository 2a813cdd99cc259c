"""The fast path of input validation: SPEC §1 events straight from JSON bytes (msgspec).

:func:`event_from_json` decodes and validates a JSON record in one pass of compiled code
(the msgspec Structs of :mod:`agents.model.records` mirror
:func:`agents.model.events.parse_event`'s rules) and returns the same
:class:`~agents.model.events.Event` ``parse_event`` would. It never refuses anything
itself: where the fast path cannot accept a record (bad JSON, a wrong type, a field it
does not know, a name with a character ``str.isprintable`` refuses, an odd timestamp) it
returns ``None``, and the caller runs its usual path (``orjson.loads`` and
``parse_event``), which accepts or names what is wrong, word for word as before. So the
fast path is only ever *stricter* than ``parse_event`` and the error messages cannot
drift; ``tests/test_wire.py`` checks that both agree on acceptance and on the value, for
generated valid and hostile records.

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

The Structs are in :mod:`agents.model.records`, which mypyc cannot compile (msgspec Structs
are a C type of their own; msgspec is compiled already); this module, the checks and the
conversion to events, is compiled with the rest of the model.
"""

from __future__ import annotations

import msgspec

from agents.model.events import Deploy, Event, Incident, SecurityFlag
from agents.model.records import DECODERS, DeployRecord, IncidentRecord, SecurityFlagRecord
from agents.model.timefmt import TimestampError, parse_rfc3339_ms


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
    decoder = DECODERS.get(expected_type)
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
