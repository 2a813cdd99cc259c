"""Java discovery and version check: Apache Kafka 4 needs Java 17 or newer.

The java executable is, first match wins, the ``java`` argument, ``$RELSEC_JAVA``,
``$JAVA_HOME/bin/java``, then ``java`` on ``PATH``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.settings import JAVA
from streams.settings import from_env

MIN_JAVA_MAJOR = 17

_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')


def find_java(java: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The java executable: ``java`` argument, ``$RELSEC_JAVA``, ``$JAVA_HOME/bin/java``, PATH."""
    e = os.environ if env is None else env
    candidate = java or from_env(JAVA, e)
    if not candidate and e.get("JAVA_HOME"):
        candidate = str(Path(e["JAVA_HOME"]) / "bin" / "java")
    if not candidate:
        candidate = shutil.which("java", path=e.get("PATH"))
        if candidate is None:
            raise KafkaProvisionError(
                f"no java found on PATH: Apache Kafka needs Java {MIN_JAVA_MAJOR} or newer "
                "(install a JDK/JRE, or set JAVA_HOME or RELSEC_JAVA)"
            )
    path = Path(candidate)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise KafkaProvisionError(
            f"java {candidate!r} does not exist or is not executable: Apache Kafka needs "
            f"Java {MIN_JAVA_MAJOR} or newer (set JAVA_HOME or RELSEC_JAVA)"
        )
    return str(path)


@functools.lru_cache(maxsize=16)
def java_version_text(java: str) -> str:
    """What ``java -version`` prints (only successful answers are remembered)."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaProvisionError(f"cannot run {java} -version: {exc}") from None
    text = done.stderr + done.stdout
    if done.returncode != 0 or _JAVA_VERSION.search(text) is None:
        raise KafkaProvisionError(
            f"{java} -version failed (exit {done.returncode}): {text.strip()[:300]!r}"
        )
    return text


def parse_java_major(version_text: str) -> int:
    """The feature release named in ``java -version`` output (8 for ``1.8.0_x``)."""
    match = _JAVA_VERSION.search(version_text)
    if match is None:
        raise KafkaProvisionError(f"no Java version in {version_text.strip()[:300]!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def java_major_version(java: str) -> int:
    """The feature release of ``java`` (8 for ``1.8.0_x``, 17 for ``17.0.15``)."""
    return parse_java_major(java_version_text(java))


def check_java(java: str) -> int:
    """Raise unless ``java`` is at least Java 17; return its major version."""
    major = java_major_version(java)
    if major < MIN_JAVA_MAJOR:
        raise KafkaProvisionError(
            f"{java} is Java {major}; Apache Kafka 4 needs Java {MIN_JAVA_MAJOR} or newer "
            "(set JAVA_HOME or RELSEC_JAVA to a newer JDK)"
        )
    return major
