"""Which build of the engine, the model and the worker's compiled modules this test run
uses, asserted.

``make test`` runs the engine, model, scenario and worker-core tests twice: against the
compiled modules and against the pure-Python ones (``RELSEC_PURE_PYTHON=1``), and says in
``RELSEC_EXPECT_BUILD`` which one each run must load. Without that variable (a plain
``pytest``) the test still checks that one process never mixes the two builds.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import agents.engine  # imports every compiled module of both packages
import agents.model.events  # noqa: F401
from agents.model import _pure

for _name in _pure.MODULES:  # and the compiled modules of other packages
    importlib.import_module(_name)

# Modules mypyc never compiles (setup.py's NOT_COMPILED): they are always pure.
NEVER_COMPILED = {"agents.model._pure", "agents.model.records"}


def builds() -> dict[str, str]:
    return {
        name: build for name, build in _pure.loaded_builds().items() if name not in NEVER_COMPILED
    }


def test_one_build_per_process() -> None:
    loaded = builds()
    assert "agents.engine.core" in loaded and "agents.model.events" in loaded
    assert set(_pure.MODULES) <= set(loaded)
    assert len(set(loaded.values())) == 1, loaded


def test_a_compiled_build_compiled_every_module_the_switch_decides() -> None:
    available = set(_pure.compiled_available())
    if not available:  # a pure install (no compiler): nothing to compare
        assert builds()["agents.engine.core"] == "pure"
        return
    tree = Path(_pure.__file__).resolve().parents[2]
    expected = set(_pure.MODULES) | {
        f"{package}.{source.stem}"
        for package in _pure.PACKAGES
        for source in tree.joinpath(*package.split(".")).glob("*.py")
        if source.stem != "__init__"
    }
    assert available == expected - NEVER_COMPILED


def test_the_build_make_test_asked_for_is_the_one_loaded() -> None:
    expected = os.environ.get("RELSEC_EXPECT_BUILD")
    if expected is None:
        expected = "pure" if _pure.pure_requested() or not _pure.compiled_available() else None
    loaded = builds()
    if expected is None:  # compiled modules exist: loaded unless a source is newer
        expected = "pure" if _pure.stale_sources() else "compiled"
    assert set(loaded.values()) == {expected}, loaded


def test_the_compiled_engine_has_no_python_function_where_a_compiled_one_was_built() -> None:
    # A compiled function is a builtin; a pure one has Python bytecode.
    from agents.engine.core import Engine

    compiled = builds()["agents.engine.core"] == "compiled"
    assert hasattr(Engine.process, "__code__") is not compiled
