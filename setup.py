"""Build script: compiles the engine, the model and the worker's per-record modules with
mypyc when it can.

``pip install .`` (and ``make install``) builds ``agents/engine``, ``agents/model`` and the
modules listed in ``MODULES`` of ``agents/model/_pure.py`` (the worker's per-record path)
as C extensions with mypyc, as black and mypy ship themselves: the same ``mypy --strict``
sources, 2-4x faster. The pure-Python modules stay beside them and keep working:

* ``RELSEC_PURE_PYTHON=1`` at build time builds no extension (a pure install);
* without mypyc or a working C compiler, the build says so and installs pure Python;
* ``RELSEC_PURE_PYTHON=1`` at run time loads the ``.py`` files even where extensions
  were built (``agents/model/_pure.py``), so one checkout tests both.

Everything else about the package is in ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
PURE_ENV = "RELSEC_PURE_PYTHON"
GROUP_NAME = "agents.native"
"""The shared library mypyc puts the compiled code of every module in: inside the
``agents`` package (``agents/native__mypyc…so``), so an editable install finds it."""

# Package inits are not compiled: they install the run-time switch before anything else
# of the package is imported. ``_pure.py`` is the switch; ``records.py`` holds msgspec
# Structs, which mypyc cannot compile (they are a C type with their own metaclass).
NOT_COMPILED = {"__init__.py", "_pure.py", "records.py"}


SWITCH = HERE / "agents" / "model" / "_pure.py"
"""The run-time switch, which declares what is compiled (``PACKAGES``, ``MODULES``): read
here as literals, not imported (the build runs before the package's dependencies exist)."""


def switch_lists() -> dict[str, tuple[str, ...]]:
    """``PACKAGES`` and ``MODULES`` as the switch declares them."""
    found: dict[str, tuple[str, ...]] = {}
    for node in ast.parse(SWITCH.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id in ("PACKAGES", "MODULES")
            and node.value is not None
        ):
            found[node.target.id] = tuple(ast.literal_eval(node.value))
    return found


def compiled_sources() -> list[str]:
    """The modules mypyc compiles, as paths relative to this file."""
    lists = switch_lists()
    out: list[str] = []
    for package in lists["PACKAGES"]:
        folder = package.replace(".", "/")
        for path in sorted((HERE / folder).glob("*.py")):
            if path.name not in NOT_COMPILED:
                out.append(f"{folder}/{path.name}")
    out.extend(module.replace(".", "/") + ".py" for module in lists["MODULES"])
    return out


def _warn(message: str) -> None:
    print(f"relsec setup: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Build the mypyc extensions, or none of them: a failed compile (no C compiler,
    missing headers) leaves a pure-Python install instead of a broken one."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, DistutilsExecError, PlatformError, OSError
            _warn(f"the compiled engine could not be built ({exc}); installing pure Python")
            self._remove_outputs()

    def _remove_outputs(self) -> None:
        for output in self.get_outputs():
            Path(output).unlink(missing_ok=True)
            if self.inplace:
                Path(HERE, Path(output).relative_to(Path(self.build_lib))).unlink(
                    missing_ok=True
                )
        self.extensions = []


def extensions() -> list[object]:
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        _warn(f"{PURE_ENV} is set: installing pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not available: installing pure Python")
        return []
    modules: list[object] = mypycify(
        [*BUILD_TYPE_CHECK, *compiled_sources()],
        opt_level="3",
        group_name=GROUP_NAME,
    )
    return modules


BUILD_TYPE_CHECK = [
    "--ignore-missing-imports",
    "--allow-subclassing-any",
    "--allow-untyped-decorators",
    "--no-warn-unused-ignores",
]
"""mypy options of the build's own type check. The worker's compiled modules import the
runtime's libraries (fastavro, confluent-kafka, prometheus-client, faust), which are not
installed where the package is built: there they are typed as ``Any``, which compiles to
the same dynamic calls that reach them anyway. ``make typecheck`` (``mypy --strict``,
with the libraries installed) is where the types are checked."""


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
