"""Build script: compiles the engine and the model with mypyc when it can.

``pip install .`` (and ``make install``) builds ``agents/engine`` and ``agents/model`` as C
extensions with mypyc, as black and mypy ship themselves: the same ``mypy --strict``
sources, 2-4x faster. The pure-Python modules stay beside them and keep working:

* ``RELSEC_PURE_PYTHON=1`` at build time builds no extension (a pure install);
* without mypyc or a working C compiler, the build says so and installs pure Python;
* ``RELSEC_PURE_PYTHON=1`` at run time loads the ``.py`` files even where extensions
  were built (``agents/model/_pure.py``), so one checkout tests both.

Everything else about the package is in ``pyproject.toml``.
"""

from __future__ import annotations

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


def compiled_sources() -> list[str]:
    """The modules mypyc compiles, as paths relative to this file."""
    out: list[str] = []
    for package in ("agents/model", "agents/engine"):
        for path in sorted((HERE / package).glob("*.py")):
            if path.name not in NOT_COMPILED:
                out.append(f"{package}/{path.name}")
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
        compiled_sources(),
        opt_level="3",
        group_name=GROUP_NAME,
    )
    return modules


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
