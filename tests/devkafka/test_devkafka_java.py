"""Java discovery and version check, with fake ``java`` executables."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.java import (
    check_java,
    find_java,
    java_major_version,
    java_version_text,
    parse_java_major,
)

from .fakes import fake_executable, fake_java


@pytest.mark.parametrize(
    ("printed", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_402"', 8),
        ('openjdk version "11.0.22" 2024-01-16 LTS', 11),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "25-ea" 2025-09-16', 25),
        ('Picked up JAVA_TOOL_OPTIONS: -Xmx1g\nopenjdk version "21.0.4" 2024-07-16', 21),
    ],
)
def test_parse_java_major(printed: str, major: int) -> None:
    assert parse_java_major(printed) == major


def test_parse_java_major_without_a_version_says_what_it_read() -> None:
    with pytest.raises(KafkaProvisionError, match="no Java version in 'Error: not a JVM'"):
        parse_java_major("Error: not a JVM\n")


def test_find_java_order_argument_relsec_java_java_home_path(tmp_path: Path) -> None:
    argument = fake_java(tmp_path / "arg")
    relsec = fake_java(tmp_path / "relsec")
    home = tmp_path / "jdk"
    from_home = fake_java(home / "bin")
    on_path = fake_java(tmp_path / "path")
    env = {"RELSEC_JAVA": str(relsec), "JAVA_HOME": str(home), "PATH": str(on_path.parent)}
    assert find_java(str(argument), env) == str(argument)
    assert find_java(None, env) == str(relsec)
    assert find_java(None, {k: v for k, v in env.items() if k != "RELSEC_JAVA"}) == str(from_home)
    assert find_java(None, {"PATH": str(on_path.parent)}) == str(on_path)


def test_find_java_refuses_what_cannot_run(tmp_path: Path) -> None:
    not_executable = tmp_path / "java"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(KafkaProvisionError, match="does not exist or is not executable"):
        find_java(str(not_executable), {})
    with pytest.raises(KafkaProvisionError, match="does not exist"):
        find_java(None, {"JAVA_HOME": str(tmp_path / "no-jdk")})
    with pytest.raises(KafkaProvisionError, match="no java found on PATH"):
        find_java(None, {"PATH": str(tmp_path / "empty")})


def test_check_java_accepts_17_and_newer_refuses_older(tmp_path: Path) -> None:
    assert check_java(str(fake_java(tmp_path, "17.0.15", "java17"))) == 17
    assert check_java(str(fake_java(tmp_path, "21.0.4", "java21"))) == 21
    with pytest.raises(KafkaProvisionError, match="is Java 11; Apache Kafka 4 needs Java 17"):
        check_java(str(fake_java(tmp_path, "11.0.22", "java11")))
    with pytest.raises(KafkaProvisionError, match="is Java 8"):
        check_java(str(fake_java(tmp_path, "1.8.0_402", "java8")))


def test_a_failed_version_answer_is_not_remembered(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    java = fake_executable(
        tmp_path,
        "java",
        f"""
        if [ -e "{ready}" ]; then echo 'openjdk version "17.0.2"' >&2; exit 0; fi
        echo 'Error occurred during initialization of VM' >&2; exit 1
        """,
    )
    with pytest.raises(KafkaProvisionError, match=r"-version failed \(exit 1\).*initialization"):
        java_version_text(str(java))
    ready.touch()
    assert java_major_version(str(java)) == 17  # asked again, not the cached failure
