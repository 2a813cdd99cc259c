"""Process supervision of the local Kafka nodes: start, PID files, liveness, stop by PID.

Nodes start in their own session, so ``relsec kafka up`` can exit and leave them running;
with ``die_with_parent`` (the test fixtures) they get SIGTERM when the starting process
dies (Linux ``PR_SET_PDEATHSIG``). A node's PID goes to its PID file, and its command
line carries a marker naming its node directory. A recorded PID counts as ours only
while that process is alive and its command line still carries the marker, so a stale
PID file whose PID the system gave to another process is never signalled. Nothing is
ever stopped by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.files import CHILD_UMASK, open_private, write_private

PID_FILE = "kafka.pid"
MARKER_PROPERTY = "relsec.kafka.node"
KILL_WAIT_S = 10.0

_POLL_S = 0.05
_PR_SET_PDEATHSIG = 1


def marker_arg(node_dir: Path) -> str:
    """The JVM system property that marks the process of the node in ``node_dir``."""
    return f"-D{MARKER_PROPERTY}={node_dir}"


def read_pid_file(path: Path) -> int | None:
    """The PID recorded in ``path``; None when the file is missing or holds no number."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def proc_cmdline(pid: int) -> str | None:
    """The command line of ``pid``, arguments joined by spaces (``ps`` where no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            done = subprocess.run(
                ["ps", "-o", "command=", "-p", str(pid)],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() or None
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace")


def is_zombie(pid: int) -> bool:
    """True when ``pid`` has exited but was not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a child of ours that exited is reaped here)."""
    try:
        reaped, _status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not is_zombie(pid)


def set_parent_death_signal() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def send_signal(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid``; a process already gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


class Supervisor:
    """The node processes one :class:`LocalKafka` object knows: started by it or found by PID.

    Children started here are watched through their ``Popen`` handles (right after fork
    a child's command line is still ours, before exec shows the JVM's); other PIDs
    through the system.
    """

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def pid_of(self, pid_file: Path, marker: str) -> int | None:
        """The PID in ``pid_file`` if that process is alive and carries ``marker``."""
        pid = read_pid_file(pid_file)
        if pid is None:
            return None
        child = self._children.get(pid)
        if child is not None:
            return pid if child.poll() is None else None
        if not pid_alive(pid):
            return None
        cmdline = proc_cmdline(pid)
        if cmdline is None or marker not in cmdline:
            return None  # the PID was reused by another process
        return pid

    def start(
        self,
        cmd: Sequence[str],
        *,
        cwd: Path,
        stdout_path: Path,
        pid_file: Path,
        banner: str,
        die_with_parent: bool,
    ) -> int:
        """Start ``cmd`` in its own session, output appended to ``stdout_path`` after
        ``banner``; record its PID in ``pid_file`` and return it.

        The process runs with umask 077 and its output file is 0600.
        """
        with open_private(stdout_path, append=True) as sink:
            sink.write(f"{banner}\n".encode())
            sink.flush()
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=set_parent_death_signal if die_with_parent else None,
                umask=CHILD_UMASK,
            )
        self._children[proc.pid] = proc
        write_private(pid_file, f"{proc.pid}\n")
        return proc.pid

    def wait_gone(self, pid: int, deadline: float) -> bool:
        """Wait until ``pid`` has exited or ``deadline`` (monotonic) passed; True if gone."""
        child = self._children.get(pid)
        while True:
            if child is not None:
                if child.poll() is not None:
                    self._children.pop(pid, None)
                    return True
            elif not pid_alive(pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)

    def kill(self, pid: int) -> None:
        """SIGKILL ``pid`` and wait for it; raise if it is still there after 10 s."""
        send_signal(pid, signal.SIGKILL)
        if not self.wait_gone(pid, time.monotonic() + KILL_WAIT_S):
            raise KafkaProvisionError(f"pid {pid} survived SIGKILL")
