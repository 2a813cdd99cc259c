"""Class-data archives: a broker maps the classes an earlier broker loaded.

Half of a broker's start-up is the JVM loading and verifying Kafka's classes. Node 0 of
a cluster started without an archive dumps the classes it loaded when it exits cleanly
(``-XX:ArchiveClassesAtExit``, into a ``.part`` file of its own); later starts map that
archive (``-XX:SharedArchiveFile``). A killed node's partial dump is discarded. The
archive is keyed by the java build and the jars, and kept in the cache
(``<cache>/cds/kafka-<version>-<key>.jsa``); ``RELSEC_KAFKA_CDS=0`` turns this off.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from streams.devkafka.files import private_dirs
from streams.devkafka.java import java_version_text
from streams.devkafka.places import cds_dir
from streams.devkafka.settings import CDS
from streams.settings import from_env

DUMPING_NODE = 0


def cds_enabled(env: Mapping[str, str]) -> bool:
    """False when ``RELSEC_KAFKA_CDS=0``."""
    return (from_env(CDS, env) or CDS.default) != "0"


def archive_path(java: str, libs_dir: Path, version: str, env: Mapping[str, str]) -> Path:
    """The archive for this java build and this set of jars."""
    jars = sorted(p.name for p in libs_dir.glob("*.jar")) if libs_dir.is_dir() else []
    key_text = "\n".join([os.path.realpath(java), java_version_text(java), str(libs_dir), *jars])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    return cds_dir(env) / f"kafka-{version}-{key}.jsa"


def part_path(archive: Path, node_dir: Path) -> Path:
    """Where the node in ``node_dir`` dumps its classes before the dump is trusted."""
    owner = hashlib.sha256(str(node_dir).encode()).hexdigest()[:12]
    return archive.with_name(f"{archive.name}.{owner}.part")


def archive_jvm_args(
    archive: Path, node_index: int, node_dir: Path, *, cache_top: Path | None = None
) -> list[str]:
    """Map ``archive`` when it exists; else let node 0 dump one; the others go without.

    The archive's directory is made private (0700) from ``cache_top`` down: a JVM maps
    the archive as code, so nobody else may write it.
    """
    private_dirs(archive.parent, top=cache_top)
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto"]
    if node_index != DUMPING_NODE:
        return []
    part = part_path(archive, node_dir)
    part.unlink(missing_ok=True)
    return [f"-XX:ArchiveClassesAtExit={part}"]


def settle_after_stop(archive: Path, node_index: int, node_dir: Path, clean: bool) -> None:
    """Keep the dump of a node that exited cleanly as the archive; drop a killed one's."""
    if node_index != DUMPING_NODE:
        return
    part = part_path(archive, node_dir)
    if not part.is_file():
        return
    if clean and part.stat().st_size > 0 and not archive.exists():
        os.replace(part, archive)
    else:
        part.unlink(missing_ok=True)
