"""Which build of the engine and model this test run uses, asserted.

``make test`` runs the engine, model and scenario tests twice: against the compiled
modules and against the pure-Python ones (``RELSEC_PURE_PYTHON=1``), and says in
``RELSEC_EXPECT_BUILD`` which one each run must load. Without that variable (a plain
``pytest``) the test still checks that one process never mixes the two builds.
"""

from __future__ import annotations

import os

import agents.engine  # imports every compiled module of both packages
import agents.model.events  # noqa: F401
from agents.model import _pure

# Modules mypyc never compiles (setup.py's NOT_COMPILED): they are always pure.
NEVER_COMPILED = {"agents.model._pure", "agents.model.records"}


def builds() -> dict[str, str]:
    return {
        name: build for name, build in _pure.loaded_builds().items() if name not in NEVER_COMPILED
    }


def test_one_build_per_process() -> None:
    loaded = builds()
    assert "agents.engine.core" in loaded and "agents.model.events" in loaded
    assert len(set(loaded.values())) == 1, loaded


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
