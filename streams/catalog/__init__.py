"""The service catalog (SPEC §8): one service and one release across every tool.

* :mod:`streams.catalog.entities` reads Backstage entity files (``kind: Component``)
  into :class:`Component` values: the service (``metadata.name``) and the names the
  tools give it (annotations: the Backstage plugins' own where they exist,
  ``relsec.io/...`` for the rest; docs/ingest.md lists them).
* :mod:`streams.catalog.index` indexes them (:class:`Catalog`), refusing two
  components that claim one identifier.
* :mod:`streams.catalog.source` follows the files for long-running processes.
* :mod:`streams.catalog.images` writes image names in the one canonical form
  SPEC §8 asks for and builds ``release_aliases``.

The ingest adapters resolve through a :class:`Catalog` given in
``IngestOptions.catalog``; ``relsec catalog check PATH`` prints what a catalog resolves.
"""

from __future__ import annotations

from streams.catalog.entities import ANNOTATIONS, Claim, Component, identifier_key, name_key
from streams.catalog.index import (
    CATALOG_ENV,
    Catalog,
    CatalogReport,
    build_catalog,
    catalog_paths,
    check_catalog,
    load_catalog,
)
from streams.catalog.source import CatalogSource

__all__ = [
    "ANNOTATIONS",
    "CATALOG_ENV",
    "Catalog",
    "CatalogReport",
    "CatalogSource",
    "Claim",
    "Component",
    "build_catalog",
    "catalog_paths",
    "check_catalog",
    "identifier_key",
    "load_catalog",
    "name_key",
]
