"""Shared machinery of the ingest adapters: options, results, JSON paths, names, ids.

An adapter is a pure function ``(payload, options) -> Conversion``: it reads a
decoded JSON payload of one tool, never touches files, the network or the clock
(a payload without a timestamp uses ``options.received_at_ms``, which the caller
supplies), and returns SPEC §1 event dicts that :func:`agents.model.events.parse_event`
accepts, plus the reasons a payload yielded no event.

Names (service, environment, release, ...) are picked by :class:`Names`: a literal
override (``--service``) wins, then a mapping (``--map service=SPEC`` where SPEC is
a JSON path starting with ``$`` or the name of a value the adapter derives, such as
``image_tag``; several, comma-separated, are tried in order), then the adapter's
documented default chain.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from agents.errors import AdapterError, ConfigError, ValidationError
from agents.model.events import event_to_dict, parse_event
from agents.model.timefmt import TimestampError, format_rfc3339_ms, parse_rfc3339_ms

MISSING: Final = object()

#: Severity ranks of scanner findings; ``unknown`` and ``negligible`` sit below ``low``.
SEVERITY_RANK: Final[dict[str, int]] = {
    "unknown": 0,
    "negligible": 0,
    "low": 1,
    "medium": 2,
    "high": 3,
    "critical": 4,
}
MIN_SEVERITY_CHOICES: Final = ("unknown", "low", "medium", "high", "critical")
_SEVERITY_SYNONYMS: Final[dict[str, str]] = {
    "moderate": "medium",
    "important": "high",
    "info": "negligible",
    "informational": "negligible",
    "none": "negligible",
    "unassigned": "unknown",
    "": "unknown",
}

DEFAULT_MIN_SEVERITY: Final = "low"
DEFAULT_ENVIRONMENT: Final = "production"
DEFAULT_INCIDENT_SEVERITY: Final = "sev3"
MAX_TITLE_CHARS: Final = 4096


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """What the caller tells an adapter beyond the payload.

    ``mapping`` holds ``(field, spec)`` pairs from ``--map field=SPEC``;
    ``event_name`` is the delivery's event type when the tool sends it out of band
    (GitHub's ``X-GitHub-Event`` header); ``previous`` is the decoded previous
    report of a scanner, used to clear findings that disappeared;
    ``received_at_ms`` is the time used when a payload carries no timestamp.
    """

    service: str | None = None
    release: str | None = None
    environment: str | None = None
    min_severity: str = DEFAULT_MIN_SEVERITY
    mapping: tuple[tuple[str, str], ...] = ()
    event_name: str | None = None
    previous: Any = None
    received_at_ms: int | None = None
    default_environment: str = DEFAULT_ENVIRONMENT

    def __post_init__(self) -> None:
        if self.min_severity not in MIN_SEVERITY_CHOICES:
            raise ConfigError(
                f"minimum severity {self.min_severity!r} is not one of "
                f"{', '.join(MIN_SEVERITY_CHOICES)}"
            )

    def mapped(self, name: str) -> str | None:
        for key, spec in self.mapping:
            if key == name:
                return spec
        return None


def parse_mapping(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``["service=$.a.b", "release=image_tag"]`` -> pairs; ConfigError on a malformed item."""
    out: list[tuple[str, str]] = []
    for item in items:
        key, sep, spec = item.partition("=")
        key, spec = key.strip(), spec.strip()
        if not sep or not key or not spec:
            raise ConfigError(f"--map {item!r}: expected FIELD=SPEC (SPEC a $.json.path or a name)")
        out.append((key, spec))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Conversion:
    """The result of one adapter call: canonical event dicts and why parts gave none."""

    events: tuple[dict[str, Any], ...] = ()
    skipped: tuple[str, ...] = ()


# --- JSON paths ---------------------------------------------------------------

_SEGMENT = re.compile(r"\.([A-Za-z0-9_@\-]+)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


def split_path(path: str) -> list[str | int]:
    """``$.a.b[0]['x.y/z']`` -> ``["a", "b", 0, "x.y/z"]``; ConfigError when malformed."""
    if not path.startswith("$"):
        raise ConfigError(f"JSON path {path!r} must start with '$'")
    parts: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if m is None:
            raise ConfigError(f"JSON path {path!r}: cannot read from character {pos + 1}")
        if m.group(1) is not None:
            parts.append(m.group(1))
        elif m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            parts.append(m.group(3))
        pos = m.end()
    return parts


def join_path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    if re.fullmatch(r"[A-Za-z0-9_@\-]+", key):
        return f"{base}.{key}"
    return f"{base}['{key}']"


def lookup(root: Any, path: str) -> Any:
    """The value at ``path`` in ``root``, or :data:`MISSING`."""
    node = root
    for part in split_path(path):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return MISSING
            node = node[part]
        else:
            if not isinstance(node, Mapping) or part not in node:
                return MISSING
            node = node[part]
    return node


class Reader:
    """Typed access to a payload that raises :class:`AdapterError` naming the JSON path."""

    def __init__(self, source: str, root: Any) -> None:
        self.source = source
        self.root = root

    def error(self, path: str, detail: str) -> AdapterError:
        return AdapterError(self.source, path, detail)

    def get(self, path: str) -> Any:
        value = lookup(self.root, path)
        return None if value is MISSING else value

    def obj(self, path: str) -> Mapping[str, Any]:
        value = lookup(self.root, path)
        if value is MISSING or value is None:
            raise self.error(path, "is missing (expected an object)")
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be an object, got {_json_type(value)}")
        return value

    def opt_obj(self, path: str) -> Mapping[str, Any] | None:
        value = lookup(self.root, path)
        if value is MISSING or value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be an object, got {_json_type(value)}")
        return value

    def array(self, path: str, *, required: bool = True) -> Sequence[Any]:
        value = lookup(self.root, path)
        if value is MISSING or value is None:
            if required:
                raise self.error(path, "is missing (expected an array)")
            return ()
        if not isinstance(value, list):
            raise self.error(path, f"must be an array, got {_json_type(value)}")
        return value

    def text(self, path: str) -> str:
        value = lookup(self.root, path)
        if value is MISSING or value is None:
            raise self.error(path, "is missing (expected a string)")
        if not isinstance(value, str):
            raise self.error(path, f"must be a string, got {_json_type(value)}")
        if not value:
            raise self.error(path, "is empty")
        return value

    def opt_str(self, path: str) -> str | None:
        """A non-empty string, or None when missing, null or empty; error on another type."""
        value = lookup(self.root, path)
        if value is MISSING or value is None:
            return None
        if not isinstance(value, str):
            raise self.error(path, f"must be a string, got {_json_type(value)}")
        return value or None

    def scalar_str(self, path: str) -> str | None:
        """A string or number rendered as a string (ids are sometimes numbers)."""
        value = lookup(self.root, path)
        if value is MISSING or value is None or isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, str):
            return value or None
        raise self.error(path, f"must be a string or a number, got {_json_type(value)}")

    def timestamp_ms(self, path: str, *, assume_utc: bool = False) -> int:
        text = self.text(path)
        return parse_time_ms(self.source, path, text, assume_utc=assume_utc)


def parse_time_ms(source: str, path: str, text: str, *, assume_utc: bool = False) -> int:
    try:
        return parse_rfc3339_ms(text)
    except TimestampError as exc:
        if assume_utc:
            try:
                return parse_rfc3339_ms(text + "Z")
            except TimestampError:
                pass
        raise AdapterError(source, path, str(exc)) from None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


# --- names ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A value an adapter derives from a payload, with the JSON path it came from."""

    value: str | None
    path: str


@dataclass(slots=True)
class Names:
    """Picks service / environment / release / ... by override, mapping, then defaults."""

    reader: Reader
    options: IngestOptions
    candidates: dict[str, Candidate]
    defaults: dict[str, tuple[str, ...]]
    overrides: dict[str, str | None] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def need(self, name: str, *, root: Any = None) -> str:
        """:meth:`pick` of a required name (raises rather than return None)."""
        value = self.pick(name, required=True, root=root)
        assert value is not None
        return value

    def pick(self, name: str, *, required: bool = True, root: Any = None) -> str | None:
        override = self.overrides.get(name)
        if override:
            self.origins[name] = f"--{name.replace('_', '-')}"
            return override
        spec = self.options.mapped(name)
        chain = tuple(s.strip() for s in spec.split(",")) if spec else self.defaults.get(name, ())
        tried: list[str] = []
        base = self.reader.root if root is None else root
        for item in chain:
            if item.startswith("$"):
                value = lookup(base, item)
                tried.append(item)
                if isinstance(value, bool):
                    value = None
                if isinstance(value, int | float):
                    value = str(value)
                if isinstance(value, str) and value:
                    self.origins[name] = item
                    return value
                if value not in (MISSING, None, "") and not isinstance(value, str):
                    raise self.reader.error(
                        item, f"must be a string for {name}, got {_json_type(value)}"
                    )
                continue
            cand = self.candidates.get(item)
            if cand is None:
                raise ConfigError(
                    f"{self.reader.source}: --map {name}={spec}: {item!r} is neither a JSON path "
                    f"nor one of {', '.join(sorted(self.candidates)) or '(no named values)'}"
                )
            tried.append(cand.path)
            if cand.value:
                self.origins[name] = cand.path
                return cand.value
        if not required:
            return None
        where = tried[0] if tried else "$"
        raise self.reader.error(
            where,
            f"no {name} found (looked at {', '.join(tried) or 'nothing'}); "
            f"pass --{name.replace('_', '-')} or --map {name}=<$.json.path>",
        )


# --- ids, severities, text ----------------------------------------------------


def stable_id(source: str, *parts: Any) -> str:
    """A deterministic event id: ``source:`` and 32 hex digits of SHA-256 over ``parts``."""
    digest = hashlib.sha256(orjson.dumps(list(parts), option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{source}:{digest[:32]}"


def readable_id(source: str, *parts: str) -> str:
    """``source:part:part`` when short enough, else :func:`stable_id` of the parts."""
    text = ":".join((source, *parts))
    return text if len(text) <= 200 else stable_id(source, *parts)


def normalize_severity(raw: str | None) -> str:
    """A scanner's severity word, lower-cased, onto :data:`SEVERITY_RANK` (``unknown`` if odd)."""
    text = (raw or "").strip().lower()
    if text.startswith("severity_"):
        text = text[len("severity_") :]
    text = _SEVERITY_SYNONYMS.get(text, text)
    return text if text in SEVERITY_RANK else "unknown"


def clip(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_ms(ms: int) -> str:
    return format_rfc3339_ms(ms)


def fallback_time_ms(reader: Reader, path: str, options: IngestOptions) -> int:
    """The payload's timestamp at ``path``, else the caller's receive time, else an error."""
    text = reader.opt_str(path)
    if text:
        return reader.timestamp_ms(path)
    if options.received_at_ms is not None:
        return options.received_at_ms
    raise reader.error(path, "is missing and no receive time was given")


# --- finishing ---------------------------------------------------------------------


def finish(
    source: str, drafts: Iterable[tuple[dict[str, Any], dict[str, str]]]
) -> list[dict[str, Any]]:
    """Validate drafts into canonical SPEC §1 dicts.

    Each draft is ``(fields, origins)`` where ``origins`` maps an event field to the
    JSON path it came from, so a value the event model refuses (too long, wrong
    enum) is reported at the payload's path.
    """
    out: list[dict[str, Any]] = []
    for fields, origins in drafts:
        try:
            event = parse_event(fields)
        except ValidationError as exc:
            base = exc.field.split("[", 1)[0]
            where = origins.get(base, f"(event field {exc.field})")
            raise AdapterError(source, where, f"gives {exc.field} that {exc.detail}") from None
        out.append(event_to_dict(event))
    return out


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An OCI image reference split into repository, tag and digest."""

    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The last path segment of the repository (``ghcr.io/acme/shop`` -> ``shop``)."""
        return self.repository.rsplit("/", 1)[-1]

    @property
    def version(self) -> str | None:
        """The tag, else the digest."""
        return self.tag or self.digest


_IMAGE_RE: Final = re.compile(
    r"^(?P<repo>[a-z0-9][a-z0-9._\-/:]*?[a-z0-9])(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+:[a-f0-9]{32,}))?$"
)


def parse_image_ref(text: str) -> ImageRef | None:
    """Parse ``registry/repo:tag@sha256:...``; None when ``text`` is not an image reference."""
    m = _IMAGE_RE.match(text.strip())
    if m is None:
        return None
    repo = m.group("repo")
    tag = m.group("tag")
    # a registry port (host:5000/repo) is part of the repository, not a tag
    if "/" in (tag or ""):
        return None
    return ImageRef(repository=repo, tag=tag, digest=m.group("digest"))


def purl_version(purl: str) -> str | None:
    """A package URL's version, percent-decoded (``pkg:oci/a@sha256%3Aab`` -> ``sha256:ab``)."""
    from urllib.parse import unquote

    body = purl.split("?", 1)[0].split("#", 1)[0]
    if "@" not in body:
        return None
    return unquote(body.rsplit("@", 1)[1]) or None


def purl_name(purl: str) -> str | None:
    """The name of a package URL (``pkg:oci/myapp@..`` -> ``myapp``)."""
    from urllib.parse import unquote

    body = purl.split("?", 1)[0].split("#", 1)[0].split("@", 1)[0]
    if not body.startswith("pkg:") or "/" not in body:
        return None
    return unquote(body.rsplit("/", 1)[1]) or None
