"""CloudEvents 1.0 over HTTP: the three content modes a CDEvents sender may use.

The HTTP protocol binding (cloudevents/spec ``bindings/http-protocol-binding.md`` §3)
tells the mode by ``Content-Type``:

* ``application/cloudevents-batch…`` — **batched**: the body is a JSON array of
  events in the JSON format (``formats/json-format.md`` §4), all of one
  ``specversion``; the array may be empty.
* ``application/cloudevents…`` — **structured**: the body is one event in the JSON
  format (``application/cloudevents+json``); another format (``+avro``,
  ``+protobuf``) is refused with :class:`UnsupportedContent` (HTTP 415).
* anything else — **binary**: the body is the event's data and the ``ce-*``
  headers carry the attributes; relsec reads the data (the CDEvent, which holds
  its own context) and nothing else, as before.

In the JSON format an event's data is ``data`` (a JSON value) or ``data_base64``
(base64 of the bytes, RFC 4648), never both (§3.1). The data's type is
``datacontenttype``, ``application/json`` when absent; relsec reads CDEvents,
which are JSON, so a type that is not ``*/json`` or ``*/*+json`` is refused (415).

:func:`split` turns a body into :class:`Part` s, one per event, each with the
JSON path where its data sits so that an adapter's error can be told against
the body the sender sent (``$[2].data.subject.id``; inside ``data_base64``, the
path of the decoded document is told in the message).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from streams.ingest import decode_payload
from streams.ingest.errors import AdapterError, UnsupportedContent

SPEC_VERSION: Final = "1.0"
STRUCTURED_PREFIX: Final = "application/cloudevents"
BATCH_PREFIX: Final = "application/cloudevents-batch"
JSON_FORMAT_SUFFIX: Final = "+json"
REQUIRED_ATTRIBUTES: Final = ("id", "source", "type")

Mode = Literal["binary", "structured", "batch"]


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    """``'Application/JSON; charset=UTF-8'`` -> ``('application/json', {'charset': 'utf-8'})``."""
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        name, sep, val = item.partition("=")
        if sep:
            params[name.strip().lower()] = val.strip().strip('"').lower()
    return kind.strip().lower(), params


def _check_charset(source: str, path: str, params: Mapping[str, str], what: str) -> None:
    charset = params.get("charset")
    if charset is not None and charset not in ("utf-8", "utf8"):
        raise UnsupportedContent(source, path, f"{what} has charset {charset!r}; JSON is UTF-8")


def content_mode(source: str, content_type: str | None) -> Mode:
    """The content mode of a request, from its ``Content-Type`` (HTTP binding §3)."""
    if content_type is None:
        return "binary"
    kind, params = _media_type(content_type)
    if kind.startswith(BATCH_PREFIX):
        mode: Mode = "batch"
    elif kind.startswith(STRUCTURED_PREFIX):
        mode = "structured"
    else:
        return "binary"
    if not kind.endswith(JSON_FORMAT_SUFFIX):
        raise UnsupportedContent(
            source,
            "$",
            f"Content-Type {kind!r}: relsec reads the CloudEvents JSON format "
            f"({STRUCTURED_PREFIX}+json, {BATCH_PREFIX}+json) only",
        )
    _check_charset(source, "$", params, "Content-Type")
    return mode


def is_json_type(datacontenttype: str) -> bool:
    """JSON format §3.1.1: a media type ``*/json`` or ``*/*+json``, parameters stripped."""
    kind, _ = _media_type(datacontenttype)
    _, _, subtype = kind.partition("/")
    return subtype == "json" or subtype.endswith("+json")


@dataclass(frozen=True, slots=True)
class Part:
    """The data of one event of a request, and where it sits in the body.

    ``where`` is the JSON path of the data (``$`` in binary mode, ``$.data``,
    ``$[3].data_base64``); ``index`` the event's position in a batch.
    """

    payload: Any
    where: str = "$"
    index: int | None = None
    decoded: bool = False

    def locate(self, exc: AdapterError) -> AdapterError:
        """``exc`` (told against this part's data) told against the request body."""
        if self.decoded:
            return AdapterError(
                exc.source, self.where, f"at {exc.path} of the decoded data: {exc.detail}"
            )
        rest = exc.path[1:] if exc.path.startswith("$") else f".{exc.path}"
        return AdapterError(exc.source, self.where + rest, exc.detail)

    def label(self, reason: str) -> str:
        """A reason of this part (a skipped event) named by the part's index in a batch."""
        return reason if self.index is None else f"[{self.index}] {reason}"


def split(source: str, content_type: str | None, body: bytes) -> list[Part]:
    """The parts of a request body; AdapterError (UnsupportedContent) naming the JSON path."""
    mode = content_mode(source, content_type)
    document = decode_payload(source, body)
    if mode == "binary":
        return [Part(document)]
    if mode == "structured":
        if not isinstance(document, Mapping):
            raise AdapterError(source, "$", "a structured CloudEvent must be a JSON object")
        return [_event_data(source, document, "$", None)]
    if not isinstance(document, list):
        raise AdapterError(source, "$", "a CloudEvents batch must be a JSON array")
    parts: list[Part] = []
    for index, event in enumerate(document):
        where = f"$[{index}]"
        if not isinstance(event, Mapping):
            raise AdapterError(source, where, "each event of a batch must be a JSON object")
        part = _event_data(source, event, where, index)
        if parts and event.get("specversion") != document[0].get("specversion"):
            raise AdapterError(
                source, f"{where}.specversion", "all events of a batch must have one specversion"
            )
        parts.append(part)
    return parts


def _event_data(source: str, event: Mapping[str, Any], where: str, index: int | None) -> Part:
    """The data of one event in the JSON format, checked as the JSON format says."""
    spec = event.get("specversion")
    if spec != SPEC_VERSION:
        detail = "is missing" if spec is None else f"is {spec!r}"
        raise AdapterError(
            source, f"{where}.specversion", f"{detail}; relsec reads CloudEvents {SPEC_VERSION}"
        )
    for name in REQUIRED_ATTRIBUTES:
        value = event.get(name)
        if not isinstance(value, str) or not value:
            raise AdapterError(
                source, f"{where}.{name}", "is required (a non-empty string) in a CloudEvent"
            )
    content_type = event.get("datacontenttype")
    if content_type is not None and not isinstance(content_type, str):
        raise AdapterError(source, f"{where}.datacontenttype", "must be a string")
    if content_type is not None and not is_json_type(content_type):
        raise UnsupportedContent(
            source,
            f"{where}.datacontenttype",
            f"{content_type!r} is not JSON; relsec reads CDEvents, which are JSON",
        )
    if content_type is not None:
        _check_charset(source, f"{where}.datacontenttype", _media_type(content_type)[1], "data")
    has_data, has_base64 = "data" in event, "data_base64" in event
    if has_data and has_base64:
        raise AdapterError(
            source, where, "has both 'data' and 'data_base64'; the JSON format allows one"
        )
    if has_data:
        return Part(event["data"], f"{where}.data", index)
    if not has_base64:
        raise AdapterError(source, f"{where}.data", "is missing: the CloudEvent carries no data")
    encoded = event["data_base64"]
    path = f"{where}.data_base64"
    if not isinstance(encoded, str):
        raise AdapterError(source, path, "must be a base64 string")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise AdapterError(source, path, "is not valid base64 (RFC 4648, padded)") from None
    try:
        payload = decode_payload(source, raw)
    except AdapterError as exc:
        raise AdapterError(source, path, f"the decoded data is {exc.detail}") from None
    return Part(payload, path, index, decoded=True)
