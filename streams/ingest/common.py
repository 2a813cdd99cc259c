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

With a service catalog (``IngestOptions.catalog``, SPEC §8) the service and the
environment go through it: ``--service`` / ``--environment`` still win; a
``--map`` value is looked up among the catalog's names (and the component's
environment targets); otherwise the adapter's catalog lookups are tried in their
documented order (a PagerDuty service id, then its name, ...), and last the
tool's own name. A name the catalog does not know is kept and reported in
``Conversion.unresolved``; with ``require_catalog`` its events are not produced.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from agents.errors import ConfigError, JsonPath, ValidationError
from agents.model.events import event_to_dict, parse_event
from agents.model.timefmt import TimestampError, format_rfc3339_ms, parse_rfc3339_ms
from streams.catalog import Catalog, Component
from streams.catalog.entities import KIND_LABELS
from streams.catalog.images import ImageRef, parse_image, release_aliases
from streams.ingest.errors import AdapterError

__all__ = [
    "MISSING",
    "Candidate",
    "Conversion",
    "ImageRef",
    "IngestOptions",
    "Lookup",
    "Names",
    "Reader",
    "Unresolved",
    "put_aliases",
    "release_aliases",
    "version_ref",
]

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
    catalog: Catalog | None = None
    """The service catalog names resolve through (SPEC §8), if any."""
    require_catalog: bool = False
    """Produce no event for a service the catalog does not know (``--require-catalog``)."""

    def __post_init__(self) -> None:
        if self.min_severity not in MIN_SEVERITY_CHOICES:
            raise ConfigError(
                f"minimum severity {self.min_severity!r} is not one of "
                f"{', '.join(MIN_SEVERITY_CHOICES)}"
            )
        if self.require_catalog and self.catalog is None:
            raise ConfigError(
                "--require-catalog needs a catalog (--catalog PATH or $RELSEC_CATALOG)"
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
class Unresolved:
    """A service name the catalog did not know: kept as the event's service, and reported."""

    service: str
    detail: str


@dataclass(frozen=True, slots=True)
class Conversion:
    """The result of one adapter call: canonical event dicts, why parts gave none, and the
    service names the catalog did not resolve."""

    events: tuple[dict[str, Any], ...] = ()
    skipped: tuple[str, ...] = ()
    unresolved: tuple[Unresolved, ...] = ()


# --- JSON paths ---------------------------------------------------------------

def split_path(path: str) -> list[str | int]:
    """``$.a.b[0]['x.y/z']`` -> ``["a", "b", 0, "x.y/z"]``; ConfigError when malformed."""
    try:
        return list(JsonPath.parse(path).steps)
    except ValueError as exc:
        if not path.startswith("$"):
            raise ConfigError(f"JSON path {path!r} must start with '$'") from None
        raise ConfigError(f"JSON path {path!r}: {exc}") from None


def join_path(base: str, key: str | int) -> str:
    return base + JsonPath.render_step(key)


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
    """An RFC 3339 timestamp at ``path`` as epoch ms; AdapterError when it is not one or
    names an instant outside years 0001..9999 (it could not be written back)."""
    try:
        ms = parse_rfc3339_ms(text)
    except (TimestampError, ValueError, OverflowError) as exc:
        if assume_utc:
            try:
                return checked_ms(source, path, parse_rfc3339_ms(text + "Z"))
            except (TimestampError, ValueError, OverflowError):
                pass
        raise AdapterError(source, path, str(exc)) from None
    return checked_ms(source, path, ms)


def checked_ms(source: str, path: str, ms: int) -> int:
    """``ms`` when it is an instant relsec can write (years 0001..9999), else AdapterError."""
    try:
        format_rfc3339_ms(ms)
    except (ValueError, OverflowError, OSError):
        raise AdapterError(
            source, path, f"gives an instant ({ms} ms since 1970) outside years 0001..9999"
        ) from None
    return ms


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


@dataclass(frozen=True, slots=True)
class Lookup:
    """One catalog lookup an adapter offers for the service: an identifier of ``kind``
    (see :mod:`streams.catalog.entities`) found at ``path`` of the payload."""

    kind: str
    value: str | None
    path: str


@dataclass(slots=True)
class Names:
    """Picks service / environment / release / ... by override, mapping, then defaults.

    ``service_keys`` are the catalog lookups for the service, most specific first;
    ``environment_targets`` the names the tool gives the place of the event, which a
    component's ``relsec.io/environments`` may map to an environment.
    """

    reader: Reader
    options: IngestOptions
    candidates: dict[str, Candidate]
    defaults: dict[str, tuple[str, ...]]
    overrides: dict[str, str | None] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    service_keys: tuple[Lookup, ...] = ()
    environment_targets: tuple[str | None, ...] = ()
    component: Component | None = None
    unresolved: list[Unresolved] = field(default_factory=list)
    _service: str | None = None

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
        catalog = self.options.catalog
        if catalog is not None and name == "service":
            return self._catalog_service(catalog, required, root)
        if catalog is not None and name == "environment":
            return self._catalog_environment(catalog, required, root)
        return self._from_chain(name, required, root)

    def _chain(self, name: str) -> tuple[str | None, tuple[str, ...]]:
        spec = self.options.mapped(name)
        if spec:
            return spec, tuple(s.strip() for s in spec.split(","))
        return None, self.defaults.get(name, ())

    def _from_chain(self, name: str, required: bool, root: Any) -> str | None:
        spec, chain = self._chain(name)
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
        hint = "" if name != "service" else " or list the tool's name in the service catalog"
        raise self.reader.error(
            where,
            f"no {name} found (looked at {', '.join(tried) or 'nothing'}); "
            f"pass --{name.replace('_', '-')} or --map {name}=<$.json.path>{hint}",
        )

    def _catalog_service(self, catalog: Catalog, required: bool, root: Any) -> str | None:
        if self._service is not None:
            return self._service
        looked: list[str] = []
        found: Component | None = None
        mapped = self.options.mapped("service") is not None
        if not mapped:
            for key in self.service_keys:
                if not key.value:
                    continue
                looked.append(f"{KIND_LABELS[key.kind]} {key.value!r}")
                found = catalog.find(key.kind, key.value)
                if found is not None:
                    self.origins["service"] = key.path
                    break
        tool_name = self._from_chain("service", required and found is None, root)
        if found is None and tool_name:
            looked.append(f"name {tool_name!r}")
            found = catalog.component(tool_name)
        if found is not None:
            self.component = found
            self._service = found.name
            return found.name
        if tool_name is None:
            return None
        self.unresolved.append(
            Unresolved(
                tool_name,
                f"{self.reader.source}: service {tool_name!r} is not in the catalog "
                f"(looked up {', '.join(dict.fromkeys(looked))})",
            )
        )
        self._service = tool_name
        return tool_name

    def _catalog_environment(self, catalog: Catalog, required: bool, root: Any) -> str | None:
        self._catalog_service(catalog, False, root)
        value = self._from_chain("environment", False, root)
        if self.component is not None:
            mapped = self.options.mapped("environment") is not None
            targets = (value,) if mapped else (*self.environment_targets, value)
            env = self.component.environment_for(targets)
            if env is not None:
                self.origins.setdefault("environment", "(catalog relsec.io/environments)")
                return env
        if value is None and required:
            return self._from_chain("environment", True, root)
        return value


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


def parse_image_ref(text: str) -> ImageRef | None:
    """Parse ``registry/repo:tag@sha256:...`` into canonical form (SPEC §8); None when
    ``text`` is not an image reference. See :func:`streams.catalog.images.parse_image`."""
    return parse_image(text)


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


def purl_qualifiers(purl: str) -> dict[str, str]:
    """The qualifiers of a package URL, percent-decoded
    (``pkg:oci/app@sha256%3Aab?repository_url=ghcr.io/acme/app&tag=2.7.0`` -> both)."""
    from urllib.parse import parse_qsl

    query = purl.split("#", 1)[0].partition("?")[2]
    return {k.lower(): v for k, v in parse_qsl(query, keep_blank_values=False)}


#: A git ref that names one version (a tag such as ``v2.4.0``), or a commit SHA; branch
#: names (``main``, ``release/2.x``) move and never name one release.
_VERSION_REF: Final = re.compile(
    r"^(?:refs/tags/)?(v?[0-9]+(?:\.[0-9]+)*(?:[-+][0-9A-Za-z.+-]+)?)$|^([0-9a-f]{40}|[0-9a-f]{64})$"
)


def version_ref(ref: str | None) -> str | None:
    """``v2.4.0`` / ``refs/tags/v2.4.0`` -> ``v2.4.0``, a commit SHA as is; None for a branch."""
    if not ref:
        return None
    m = _VERSION_REF.match(ref.strip())
    if m is None:
        return None
    return m.group(1) or m.group(2)


def put_aliases(fields: dict[str, Any], key: str, names: Iterable[str | None]) -> None:
    """Set ``release_aliases`` of ``fields`` (SPEC §8) from the names a tool gives the
    release in ``fields[key]``; nothing when there are none left (the canonical form)."""
    aliases = release_aliases(fields.get(key), names)
    if aliases:
        fields["release_aliases"] = aliases


def with_unresolved(conversion: Conversion, *names: Names) -> Conversion:
    """``conversion`` with the unresolved service names of ``names`` attached."""
    unresolved = tuple(u for n in names for u in n.unresolved)
    if not unresolved:
        return conversion
    return Conversion(conversion.events, conversion.skipped, conversion.unresolved + unresolved)
