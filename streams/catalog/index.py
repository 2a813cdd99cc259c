"""The lookup index of a service catalog: which component a tool's name stands for.

:func:`build_catalog` indexes components by (identifier kind, key). Two
components claiming one identifier (one name, one image repository, one
PagerDuty service id, ...) is a conflict: a configuration error naming both
components and their files, never a silent first-wins. :func:`load_catalog`
reads files and builds in one step and raises :class:`CatalogError` with every
problem; :func:`check_catalog` returns them instead (``relsec catalog check``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from streams.catalog.entities import (
    KIND_LABELS,
    NAME,
    Component,
    ReadResult,
    identifier_key,
    read_files,
)
from streams.catalog.errors import CatalogError

#: Environment variable naming catalog files or folders, separated by ``os.pathsep``.
CATALOG_ENV: Final = "RELSEC_CATALOG"


@dataclass(frozen=True, slots=True)
class Catalog:
    """Components and their identifiers, indexed for the adapters' lookups."""

    components: tuple[Component, ...]
    index: dict[tuple[str, str], Component]
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.components)

    def __iter__(self) -> Iterator[Component]:
        return iter(self.components)

    def find(self, kind: str, value: str | None) -> Component | None:
        """The component claiming ``value`` as an identifier of ``kind``, else None."""
        if not value:
            return None
        key = identifier_key(kind, value)
        return self.index.get((kind, key)) if key is not None else None

    def component(self, service: str) -> Component | None:
        """The component whose name (or other name) is ``service``."""
        return self.find(NAME, service)


@dataclass(slots=True)
class CatalogReport:
    """Everything ``relsec catalog check`` prints: components, problems, warnings."""

    catalog: Catalog | None
    read: ReadResult
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.catalog is not None and not self.problems


def build_catalog(read: ReadResult) -> tuple[Catalog, list[str]]:
    """Index the components of ``read``; the second value lists conflicts and read problems."""
    index: dict[tuple[str, str], Component] = {}
    problems = list(read.problems)
    for component in read.components:
        for claim in component.claims:
            owner = index.get((claim.kind, claim.key))
            if owner is None:
                index[(claim.kind, claim.key)] = component
            elif owner is not component:
                what = KIND_LABELS[claim.kind]
                problems.append(
                    f"conflict: {what} {claim.shown!r} is claimed by component {owner.name} "
                    f"({owner.where}) and by component {component.name} ({component.where}, "
                    f"{claim.annotation})"
                )
    catalog = Catalog(
        components=tuple(read.components),
        index=index,
        files=tuple(read.files),
        warnings=tuple(read.warnings),
    )
    return catalog, problems


def check_catalog(paths: Iterable[str | os.PathLike[str]]) -> CatalogReport:
    """Read and index ``paths``, returning every problem instead of raising."""
    read = read_files(paths)
    catalog, problems = build_catalog(read)
    if not read.components and not problems:
        problems.append(
            f"no Component entity in {', '.join(read.files) or 'the given paths'}"
            + (f" (ignored: {_ignored(read)})" if read.ignored else "")
        )
    return CatalogReport(catalog=catalog, read=read, problems=problems)


def load_catalog(paths: Iterable[str | os.PathLike[str]]) -> Catalog:
    """The catalog of ``paths``; :class:`CatalogError` listing every problem when unusable."""
    report = check_catalog(list(paths))
    if report.problems or report.catalog is None:
        raise CatalogError(report.problems)
    return report.catalog


def catalog_paths(given: Iterable[str] | None, environ: dict[str, str] | None = None) -> list[str]:
    """``--catalog`` values if any, else the entries of ``$RELSEC_CATALOG`` (``os.pathsep``)."""
    paths = [p for p in (given or ()) if p]
    if paths:
        return paths
    env = os.environ if environ is None else environ
    return [p for p in env.get(CATALOG_ENV, "").split(os.pathsep) if p.strip()]


def _ignored(read: ReadResult) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(read.ignored.items()))


__all__ = [
    "CATALOG_ENV",
    "Catalog",
    "CatalogReport",
    "build_catalog",
    "catalog_paths",
    "check_catalog",
    "load_catalog",
]
