"""Private state and cache files: 0700 directories, 0600 files whatever the umask,
wider ones tightened, other users' directories refused; locks and log tails."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.devkafka.errors import KafkaProvisionError, PrivateDirError
from streams.devkafka.files import (
    file_lock,
    make_parents,
    open_private,
    private_dirs,
    tail,
    tighten_tree,
    write_private,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


@settings(max_examples=60, deadline=None)
@given(mask=st.integers(min_value=0, max_value=0o777))
def test_created_directories_and_files_are_private_whatever_the_umask(mask: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "cache"
        target = root / "run" / "local" / "node-0"
        with umask(mask):
            private_dirs(target, top=root)
            write_private(target / "server.properties", "listeners=PLAINTEXT://127.0.0.1:1\n")
            with open_private(target / "stdout.log", append=True) as out:
                out.write(b"line\n")
            with open_private(target / "format.log") as out:
                out.write(b"formatted\n")
        for directory in (root, root / "run", root / "run" / "local", target):
            assert mode_of(directory) == 0o700, (oct(mask), directory)
        for name in ("server.properties", "stdout.log", "format.log"):
            assert mode_of(target / name) == 0o600, (oct(mask), name)
        assert (target / "stdout.log").read_bytes() == b"line\n"


def test_existing_wider_directories_are_tightened_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / "run").mkdir(parents=True)
    root.chmod(0o755)
    (root / "run").chmod(0o777)
    messages: list[str] = []
    private_dirs(root / "run" / "local", top=root, log=messages.append)
    assert mode_of(root) == mode_of(root / "run") == mode_of(root / "run" / "local") == 0o700
    assert messages == [
        f"tightened {root} from 0755 to 0700",
        f"tightened {root / 'run'} from 0777 to 0700",
    ]
    messages.clear()
    private_dirs(root / "run" / "local", top=root, log=messages.append)
    assert messages == []  # already private: nothing to say


def test_owner_only_but_odd_mode_is_set_without_a_warning(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    directory.chmod(0o500)
    messages: list[str] = []
    private_dirs(directory, log=messages.append)
    assert mode_of(directory) == 0o700
    assert messages == []


def test_directories_above_top_are_created_private_but_never_changed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    private_dirs(shared / "new" / "deeper" / "state")  # top = the state dir itself
    assert mode_of(shared) == 0o755
    assert mode_of(shared / "new") == mode_of(shared / "new" / "deeper") == 0o700
    make_parents(shared / "other" / "state")
    assert mode_of(shared / "other") == 0o700
    assert not (shared / "other" / "state").exists()


def test_a_path_outside_top_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not inside"):
        private_dirs(tmp_path / "a", top=tmp_path / "b")


def test_a_file_in_place_of_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("not a directory\n")
    with pytest.raises(PrivateDirError, match="is not a directory") as info:
        private_dirs(tmp_path / "cache" / "run", top=tmp_path / "cache")
    assert info.value.path == str(tmp_path / "cache")
    assert isinstance(info.value, KafkaProvisionError)


def test_another_users_directory_is_refused_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    directory.chmod(0o755)
    owner = directory.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(PrivateDirError, match=rf"belongs to uid {owner}, not to you") as info:
        private_dirs(directory)
    assert info.value.path == str(directory)
    assert mode_of(directory) == 0o755


def test_write_private_replaces_atomically_and_tightens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cluster.json"
    target.write_text("old\n")
    target.chmod(0o644)
    write_private(target, "new\n")
    assert target.read_text() == "new\n"
    assert mode_of(target) == 0o600

    def failing_replace(_source: object, _destination: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write_private(target, "newer\n")
    assert target.read_text() == "new\n"  # the old content survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.json"]  # no temp left


def test_open_private_appends_and_tightens_an_existing_file(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_bytes(b"first\n")
    log.chmod(0o644)
    with open_private(log, append=True) as out:
        out.write(b"second\n")
    assert log.read_bytes() == b"first\nsecond\n"
    assert mode_of(log) == 0o600
    with open_private(log) as out:
        out.write(b"truncated\n")
    assert log.read_bytes() == b"truncated\n"


def test_tighten_tree_takes_group_and_other_off_everything_but_symlinks(tmp_path: Path) -> None:
    state = tmp_path / "state"
    data = state / "node-0" / "data" / "topic-0"
    data.mkdir(parents=True)
    (data / "00000000000000000000.log").write_bytes(b"records")
    (state / "node-0" / "server.properties").write_text("x=1\n")
    script = state / "run.sh"
    script.write_text("#!/bin/sh\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours\n")
    (state / "link").symlink_to(outside)
    for path in [state, *state.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    script.chmod(0o755)
    outside.chmod(0o644)
    messages: list[str] = []
    count = tighten_tree(state, messages.append)
    assert count == 6  # node-0, data, topic-0, the segment, server.properties, run.sh
    assert mode_of(data) == mode_of(state / "node-0") == 0o700
    assert mode_of(data / "00000000000000000000.log") == 0o600
    assert mode_of(script) == 0o700  # owner's execute bit kept
    assert mode_of(outside) == 0o644  # a link's target is not ours to change
    assert messages == [f"tightened 6 file(s) and directories under {state} to owner-only"]
    assert tighten_tree(state, messages.append) == 0


def test_lock_file_is_private_and_refuses_a_symlink(tmp_path: Path) -> None:
    with umask(0), file_lock(tmp_path / ".local.lock"):
        pass
    assert mode_of(tmp_path / ".local.lock") == 0o600
    (tmp_path / ".evil.lock").symlink_to(tmp_path / "target")
    lock = file_lock(tmp_path / ".evil.lock")
    with pytest.raises(KafkaProvisionError, match="cannot open the lock file"):
        lock.__enter__()
    assert not (tmp_path / "target").exists()


def test_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    lock = tmp_path / ".provision.lock"
    held = threading.Event()
    order: list[str] = []

    def first() -> None:
        with file_lock(lock):
            held.set()
            time.sleep(0.3)
            order.append("first leaves")

    def second() -> None:
        held.wait()
        with file_lock(lock):
            order.append("second enters")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert order == ["first leaves", "second enters"]


def test_tail_reads_the_end_of_a_large_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail(log, 3) == "line 99997\nline 99998\nline 99999"
    assert tail(tmp_path / "missing.log") == ""
