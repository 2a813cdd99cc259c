"""Which build of the engine and model runs: the mypyc-compiled one or the pure Python.

``setup.py`` compiles ``agents/model`` and ``agents/engine`` with mypyc where it can, and
with them the worker's per-record modules (:data:`MODULES`); the extension modules sit
beside their ``.py`` sources and Python prefers them. With
``RELSEC_PURE_PYTHON=1`` in the environment, :func:`install` (run by the inits of the
packages holding compiled modules, before anything else of them is imported) puts a
finder first on ``sys.meta_path`` that loads those modules from their ``.py`` files
instead, so the same checkout runs either build (``make test`` runs the engine and
worker-core tests under both) and a wrong compile can always be
ruled out by switching it off. The two builds never mix in one process: the compiled
modules call each other directly, so the finder takes every compiled module.

The same happens, with a warning, when a source is newer than the compiled build (an
editable install whose ``.py`` files were edited or checked out since): stale compiled
code must never run in place of the code in the tree.

:func:`loaded_builds` says which build each imported module came from; tests assert it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Final

PURE_ENV: Final = "RELSEC_PURE_PYTHON"
PACKAGES: Final = ("agents.model", "agents.engine")
"""Packages whose modules are compiled (all but the inits, this switch and ``records``:
``NOT_COMPILED`` in setup.py)."""
MODULES: Final = (
    "streams.codecs.avro_direct",
    "streams.codecs.avro_readers",
    "streams.codecs.datum",
    "streams.ocsf",
    "streams.worker.checkpoint",
    "streams.worker.core",
    "streams.worker.delivery",
    "streams.worker.merge",
    "streams.worker.processor",
    "streams.worker.state_records",
    "streams.worker.tally",
)
"""Single modules of other packages compiled with them: the worker's per-record path
(reading a record, the merge, the engine's batches, alerts and their OCSF form, the
checkpoints that store and send them, the counters). Their
packages' inits import this module first. setup.py reads both lists from this file."""
NATIVE_LIBRARY: Final = "native__mypyc"
"""The shared library of the compiled code, in ``agents/`` (``GROUP_NAME`` in setup.py)."""
_ROOT: Final = Path(__file__).resolve().parents[1]
_TREE: Final = _ROOT.parent
"""The folder holding ``agents`` and ``streams``."""


def switched(fullname: str) -> bool:
    """Whether the switch decides the build of module ``fullname``."""
    return fullname.rpartition(".")[0] in PACKAGES or fullname in MODULES


def _source_of(fullname: str) -> Path:
    return _TREE.joinpath(*fullname.split(".")).with_suffix(".py")


def pure_requested() -> bool:
    """Whether the environment asks for the pure-Python modules."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


class _SourceFirstFinder:
    """Finds the modules of :data:`PACKAGES` and :data:`MODULES` as ``.py`` files, never as
    extensions."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        name = fullname.rpartition(".")[2]
        if path is None or not switched(fullname):
            return None
        for folder in path:
            source = Path(folder, f"{name}.py")
            if source.is_file():
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def stale_sources() -> list[str]:
    """Compiled modules whose ``.py`` source changed after the compiled build."""
    libraries = list(_ROOT.glob(f"{NATIVE_LIBRARY}*"))
    if not libraries:
        return []
    built = min(p.stat().st_mtime for p in libraries)
    stale: list[str] = []
    for name in compiled_available():
        source = _source_of(name)
        if source.stat().st_mtime > built:
            stale.append(str(source.relative_to(_TREE)))
    return stale


def install() -> None:
    """Load pure-Python modules when :data:`PURE_ENV` asks for them, or when the compiled
    build is older than a source (idempotent)."""
    if any(isinstance(f, _SourceFirstFinder) for f in sys.meta_path):
        return
    if not pure_requested():
        stale = stale_sources()
        if not stale:
            return
        warnings.warn(
            f"{', '.join(stale[:3])}{' and more' if len(stale) > 3 else ''} changed after "
            "the compiled build: running the pure-Python engine (rebuild: make install)",
            RuntimeWarning,
            stacklevel=2,
        )
    sys.meta_path.insert(0, _SourceFirstFinder())


def build_of(module: ModuleType) -> str:
    """``compiled`` for an extension module, ``pure`` for one loaded from source."""
    origin = getattr(module.__spec__, "origin", None) or getattr(module, "__file__", "") or ""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return "compiled" if origin.endswith(suffixes) else "pure"


def loaded_builds() -> dict[str, str]:
    """The build of every imported module the switch decides (package inits excluded:
    they are never compiled)."""
    return {
        name: build_of(module)
        for name, module in sorted(sys.modules.items())
        if switched(name) and module is not None
    }


def compiled_available() -> list[str]:
    """Modules of :data:`PACKAGES` and :data:`MODULES` with an extension module built
    beside their source."""
    names = [
        f"{package}.{source.stem}"
        for package in PACKAGES
        for source in sorted(_TREE.joinpath(*package.split(".")).glob("*.py"))
    ]
    return [
        name
        for name in (*names, *MODULES)
        if any(
            _source_of(name).with_suffix(suffix).is_file()
            for suffix in importlib.machinery.EXTENSION_SUFFIXES
        )
    ]


install()
