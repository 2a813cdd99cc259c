"""Backstage catalog entity files -> :class:`Component` values (SPEC §8).

A file holds one or more YAML documents; each is read with PyYAML's safe loader
(the loader of ``yaml.safe_load_all``, stepped one document at a time so each
keeps its line number). Documents of another ``kind`` (System, API, Group,
Location, a Kubernetes manifest) are ignored; so is a ``kind: Component`` whose
``apiVersion`` is not ``backstage.io/...``. A Component's ``metadata.name`` is the
relsec service; its annotations name it in the tools (:data:`ANNOTATIONS`).

Problems are collected, never raised one by one, so ``relsec catalog check``
can print all of them: :func:`read_files` returns the components and a list of
problems (malformed documents: file and document index) and warnings (a
plugin annotation relsec cannot use, which only costs that lookup).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from agents.model.events import MAX_ENVIRONMENT_CHARS, MAX_ID_CHARS
from streams.catalog.images import parse_image

CATALOG_SUFFIXES: Final = (".yaml", ".yml")
MAX_FILE_BYTES: Final = 16 * 1024 * 1024

# --- the kinds of identifier a component can claim -----------------------------------

NAME: Final = "name"
GITHUB: Final = "github"
ARGOCD_APP: Final = "argocd-app"
ARGOCD_LABEL: Final = "argocd-label"
KUBERNETES: Final = "kubernetes"
FLUX: Final = "flux"
IMAGE: Final = "image"
PAGERDUTY: Final = "pagerduty"
OPSGENIE_TAG: Final = "opsgenie-tag"
OPSGENIE_DETAIL: Final = "opsgenie-detail"
OPSGENIE_ENTITY: Final = "opsgenie-entity"
DTRACK_PROJECT: Final = "dependency-track-project"

#: What each kind is, for messages and ``relsec catalog check``.
KIND_LABELS: Final[dict[str, str]] = {
    NAME: "name",
    GITHUB: "GitHub repository",
    ARGOCD_APP: "Argo CD application",
    ARGOCD_LABEL: "Argo CD application label",
    KUBERNETES: "Kubernetes id",
    FLUX: "Flux object",
    IMAGE: "image repository",
    PAGERDUTY: "PagerDuty service id",
    OPSGENIE_TAG: "Opsgenie tag",
    OPSGENIE_DETAIL: "Opsgenie details pair",
    OPSGENIE_ENTITY: "Opsgenie entity",
    DTRACK_PROJECT: "Dependency-Track project uuid",
}

# Annotation names: the Backstage plugins' own where they exist (docs/ingest.md cites
# where each is defined), relsec.io/... for the rest.
A_GITHUB: Final = "github.com/project-slug"
A_ARGOCD_APP: Final = "argocd/app-name"
A_ARGOCD_SELECTOR: Final = "argocd/app-selector"
A_PAGERDUTY: Final = "pagerduty.com/service-id"
A_OPSGENIE: Final = "opsgenie.com/component-selector"
A_DTRACK_ID: Final = "dependencytrack/project-id"
A_DTRACK_NAME: Final = "dependencytrack/project-name"
A_KUBERNETES: Final = "backstage.io/kubernetes-id"
A_IMAGES: Final = "relsec.io/images"
A_FLUX: Final = "relsec.io/flux"
A_NAMES: Final = "relsec.io/names"
A_ENVIRONMENTS: Final = "relsec.io/environments"
ANNOTATIONS: Final = (
    A_GITHUB,
    A_ARGOCD_APP,
    A_ARGOCD_SELECTOR,
    A_PAGERDUTY,
    A_OPSGENIE,
    A_DTRACK_ID,
    A_DTRACK_NAME,
    A_KUBERNETES,
    A_IMAGES,
    A_FLUX,
    A_NAMES,
    A_ENVIRONMENTS,
)


def name_key(text: str) -> str:
    """Names compare without case and with runs of white space as one space."""
    return " ".join(text.split()).casefold()


def identifier_key(kind: str, value: str) -> str | None:
    """The lookup key of ``value`` as an identifier of ``kind``; None when it cannot be one.

    Both the catalog and the adapters go through here, so a payload's value and an
    annotation's value meet on the same key.
    """
    text = value.strip()
    if not text or len(text) > 1024:
        return None
    if kind == NAME:
        return name_key(text)
    if kind == GITHUB:
        owner, sep, repo = text.lower().removesuffix(".git").partition("/")
        return f"{owner}/{repo}" if sep and owner and repo and "/" not in repo else None
    if kind in (ARGOCD_APP, KUBERNETES, DTRACK_PROJECT):
        return text.lower()
    if kind == FLUX:
        parts = [p.strip() for p in text.split("/")]
        if len(parts) != 3 or not all(parts):
            return None
        return "/".join(parts).lower()
    if kind == IMAGE:
        ref = parse_image(text)
        return ref.repository if ref is not None else None
    if kind == PAGERDUTY:
        return text.upper()
    if kind in (OPSGENIE_TAG, OPSGENIE_ENTITY):
        return text.casefold()
    if kind in (OPSGENIE_DETAIL, ARGOCD_LABEL):
        key, sep, val = text.partition(":" if kind == OPSGENIE_DETAIL else "=")
        return f"{key.strip().casefold()}{sep}{val.strip().casefold()}" if sep and key else None
    raise ValueError(f"no identifier kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Claim:
    """One identifier a component claims, with the annotation (or field) that says so."""

    kind: str
    key: str
    shown: str
    annotation: str


@dataclass(frozen=True, slots=True)
class Component:
    """A Backstage ``kind: Component``: the relsec service and every name it has in the tools."""

    name: str
    file: str
    document: int
    line: int
    claims: tuple[Claim, ...]
    environments: Mapping[str, str] = field(default_factory=dict)
    """Deploy or incident target (any tool's name of a place, keyed by :func:`name_key`) ->
    the relsec environment it stands for."""
    environment_targets: tuple[tuple[str, str], ...] = ()
    """The ``relsec.io/environments`` pairs as written, for ``catalog check``."""

    @property
    def where(self) -> str:
        return f"{self.file}, document {self.document} (line {self.line})"

    def environment_for(self, targets: Iterable[str | None]) -> str | None:
        """The environment of the first target this component maps, else None."""
        if not self.environments:
            return None
        for target in targets:
            if target:
                env = self.environments.get(name_key(target))
                if env is not None:
                    return env
        return None


@dataclass(slots=True)
class ReadResult:
    """What :func:`read_files` found."""

    components: list[Component] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    """Documents of other kinds, counted by kind."""


def catalog_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """Every ``*.yaml`` / ``*.yml`` file of ``paths`` (files as given, folders recursively,
    sorted), and a problem for each path that does not exist or holds no such file."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CATALOG_SUFFIXES
            )
            if not found:
                problems.append(f"{path}: folder holds no *.yaml or *.yml file")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    unique = list(dict.fromkeys(files))
    return unique, problems


def read_files(paths: Iterable[str | os.PathLike[str]]) -> ReadResult:
    """Read every catalog file of ``paths`` into components, problems and warnings."""
    result = ReadResult()
    files, problems = catalog_files(paths)
    result.problems.extend(problems)
    for path in files:
        result.files.append(str(path))
        _read_file(path, result)
    return result


def _read_file(path: Path, result: ReadResult) -> None:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            result.problems.append(f"{path}: {size} bytes, larger than {MAX_FILE_BYTES}")
            return
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.problems.append(f"{path}: cannot read: {exc}")
        return
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    index = 0
    try:
        while True:
            index += 1
            if not loader.check_node():
                break
            node = loader.get_node()
            if node is None:
                break
            line = node.start_mark.line + 1
            _read_document(path, index, line, loader.construct_document(node), result)
    except RecursionError:
        result.problems.append(f"{path}, document {index}: nested too deeply to read")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        at = f" line {mark.line + 1} column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        result.problems.append(f"{path}, document {index}:{at} not valid YAML: {problem}")
    finally:
        loader.dispose()


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > limit or _CONTROL.search(text):
        return None
    return text


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _read_document(path: Path, index: int, line: int, data: Any, result: ReadResult) -> None:
    where = f"{path}, document {index} (line {line})"
    if data is None:
        return  # an empty document (a trailing '---')
    if not isinstance(data, Mapping):
        result.problems.append(f"{where}: a catalog entity must be a mapping, got {_kind_of(data)}")
        return
    kind = data.get("kind")
    if kind != "Component":
        label = kind if isinstance(kind, str) else "(no kind)"
        result.ignored[label] = result.ignored.get(label, 0) + 1
        return
    api = data.get("apiVersion")
    if not isinstance(api, str) or not api.startswith("backstage.io/"):
        result.warnings.append(
            f"{where}: kind Component with apiVersion {api!r}, not backstage.io/...: ignored"
        )
        result.ignored["Component (not backstage.io)"] = (
            result.ignored.get("Component (not backstage.io)", 0) + 1
        )
        return
    metadata = data.get("metadata")
    if not isinstance(metadata, Mapping):
        result.problems.append(f"{where}: metadata is missing or not a mapping")
        return
    name = _text(metadata.get("name"), MAX_ID_CHARS)
    if name is None:
        result.problems.append(
            f"{where}: metadata.name must be a string of 1..{MAX_ID_CHARS} characters without "
            f"control characters, got {metadata.get('name')!r}"
        )
        return
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        result.problems.append(f"{where}: component {name}: metadata.annotations is not a mapping")
        return
    component_where = f"{where}: component {name}"
    claims: list[Claim] = [Claim(NAME, name_key(name), name, "metadata.name")]
    environments: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for annotation in ANNOTATIONS:
        raw = annotations.get(annotation)
        if raw is None:
            continue
        if not isinstance(raw, str):
            result.problems.append(
                f"{component_where}: annotation {annotation} must be a string, got {_kind_of(raw)}"
            )
            continue
        if annotation == A_ENVIRONMENTS:
            _environments(component_where, raw, environments, pairs, result)
        elif annotation == A_OPSGENIE:
            _opsgenie(component_where, raw, claims, result)
        else:
            _claims(component_where, annotation, raw, claims, result)
    result.components.append(
        Component(
            name=name,
            file=str(path),
            document=index,
            line=line,
            claims=_distinct(claims),
            environments=environments,
            environment_targets=tuple(pairs),
        )
    )


def _distinct(claims: list[Claim]) -> tuple[Claim, ...]:
    """The first claim of each (kind, key): a name listed twice is one name."""
    seen: dict[tuple[str, str], Claim] = {}
    for claim in claims:
        seen.setdefault((claim.kind, claim.key), claim)
    return tuple(seen.values())


_ANNOTATION_KINDS: Final[dict[str, str]] = {
    A_GITHUB: GITHUB,
    A_ARGOCD_APP: ARGOCD_APP,
    A_ARGOCD_SELECTOR: ARGOCD_LABEL,
    A_PAGERDUTY: PAGERDUTY,
    A_DTRACK_ID: DTRACK_PROJECT,
    A_DTRACK_NAME: NAME,
    A_KUBERNETES: KUBERNETES,
    A_IMAGES: IMAGE,
    A_FLUX: FLUX,
    A_NAMES: NAME,
}


def _claims(
    where: str, annotation: str, raw: str, claims: list[Claim], result: ReadResult
) -> None:
    kind = _ANNOTATION_KINDS[annotation]
    for value in _split(raw):
        key = identifier_key(kind, value)
        if key is None:
            message = f"{where}: {annotation} value {value!r} is not a {KIND_LABELS[kind]}"
            # relsec's own annotations are relsec's to refuse; a plugin's only costs the lookup
            (result.problems if annotation.startswith("relsec.io/") else result.warnings).append(
                message + ("" if annotation.startswith("relsec.io/") else "; lookup ignored")
            )
            continue
        if kind == IMAGE:
            ref = parse_image(value)
            if ref is not None and (ref.tag or ref.digest):
                result.warnings.append(
                    f"{where}: {annotation} lists {value!r}: only the repository "
                    f"{ref.repository} is used (tags and digests name releases, not services)"
                )
        claims.append(Claim(kind, key, value, annotation))


_OPSGENIE_TERM: Final = re.compile(
    r"""^(?:(?P<field>tags?|entity)\s*:\s*(?:"(?P<quoted>[^"]+)"|(?P<bare>[^\s"()]+))"""
    r"""|detailsPair\(\s*(?P<dkey>[^:()]+?)\s*:\s*(?P<dval>[^()]+?)\s*\)"""
    r"""|(?P<word>[^\s"():]+))$""",
    re.IGNORECASE,
)


def _opsgenie(where: str, raw: str, claims: list[Claim], result: ReadResult) -> None:
    """``opsgenie.com/component-selector``: an Opsgenie alert query. relsec reads the
    queries a lookup can answer: terms ``tag:"X"`` / ``tags:X``, ``detailsPair(k:v)``,
    ``entity:X`` or a bare word (read as a tag), joined by ``OR``."""
    terms = re.split(r"\s+OR\s+", raw.strip(), flags=re.IGNORECASE)
    parsed: list[Claim] = []
    for term in terms:
        m = _OPSGENIE_TERM.match(term.strip())
        if m is None:
            result.warnings.append(
                f"{where}: {A_OPSGENIE} {raw!r}: term {term!r} is not tag:X, detailsPair(k:v), "
                "entity:X or a word joined by OR; this selector is not used for lookups"
            )
            return
        if m.group("dkey"):
            kind, value = OPSGENIE_DETAIL, f"{m.group('dkey')}:{m.group('dval')}"
        elif m.group("field"):
            field_name = m.group("field").lower()
            kind = OPSGENIE_ENTITY if field_name == "entity" else OPSGENIE_TAG
            value = m.group("quoted") or m.group("bare")
        else:
            kind, value = OPSGENIE_TAG, m.group("word")
        key = identifier_key(kind, value)
        if key is not None:
            parsed.append(Claim(kind, key, term.strip(), A_OPSGENIE))
    claims.extend(parsed)


def _environments(
    where: str,
    raw: str,
    environments: dict[str, str],
    pairs: list[tuple[str, str]],
    result: ReadResult,
) -> None:
    for item in _split(raw):
        target, sep, env = item.partition("=")
        target, env = target.strip(), env.strip()
        env_text = _text(env, MAX_ENVIRONMENT_CHARS)
        if not sep or not target or env_text is None:
            result.problems.append(
                f"{where}: {A_ENVIRONMENTS} item {item!r} is not TARGET=ENVIRONMENT "
                f"(an environment of 1..{MAX_ENVIRONMENT_CHARS} characters)"
            )
            continue
        key = name_key(target)
        known = environments.get(key)
        if known is not None and known != env_text:
            result.problems.append(
                f"{where}: {A_ENVIRONMENTS} maps {target!r} to both {known!r} and {env_text!r}"
            )
            continue
        environments[key] = env_text
        pairs.append((target, env_text))


def _kind_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


__all__ = [
    "ANNOTATIONS",
    "KIND_LABELS",
    "Claim",
    "Component",
    "ReadResult",
    "catalog_files",
    "identifier_key",
    "name_key",
    "read_files",
]
