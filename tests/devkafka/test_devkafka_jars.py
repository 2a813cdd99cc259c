"""Jar resolution: KAFKA_HOME, Maven (a fake ``mvn``), a tarball; locking, the cache,
nothing left behind by a failure, and the cache private to the user."""

from __future__ import annotations

import io
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.jars import kafka_version_in, locate_kafka, maven_command
from streams.devkafka.places import repo_pom_path

from .fakes import fake_executable, fake_mvn

VERSION = "9.9.9"


def test_kafka_version_in_reads_the_broker_jar_only(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    assert kafka_version_in(libs) is None
    for name in (
        "kafka-clients-4.4.0.jar",
        "kafka_2.13-4.4.0-test.jar",
        "kafka_2.13-4.4.0-sources.jar",
    ):
        (libs / name).touch()
    assert kafka_version_in(libs) is None
    (libs / "kafka_2.13-4.4.0.jar").touch()
    assert kafka_version_in(libs) == "4.4.0"
    assert kafka_version_in(tmp_path / "missing") is None


def test_kafka_home_wins_and_is_not_touched(tmp_path: Path) -> None:
    home = tmp_path / "kafka_2.13-3.9.1"
    (home / "libs").mkdir(parents=True)
    (home / "libs" / "kafka_2.13-3.9.1.jar").touch()
    home.chmod(0o755)
    dist = locate_kafka(
        "4.4.0", env={"KAFKA_HOME": str(home), "RELSEC_CACHE_DIR": str(tmp_path / "c")}
    )
    assert (dist.version, dist.source, dist.libs_dir, dist.major) == (
        "3.9.1",
        "KAFKA_HOME",
        home / "libs",
        3,
    )
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    assert not (tmp_path / "c").exists()  # nothing provisioned


def test_maven_command_line() -> None:
    cmd = maven_command("mvn", Path("/p/pom.xml"), Path("/c/m2"), "4.4.0", Path("/c/out"))
    assert cmd == [
        "mvn", "-B", "-q", "-f", "/p/pom.xml", "-Dmaven.repo.local=/c/m2",
        "-Dkafka.version=4.4.0", "dependency:copy-dependencies",
        "-DoutputDirectory=/c/out", "-DincludeScope=runtime",
    ]  # fmt: skip


def test_maven_resolves_once_into_a_private_cache(tmp_path: Path) -> None:
    calls = tmp_path / "mvn-calls"
    mvn = fake_mvn(tmp_path / "bin", calls)
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o755)  # as an older relsec left it
    env = {"RELSEC_CACHE_DIR": str(cache), "RELSEC_MVN": str(mvn), "PATH": "/usr/bin:/bin"}
    messages: list[str] = []
    dist = locate_kafka(VERSION, env=env, log=messages.append)
    assert dist.source == "maven" and dist.version == VERSION
    assert dist.libs_dir == cache / "kafka" / VERSION / "libs"
    assert f"kafka-clients-{VERSION}.jar" in {p.name for p in dist.libs_dir.iterdir()}
    args = calls.read_text().split()
    assert f"-Dmaven.repo.local={cache / 'm2'}" in args
    assert str(repo_pom_path()) in args and repo_pom_path().is_file()
    assert f"tightened {cache} from 0755 to 0700" in messages
    assert any(m.startswith(f"resolving Apache Kafka {VERSION}") for m in messages)
    for directory in (cache, cache / "kafka", cache / "kafka" / VERSION, dist.libs_dir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE((cache / "kafka" / VERSION / ".complete").stat().st_mode) == 0o600

    again = locate_kafka(VERSION, env=env)
    assert again.source == "cache" and again.libs_dir == dist.libs_dir
    assert len(calls.read_text().splitlines()) == 1


def test_parallel_first_uses_resolve_once(tmp_path: Path) -> None:
    calls = tmp_path / "mvn-calls"
    env = {
        "RELSEC_CACHE_DIR": str(tmp_path / "cache"),
        "RELSEC_MVN": str(fake_mvn(tmp_path / "bin", calls)),
        "RELSEC_MAVEN_REPO": str(tmp_path / "repo"),
    }
    results: list[str] = []

    def provision() -> None:
        results.append(locate_kafka(VERSION, env=env).source)

    threads = [threading.Thread(target=provision) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["cache", "cache", "maven"]
    assert len(calls.read_text().splitlines()) == 1
    assert f"-Dmaven.repo.local={tmp_path / 'repo'}" in calls.read_text()


def test_maven_answering_the_wrong_version_leaves_nothing(tmp_path: Path) -> None:
    mvn = fake_mvn(tmp_path / "bin", tmp_path / "calls", produce_version="1.0.0")
    env = {"RELSEC_CACHE_DIR": str(tmp_path / "cache"), "RELSEC_MVN": str(mvn)}
    with pytest.raises(
        KafkaProvisionError, match=rf"Maven could not resolve Apache Kafka {VERSION} \(exit 0\)"
    ):
        locate_kafka(VERSION, env=env)
    target = tmp_path / "cache" / "kafka" / VERSION
    assert sorted(p.name for p in target.iterdir()) == [".provision.lock"]  # no libs, no staging


def test_missing_pom_names_the_setting(tmp_path: Path) -> None:
    env = {
        "RELSEC_CACHE_DIR": str(tmp_path / "cache"),
        "RELSEC_MVN": str(fake_mvn(tmp_path / "bin", tmp_path / "calls")),
        "RELSEC_KAFKA_POM": str(tmp_path / "nowhere" / "pom.xml"),
    }
    with pytest.raises(
        KafkaProvisionError, match=r"pom .*nowhere/pom.xml not found.*RELSEC_KAFKA_POM"
    ):
        locate_kafka(VERSION, env=env)


def _tarball(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def test_tarball_copies_libs_jars_only_and_nothing_outside(tmp_path: Path) -> None:
    top = f"kafka_2.13-{VERSION}"
    archive = _tarball(
        tmp_path / "kafka.tgz",
        {
            f"{top}/libs/kafka_2.13-{VERSION}.jar": b"broker",
            f"{top}/libs/kafka-clients-{VERSION}.jar": b"clients",
            f"{top}/libs/.hidden.jar": b"x",
            f"{top}/libs/README.txt": b"x",
            f"{top}/bin/kafka-server-start.sh": b"x",
            f"{top}/libs/../../escaped.jar": b"x",
        },
        symlinks={f"{top}/libs/link.jar": "/etc/passwd"},
    )
    failing_mvn = fake_executable(tmp_path / "bin", "mvn", "echo '[ERROR] offline' >&2; exit 1\n")
    env = {
        "RELSEC_CACHE_DIR": str(tmp_path / "cache"),
        "RELSEC_MVN": str(failing_mvn),  # Maven fails: the tarball is the fallback
        "RELSEC_KAFKA_TARBALL_URL": archive.as_uri(),
    }
    dist = locate_kafka(VERSION, env=env)
    assert dist.source == "tarball"
    assert sorted(p.name for p in dist.libs_dir.iterdir()) == [
        f"kafka-clients-{VERSION}.jar",
        f"kafka_2.13-{VERSION}.jar",
    ]
    assert (dist.libs_dir / f"kafka_2.13-{VERSION}.jar").read_bytes() == b"broker"
    assert stat.S_IMODE((dist.libs_dir / f"kafka_2.13-{VERSION}.jar").stat().st_mode) == 0o600
    assert not list(tmp_path.rglob("escaped.jar"))
    assert not (dist.libs_dir.parent / "kafka.tgz.part").exists()


def test_tarball_failures_say_what_and_leave_nothing(tmp_path: Path) -> None:
    env = {"RELSEC_CACHE_DIR": str(tmp_path / "cache"), "PATH": str(tmp_path / "empty")}
    target = tmp_path / "cache" / "kafka" / VERSION
    with pytest.raises(KafkaProvisionError, match=r"Maven \(mvn\) is not on PATH.*KAFKA_HOME"):
        locate_kafka(VERSION, env=env)

    missing = (tmp_path / "missing.tgz").as_uri()
    with pytest.raises(KafkaProvisionError, match="cannot download the Kafka tarball"):
        locate_kafka(VERSION, env={**env, "RELSEC_KAFKA_TARBALL_URL": missing})

    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(b"this is not a tarball")
    with pytest.raises(KafkaProvisionError, match="cannot unpack the Kafka tarball"):
        locate_kafka(VERSION, env={**env, "RELSEC_KAFKA_TARBALL_URL": garbage.as_uri()})

    other = _tarball(tmp_path / "old.tgz", {"kafka/libs/kafka_2.13-1.0.0.jar": b"old"})
    with pytest.raises(KafkaProvisionError, match=rf"holds Kafka 1.0.0, not {VERSION}"):
        locate_kafka(VERSION, env={**env, "RELSEC_KAFKA_TARBALL_URL": other.as_uri()})
    assert sorted(p.name for p in target.iterdir()) == [".provision.lock"]
