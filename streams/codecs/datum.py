"""Between relsec's JSON-shaped dicts and the Avro datums of ``schemas/*.avsc``.

The dicts are the SPEC §1 event objects (``type`` included), ``Alert.to_dict()``
and the dead-letter dict of the interfaces. Instants are RFC 3339 strings in the
dicts and ``long`` UTC epoch milliseconds in Avro; the event's ``type`` is not a
field of the Avro record (the record's name tells it) and comes back on decode.

Encoding refuses what the schema cannot carry with a :class:`ValidationError`
naming the field; decoding never validates (``parse_event`` does that), so an
unknown enum value written by any producer reaches validation intact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from agents.errors import ValidationError
from agents.model.alerts import Alert
from agents.model.timefmt import TimestampError, format_rfc3339_ms, parse_rfc3339_ms
from schemas import SCHEMA_NAMES, load_schema


def _fields(name: str) -> tuple[tuple[str, ...], tuple[tuple[str, Any], ...]]:
    """Top-level field names of record ``name`` in schema order, and its non-null defaults."""
    fields = load_schema(name)["fields"]
    names = tuple(f["name"] for f in fields)
    defaults = tuple(
        (f["name"], f["default"]) for f in fields if f.get("default") is not None
    )
    return names, defaults


_FIELDS: Final = {name: _fields(name) for name in SCHEMA_NAMES}


# --- instants ---------------------------------------------------------------------
#
# The model's own conversions, compiled with this module: ``format_rfc3339_ms`` 0.6 µs and
# ``parse_rfc3339_ms`` 0.5 µs. The hand-written ones kept here while the codec ran
# interpreted became the slower ones once it was compiled (4.4 and 1.5 µs: mypyc builds a
# formatted f-string with ``str.format``), docs/performance.md §22.


def instant_ms(value: Any, field: str) -> int:
    """An instant given as RFC 3339 text (or already as epoch ms) as UTC epoch ms."""
    if type(value) is str:
        try:
            return parse_rfc3339_ms(value)
        except TimestampError as exc:
            raise ValidationError(field, "bad_timestamp", str(exc)) from None
    if type(value) is int:
        return value
    if value is None:
        raise ValidationError(field, "missing", "is required")
    raise ValidationError(
        field, "wrong_type", f"must be an RFC 3339 string, got {type(value).__name__}"
    )


def _record(name: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level fields of record ``name`` from ``obj``; absent/None -> schema default."""
    names, defaults = _FIELDS[name]
    get = obj.get
    out = {field: get(field) for field in names}
    for field, default in defaults:
        if out[field] is None:
            out[field] = list(default) if isinstance(default, list) else default
    return out


def event_to_datum(kind: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The Avro datum of an event dict of type ``kind``."""
    datum = _record(kind, event)
    datum["occurred_at"] = instant_ms(event.get("occurred_at"), "occurred_at")
    for field in ("vulnerabilities", "release_aliases"):
        value = datum.get(field)
        if isinstance(value, tuple):
            datum[field] = list(value)
    return datum


_last_event_instant: list[tuple[Any, str]] = [(None, "")]
"""The last event instant formatted, and its text, as one tuple (replaced whole, so a
reader in another thread never pairs one instant with another's text): a scanner's
report is thousands of findings at one instant, read one after the other."""


def datum_to_event(kind: str, datum: dict[str, Any]) -> dict[str, Any]:
    """The SPEC §1 event dict (``type`` first) of a decoded Avro datum; ``release_aliases``
    only when there are some, as ``event_to_dict`` writes it."""
    out: dict[str, Any] = {"type": kind}
    out.update(datum)
    ms = datum["occurred_at"]
    last_ms, last_text = _last_event_instant[0]
    if ms == last_ms and type(ms) is int:
        out["occurred_at"] = last_text
    else:
        out["occurred_at"] = text = format_rfc3339_ms(ms)
        _last_event_instant[0] = (ms, text)
    if not out.get("release_aliases", True):
        del out["release_aliases"]
    return out


def alert_to_datum(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The Avro datum of an ``Alert.to_dict()`` dict."""
    datum = _record("alert", alert)
    datum["occurred_at"] = instant_ms(alert.get("occurred_at"), "occurred_at")
    datum["detected_at"] = instant_ms(alert.get("detected_at"), "detected_at")
    evidence = alert.get("evidence")
    if not isinstance(evidence, list | tuple):
        raise ValidationError("evidence", "wrong_type", "must be a list of evidence objects")
    items = []
    for i, e in enumerate(evidence):
        if not isinstance(e, Mapping):
            raise ValidationError(f"evidence[{i}]", "wrong_type", "must be an object")
        items.append(
            {
                "event_id": e.get("event_id"),
                "type": e.get("type"),
                "occurred_at": instant_ms(e.get("occurred_at"), f"evidence[{i}].occurred_at"),
            }
        )
    datum["evidence"] = items
    for field in ("notify", "release_aliases"):
        value = datum.get(field)
        if isinstance(value, tuple):
            datum[field] = list(value)
    rec = alert.get("recommendation")
    if rec is not None:
        if not isinstance(rec, Mapping):
            raise ValidationError("recommendation", "wrong_type", "must be an object or null")
        datum["recommendation"] = {"release": rec.get("release"), "text": rec.get("text")}
    return datum


def alert_value_to_datum(alert: Alert) -> dict[str, Any]:
    """The Avro datum of an :class:`Alert` value, built from its fields (the worker's
    path: no RFC 3339 text in between). Equal to ``alert_to_datum(alert.to_dict())``."""
    rec = alert.recommendation
    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "status": alert.status,
        "severity": alert.severity,
        "service": alert.service,
        "environment": alert.environment,
        "release": alert.release,
        "trigger": alert.trigger,
        "occurred_at": alert.occurred_at_ms,
        "detected_at": alert.detected_at_ms,
        "summary": alert.summary,
        "notify": list(alert.notify),
        "evidence": [
            {"event_id": e.event_id, "type": e.type, "occurred_at": e.occurred_at_ms}
            for e in alert.evidence
        ],
        "recommendation": None if rec is None else {"release": rec.release, "text": rec.text},
        "release_aliases": list(alert.release_aliases),
        # as to_dict: a count that says no more than the evidence list is left at its default
        "evidence_count": alert.evidence_count
        if alert.evidence_count > len(alert.evidence)
        else 0,
    }


def datum_to_alert(datum: dict[str, Any]) -> dict[str, Any]:
    """The ``Alert.to_dict()`` shape of a decoded Avro datum (same key order):
    ``release_aliases`` only when there are some, ``evidence_count`` only when it says
    more than ``evidence`` does."""
    datum["occurred_at"] = format_rfc3339_ms(datum["occurred_at"])
    datum["detected_at"] = format_rfc3339_ms(datum["detected_at"])
    for e in datum["evidence"]:
        e["occurred_at"] = format_rfc3339_ms(e["occurred_at"])
    if not datum.get("release_aliases", True):
        del datum["release_aliases"]
    if datum.get("evidence_count", 1) <= len(datum["evidence"]):
        datum.pop("evidence_count", None)
    return datum


def _opt_bytes(value: Any, field: str) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise ValidationError(field, "wrong_type", f"must be bytes or null, got {type(value).__name__}")


def dead_letter_to_datum(dl: Mapping[str, Any]) -> dict[str, Any]:
    """The Avro datum of a dead-letter dict."""
    datum = _record("dead_letter", dl)
    datum["detected_at"] = instant_ms(dl.get("detected_at"), "detected_at")
    datum["key"] = _opt_bytes(dl.get("key"), "key")
    datum["value"] = _opt_bytes(dl.get("value"), "value")
    return datum


def datum_to_dead_letter(datum: dict[str, Any]) -> dict[str, Any]:
    """The dead-letter dict of a decoded Avro datum."""
    datum["detected_at"] = format_rfc3339_ms(datum["detected_at"])
    return datum


#: Datum -> dict conversion per schema name.
FROM_DATUM: Final[dict[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "deploy": lambda d: datum_to_event("deploy", d),
    "incident": lambda d: datum_to_event("incident", d),
    "security_flag": lambda d: datum_to_event("security_flag", d),
    "alert": datum_to_alert,
    "dead_letter": datum_to_dead_letter,
}
