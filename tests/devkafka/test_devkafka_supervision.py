"""Process supervision with real stand-in processes: PID files, the marker check against
reused PIDs, stopping, umask 077 for children, and die-with-parent."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.supervision import (
    PID_FILE,
    Supervisor,
    marker_arg,
    pid_alive,
    proc_cmdline,
    read_pid_file,
)

from .fakes import fake_node_command

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    """A Supervisor whose children are killed at the end, whatever the test did."""
    started: list[int] = []
    sup = Supervisor()
    original = sup.start

    def start(*args: object, **kwargs: object) -> int:
        pid = original(*args, **kwargs)  # type: ignore[arg-type]
        started.append(pid)
        return pid

    sup.start = start  # type: ignore[method-assign]
    yield sup
    for pid in started:
        if pid_alive(pid):
            sup.kill(pid)


@pytest.fixture
def decoy() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process whose PID is planted in PID files: nothing may signal it."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def start(sup: Supervisor, node_dir: Path, *, ignore_term: bool = False) -> int:
    node_dir.mkdir(parents=True, exist_ok=True)
    return sup.start(
        fake_node_command(node_dir, ignore_term=ignore_term),
        cwd=node_dir,
        stdout_path=node_dir / "stdout.log",
        pid_file=node_dir / PID_FILE,
        banner="=== relsec: starting node 1 ===",
        die_with_parent=False,
    )


def noted(path: Path, line: str) -> bool:
    """Whether the stand-in node noted ``line`` in ``path`` (its signal handler is set by then)."""
    try:
        return line in path.read_text().splitlines()
    except FileNotFoundError:
        return False


def wait_for(predicate: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_started_node_is_recorded_privately_and_found_again(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    node_dir = tmp_path / "node-0"
    previous = os.umask(0)
    try:
        pid = start(supervisor, node_dir)
    finally:
        os.umask(previous)
    pid_file = node_dir / PID_FILE
    assert read_pid_file(pid_file) == pid
    assert stat.S_IMODE(pid_file.stat().st_mode) == 0o600
    assert supervisor.pid_of(pid_file, marker_arg(node_dir)) == pid
    # Another process (a fresh Supervisor, as `relsec kafka down` is) finds it by its marker.
    assert wait_for(lambda: marker_arg(node_dir) in (proc_cmdline(pid) or ""))
    assert Supervisor().pid_of(pid_file, marker_arg(node_dir)) == pid
    assert Supervisor().pid_of(pid_file, marker_arg(tmp_path / "node-1")) is None
    # The child runs at umask 077 and its output goes to a 0600 log, banner first.
    assert wait_for(lambda: noted(node_dir / "touched", "up"))
    assert stat.S_IMODE((node_dir / "touched").stat().st_mode) == 0o600
    stdout = node_dir / "stdout.log"
    assert wait_for(lambda: "fake node up" in stdout.read_text())
    assert stdout.read_text().splitlines()[:2] == [
        "=== relsec: starting node 1 ===",
        "fake node up",
    ]
    assert stat.S_IMODE(stdout.stat().st_mode) == 0o600


def test_stale_pid_files_are_not_ours(tmp_path: Path, decoy: subprocess.Popen[bytes]) -> None:
    node_dir = tmp_path / "node-0"
    node_dir.mkdir()
    pid_file = node_dir / PID_FILE
    marker = marker_arg(node_dir)
    assert Supervisor().pid_of(pid_file, marker) is None  # no file
    pid_file.write_text("not a pid\n")
    assert Supervisor().pid_of(pid_file, marker) is None
    pid_file.write_text(f"{decoy.pid}\n")  # the PID now belongs to another program
    assert Supervisor().pid_of(pid_file, marker) is None
    gone = subprocess.Popen(["true"])
    gone.wait()
    pid_file.write_text(f"{gone.pid}\n")
    assert Supervisor().pid_of(pid_file, marker) is None
    assert decoy.poll() is None


def test_wait_gone_after_sigterm_and_kill_of_a_node_that_ignores_it(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    obedient = start(supervisor, tmp_path / "node-0")
    stubborn = start(supervisor, tmp_path / "node-1", ignore_term=True)
    assert wait_for(lambda: noted(tmp_path / "node-1" / "touched", "up"))
    os.kill(obedient, signal.SIGTERM)
    os.kill(stubborn, signal.SIGTERM)
    assert supervisor.wait_gone(obedient, time.monotonic() + 10)
    started = time.monotonic()
    assert not supervisor.wait_gone(stubborn, time.monotonic() + 0.5)
    assert time.monotonic() - started >= 0.5
    supervisor.kill(stubborn)
    assert not pid_alive(stubborn)
    assert (
        supervisor.pid_of(tmp_path / "node-1" / PID_FILE, marker_arg(tmp_path / "node-1")) is None
    )


def test_kill_reports_a_process_that_does_not_go(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(
        "streams.devkafka.supervision.send_signal", lambda pid, signum: sent.append((pid, signum))
    )
    sup = Supervisor()
    monkeypatch.setattr(sup, "wait_gone", lambda pid, deadline: False)
    with pytest.raises(KafkaProvisionError, match=r"pid 12345 survived SIGKILL"):
        sup.kill(12345)
    assert sent == [(12345, signal.SIGKILL)]


PARENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from streams.devkafka.supervision import Supervisor
    sys.path.insert(0, sys.argv[3])
    from fakes import fake_node_command
    node_dir = Path(sys.argv[1])
    pid = Supervisor().start(
        fake_node_command(node_dir), cwd=node_dir, stdout_path=node_dir / "stdout.log",
        pid_file=node_dir / "kafka.pid", banner="start", die_with_parent=sys.argv[2] == "1",
    )
    print(pid, flush=True)
    time.sleep(300)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("die_with_parent", [True, False])
def test_die_with_parent(tmp_path: Path, die_with_parent: bool) -> None:
    node_dir = tmp_path / "node-0"
    node_dir.mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(node_dir), "1" if die_with_parent else "0",
         str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert wait_for(lambda: noted(node_dir / "touched", "up"))
        parent.kill()  # the starting process dies without cleaning up
        parent.wait()
        if die_with_parent:
            assert wait_for(lambda: not pid_alive(child)), "the node outlived its parent"
            assert noted(node_dir / "touched", "SIGTERM")  # the parent-death signal
        else:
            time.sleep(1.0)
            assert pid_alive(child), "a node of `relsec kafka up` must outlive the command"
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)
