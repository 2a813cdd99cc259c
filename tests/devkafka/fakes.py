"""Stand-ins for the JVM, Maven and a broker process, for the provisioner's unit tests.

They are real executables and real processes (a shell script, a Python process), so the
code under test runs its real ``subprocess`` and signal paths; only Java is absent.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from streams.devkafka.supervision import marker_arg


def fake_executable(directory: Path, name: str, script: str) -> Path:
    """An executable shell script ``directory/name`` running ``script``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    path.chmod(0o755)
    return path


def fake_java(directory: Path, version: str = "17.0.15", name: str = "java") -> Path:
    """A ``java`` whose ``-version`` names ``version`` (on stderr, as the JVM does)."""
    return fake_executable(
        directory, name, f"echo 'openjdk version \"{version}\" 2025-04-15' >&2\n"
    )


def fake_mvn(directory: Path, calls: Path, produce_version: str | None = None) -> Path:
    """An ``mvn`` that 'resolves' Kafka: it writes the jars a real resolution would into
    ``-DoutputDirectory`` for ``-Dkafka.version`` (or ``produce_version``), after half a
    second, and appends its arguments to ``calls``."""
    produce = f"version={produce_version}" if produce_version else ":"
    return fake_executable(
        directory,
        "mvn",
        f"""
        echo "$@" >> "{calls}"
        for arg in "$@"; do
          case "$arg" in
            -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}" ;;
            -Dkafka.version=*) version="${{arg#-Dkafka.version=}}" ;;
          esac
        done
        {produce}
        sleep 0.5
        touch "$out/kafka_2.13-$version.jar" "$out/kafka-clients-$version.jar" \\
              "$out/kafka_2.13-$version-test.jar" "$out/slf4j-api-2.0.17.jar"
        """,
    )


NODE_SCRIPT = """
import signal, sys, time
log = open(sys.argv[2], "a", buffering=1)
def on_term(signum, frame):
    if sys.argv[1] == "ignore-term":
        log.write("SIGTERM ignored\\n")
    else:
        log.write("SIGTERM\\n")
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
log.write("up\\n")
print("fake node up", flush=True)
while True:
    time.sleep(1)
"""


def fake_node_command(
    node_dir: Path, *, ignore_term: bool = False, touch: Path | None = None
) -> list[str]:
    """A long-running process whose command line carries the node marker, like a broker.

    It notes in ``touch`` (default ``node_dir/touched``) that it is up and each SIGTERM it
    gets; with ``ignore_term`` it stays up after one."""
    touched = touch or node_dir / "touched"
    mode = "ignore-term" if ignore_term else "obey"
    return [sys.executable, "-c", NODE_SCRIPT, mode, str(touched), marker_arg(node_dir)]


def start_fake_node(node_dir: Path, *, ignore_term: bool = False) -> subprocess.Popen[bytes]:
    """A fake node started outside the code under test (as by another relsec process)."""
    node_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        fake_node_command(node_dir, ignore_term=ignore_term), stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"fake node up\n"  # signal handlers are installed
    return proc
