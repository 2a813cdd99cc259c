"""Class-data archives: the key, which node dumps, which dump is kept."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams.devkafka.cds import (
    archive_jvm_args,
    archive_path,
    cds_enabled,
    part_path,
    settle_after_stop,
)

from .fakes import fake_java


@pytest.fixture
def libs(tmp_path: Path) -> Path:
    directory = tmp_path / "libs"
    directory.mkdir()
    for name in ("kafka_2.13-4.4.0.jar", "kafka-clients-4.4.0.jar"):
        (directory / name).touch()
    return directory


def test_cds_switch() -> None:
    assert cds_enabled({})
    assert cds_enabled({"RELSEC_KAFKA_CDS": "1"})
    assert not cds_enabled({"RELSEC_KAFKA_CDS": "0"})


def test_archive_key_follows_java_build_and_jars(tmp_path: Path, libs: Path) -> None:
    env = {"RELSEC_CACHE_DIR": str(tmp_path / "cache")}
    java17 = str(fake_java(tmp_path / "a", "17.0.15"))
    java21 = str(fake_java(tmp_path / "b", "21.0.4"))
    archive = archive_path(java17, libs, "4.4.0", env)
    assert archive.parent == tmp_path / "cache" / "cds"
    assert archive.name.startswith("kafka-4.4.0-") and archive.suffix == ".jsa"
    assert archive_path(java17, libs, "4.4.0", env) == archive  # stable
    assert archive_path(java21, libs, "4.4.0", env) != archive
    (libs / "extra-1.0.jar").touch()
    assert archive_path(java17, libs, "4.4.0", env) != archive


def test_part_files_are_per_node_dir(tmp_path: Path) -> None:
    archive = tmp_path / "cds" / "kafka-4.4.0-abc.jsa"
    one = part_path(archive, tmp_path / "a" / "node-0")
    two = part_path(archive, tmp_path / "b" / "node-0")
    assert one != two
    assert one.parent == archive.parent and one.name.startswith(archive.name + ".")
    assert one.suffix == ".part"


def test_node_zero_dumps_when_there_is_no_archive(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o755)
    archive = cache / "cds" / "kafka-4.4.0-abc.jsa"
    node0, node1 = tmp_path / "s" / "node-0", tmp_path / "s" / "node-1"
    stale = part_path(archive, node0)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a dump from a killed run")
    assert archive_jvm_args(archive, 0, node0, cache_top=cache) == [
        f"-XX:ArchiveClassesAtExit={stale}"
    ]
    assert not stale.exists()  # the JVM starts a fresh dump
    assert archive_jvm_args(archive, 1, node1, cache_top=cache) == []
    assert stat.S_IMODE((cache / "cds").stat().st_mode) == 0o700  # a JVM maps it as code
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700

    archive.write_bytes(b"archive")
    expected = [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto"]
    assert archive_jvm_args(archive, 0, node0, cache_top=cache) == expected
    assert archive_jvm_args(archive, 1, node1, cache_top=cache) == expected


@pytest.mark.parametrize(
    ("clean", "dump", "archive_exists", "kept"),
    [
        (True, b"classes", False, True),  # a clean exit: the dump becomes the archive
        (False, b"classes", False, False),  # killed: the dump may be torn
        (True, b"", False, False),  # nothing dumped
        (True, b"classes", True, False),  # another node won the race: keep theirs
    ],
)
def test_settle_after_stop(
    tmp_path: Path, clean: bool, dump: bytes, archive_exists: bool, kept: bool
) -> None:
    archive = tmp_path / "cds" / "kafka-4.4.0-abc.jsa"
    archive.parent.mkdir()
    node0 = tmp_path / "node-0"
    part = part_path(archive, node0)
    part.write_bytes(dump)
    if archive_exists:
        archive.write_bytes(b"theirs")
    settle_after_stop(archive, 0, node0, clean)
    assert not part.exists()
    if kept:
        assert archive.read_bytes() == b"classes"
    elif archive_exists:
        assert archive.read_bytes() == b"theirs"
    else:
        assert not archive.exists()


def test_only_node_zero_settles(tmp_path: Path) -> None:
    archive = tmp_path / "kafka-4.4.0-abc.jsa"
    node1 = tmp_path / "node-1"
    part = part_path(archive, node1)
    part.write_bytes(b"classes")
    settle_after_stop(archive, 1, node1, clean=True)
    assert part.exists() and not archive.exists()
