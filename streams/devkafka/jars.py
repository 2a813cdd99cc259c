"""Where the Apache Kafka jars come from, first match wins.

1. ``$KAFKA_HOME/libs`` (an unpacked Apache Kafka release);
2. the cache ``$RELSEC_CACHE_DIR/kafka/<version>/libs`` (default cache dir
   ``~/.cache/relsec``), filled on first use by Maven from ``deploy/kafka/pom.xml``
   (artifact ``org.apache.kafka:kafka_2.13``) with a Maven repository in the cache
   (``$RELSEC_MAVEN_REPO`` to use another; ``$RELSEC_MVN`` names the ``mvn``);
3. when ``RELSEC_KAFKA_TARBALL_URL`` is set, the Apache release tarball at that
   address (``https://``, ``file://``), whose ``libs/`` is copied into the cache.

Provisioning is locked per version directory, so parallel processes do not race; a
version directory counts only once its ``.complete`` marker is written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.files import (
    LOG_TAIL_LINES,
    file_lock,
    open_private,
    private_dirs,
    write_private,
)
from streams.devkafka.places import cache_root, kafka_cache_dir, repo_pom_path
from streams.devkafka.progress import Log, no_log
from streams.devkafka.settings import MAVEN_REPO, MVN, POM, TARBALL_URL
from streams.settings import from_env

DEFAULT_KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
MAVEN_TIMEOUT_S = 1200.0

_KAFKA_JAR = re.compile(r"^kafka_(?P<scala>\d+\.\d+)-(?P<version>\d[\w.\-]*?)\.jar$")
_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True, slots=True)
class KafkaDistribution:
    """A directory of Apache Kafka jars and where it came from."""

    version: str
    libs_dir: Path
    source: str  # "KAFKA_HOME", "cache", "maven" or "tarball"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def kafka_version_in(libs_dir: Path) -> str | None:
    """The version of the ``kafka_<scala>-<version>.jar`` in ``libs_dir``, if there is one."""
    if not libs_dir.is_dir():
        return None
    for jar in sorted(libs_dir.iterdir()):
        match = _KAFKA_JAR.match(jar.name)
        if match and not jar.name.endswith(("-test.jar", "-sources.jar", "-javadoc.jar")):
            return match.group("version")
    return None


def _is_complete(target: Path, version: str) -> bool:
    return (target / _COMPLETE_MARKER).is_file() and kafka_version_in(target / "libs") == version


def locate_kafka(
    version: str = DEFAULT_KAFKA_VERSION,
    *,
    env: Mapping[str, str] | None = None,
    mvn: str | None = None,
    log: Log = no_log,
) -> KafkaDistribution:
    """Find or provision the Apache Kafka jars (see the module docstring for the order)."""
    e = os.environ if env is None else env
    home = e.get("KAFKA_HOME")
    if home:
        libs = Path(home).expanduser() / "libs"
        found = kafka_version_in(libs)
        if found is None:
            raise KafkaProvisionError(
                f"KAFKA_HOME={home} has no libs/kafka_{SCALA_VERSION}-<version>.jar: point it at "
                "an unpacked Apache Kafka release, or unset it to let relsec fetch the jars"
            )
        return KafkaDistribution(found, libs, "KAFKA_HOME")

    target = kafka_cache_dir(version, e)
    libs = target / "libs"
    if target.is_dir():
        private_dirs(target, top=cache_root(e), log=log)
    if _is_complete(target, version):
        return KafkaDistribution(version, libs, "cache")

    private_dirs(target, top=cache_root(e), log=log)
    with file_lock(target / ".provision.lock"):
        # Another process may have provisioned it while we waited for the lock.
        if _is_complete(target, version):
            return KafkaDistribution(version, libs, "cache")
        tarball_url = from_env(TARBALL_URL, e)
        mvn_path = mvn or from_env(MVN, e) or shutil.which("mvn", path=e.get("PATH"))
        errors: list[str] = []
        if mvn_path:
            try:
                provision_with_maven(mvn_path, version, target, e, log)
                return KafkaDistribution(version, libs, "maven")
            except KafkaProvisionError as exc:
                if not tarball_url:
                    raise
                errors.append(str(exc))
        else:
            errors.append("Maven (mvn) is not on PATH")
        if tarball_url:
            provision_from_tarball(tarball_url, version, target, log)
            return KafkaDistribution(version, libs, "tarball")
        raise KafkaProvisionError(
            f"no Apache Kafka {version} jars: {'; '.join(errors)}. Set KAFKA_HOME to an unpacked "
            "Kafka release, install Maven (it resolves org.apache.kafka:kafka_2.13 from Maven "
            "Central), or set RELSEC_KAFKA_TARBALL_URL to the Apache release tarball"
        )


def maven_command(mvn: str, pom: Path, repo: Path, version: str, output_dir: Path) -> list[str]:
    """The ``mvn`` command line that copies Kafka's runtime jars into ``output_dir``."""
    return [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"-Dmaven.repo.local={repo}",
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
        "-DincludeScope=runtime",
    ]


def provision_with_maven(
    mvn: str, version: str, target: Path, env: Mapping[str, str], log: Log = no_log
) -> None:
    """Resolve Kafka ``version`` with Maven into ``target/libs`` (raise, leaving nothing)."""
    configured_pom: str | None = from_env(POM, env)
    pom = Path(configured_pom or repo_pom_path())
    if not pom.is_file():
        raise KafkaProvisionError(
            f"Maven pom {pom} not found (relsec installed without its source tree?): set "
            "RELSEC_KAFKA_POM to deploy/kafka/pom.xml, or KAFKA_HOME to a Kafka release"
        )
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target))
    configured_repo: str | None = from_env(MAVEN_REPO, env)
    repo = Path(configured_repo or cache_root(env) / "m2")
    cmd = maven_command(mvn, pom, repo, version, staging)
    log(f"resolving Apache Kafka {version} (org.apache.kafka:kafka_{SCALA_VERSION}) with Maven ...")
    started = time.monotonic()
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaProvisionError(
            f"Maven could not resolve Apache Kafka {version}: {exc}"
        ) from None
    if done.returncode != 0 or kafka_version_in(staging) != version:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-LOG_TAIL_LINES:])
        raise KafkaProvisionError(
            f"Maven could not resolve Apache Kafka {version} (exit {done.returncode}):\n{tail}"
        )
    _install_libs(staging, target)
    elapsed_s = time.monotonic() - started
    log(f"Apache Kafka {version} jars ready in {target / 'libs'} ({elapsed_s:.1f} s)")


def provision_from_tarball(url: str, version: str, target: Path, log: Log = no_log) -> None:
    """Copy the ``libs/*.jar`` of the release tarball at ``url`` into ``target/libs``."""
    log(f"downloading Apache Kafka from {url} ...")
    archive = target / "kafka.tgz.part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open_private(archive) as out:
            shutil.copyfileobj(response, out)
    except (OSError, ValueError) as exc:
        archive.unlink(missing_ok=True)
        raise KafkaProvisionError(f"cannot download the Kafka tarball {url}: {exc}") from None
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target))
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and len(parts) >= 2 and parts[-2] == "libs":
                    name = Path(member.name).name
                    if not name.endswith(".jar") or "/" in name or name.startswith("."):
                        continue
                    source = tar.extractfile(member)
                    if source is None:
                        continue
                    with source, open_private(staging / name) as out:
                        shutil.copyfileobj(source, out)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaProvisionError(f"cannot unpack the Kafka tarball {url}: {exc}") from None
    finally:
        archive.unlink(missing_ok=True)
    found = kafka_version_in(staging)
    if found != version:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaProvisionError(
            f"the tarball {url} holds Kafka {found or 'nothing recognisable'}, not {version}"
        )
    _install_libs(staging, target)


def _install_libs(staging: Path, target: Path) -> None:
    libs = target / "libs"
    if libs.exists():
        shutil.rmtree(libs)
    staging.rename(libs)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_private(target / _COMPLETE_MARKER, stamp + "\n")
