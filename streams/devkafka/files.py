"""Files of the local Kafka's state and cache: private to the user, whatever the umask.

The state and cache directories hold Kafka's data, ``server.properties`` (which may carry
SASL passwords and key-store passwords from ``extra_properties``), logs, PID files and
the class-data archive the JVM maps as code. Every directory relsec creates there is
0700 and every file it writes 0600, set explicitly after creation so no umask widens
(or, with an odd umask, narrows) them; child JVMs run with umask 077, so what Kafka
writes (data, ``server.log``, the archive) is private too. A directory relsec owns
that already exists with a wider mode, from an older relsec, is tightened to 0700 and
the caller is told (a state directory's whole tree loses its group and other
permissions); one that belongs to another user is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from streams.devkafka.errors import KafkaProvisionError, PrivateDirError
from streams.devkafka.progress import Log, no_log

LOG_TAIL_LINES = 30
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
CHILD_UMASK = 0o077

_GROUP_OR_OTHER = 0o077
_TAIL_BYTES = 64 * 1024


def make_parents(path: Path) -> None:
    """Create the missing ancestors of ``path`` 0700; existing ones are not touched."""
    missing: list[Path] = []
    for ancestor in path.parents:
        if ancestor.exists():
            break
        missing.append(ancestor)
    for directory in reversed(missing):
        _make_dir(directory)


def private_dirs(path: Path, *, top: Path | None = None, log: Log = no_log) -> Path:
    """Make ``path`` a private (0700) directory, and every directory from ``top`` down to it.

    ``top`` (default: ``path``) is the highest directory that is relsec's own, such as
    the cache root; the directories above it are created 0700 when missing and otherwise
    left alone. Raise :class:`PrivateDirError` for a directory that is not a directory,
    belongs to another user, or refuses the new mode.
    """
    top = path if top is None else top
    if path != top and top not in path.parents:
        raise ValueError(f"{path} is not inside {top}")
    make_parents(top)
    chain = [top, *reversed([p for p in path.parents if top in p.parents]), path]
    for directory in dict.fromkeys(chain):
        if not _make_dir(directory):
            _tighten_dir(directory, log)
    return path


def _make_dir(directory: Path) -> bool:
    """Create ``directory`` 0700; False when it already existed."""
    try:
        os.mkdir(directory, PRIVATE_DIR_MODE)
    except FileExistsError:
        return False
    except OSError as exc:
        raise PrivateDirError(str(directory), f"cannot create it: {exc.strerror}") from None
    # mkdir applied the umask; set the mode itself.
    _chmod(directory, PRIVATE_DIR_MODE)
    return True


def _tighten_dir(directory: Path, log: Log) -> None:
    try:
        info = directory.stat()
    except OSError as exc:
        raise PrivateDirError(str(directory), f"cannot inspect it: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise PrivateDirError(str(directory), "is not a directory")
    me = os.geteuid()
    if info.st_uid != me:
        raise PrivateDirError(
            str(directory),
            f"belongs to uid {info.st_uid}, not to you (uid {me}): relsec keeps Kafka data, "
            "configuration and logs there; use a directory of your own (--state-dir or "
            "RELSEC_CACHE_DIR)",
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode == PRIVATE_DIR_MODE:
        return
    _chmod(directory, PRIVATE_DIR_MODE)
    if mode & _GROUP_OR_OTHER:
        log(f"tightened {directory} from {mode:04o} to {PRIVATE_DIR_MODE:04o}")


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError as exc:
        raise PrivateDirError(str(path), f"cannot set mode {mode:04o}: {exc.strerror}") from None


def tighten_tree(root: Path, log: Log = no_log) -> int:
    """Take group and other permissions off everything under ``root``; return how many.

    For a state directory written before relsec made it private (data, logs and
    configuration of an older relsec). Symbolic links are neither changed nor followed.
    """
    tightened = 0
    for directory, subdirs, files in os.walk(root):
        for name in [*subdirs, *files]:
            path = Path(directory) / name
            try:
                info = path.lstat()
                mode = stat.S_IMODE(info.st_mode)
                if stat.S_ISLNK(info.st_mode) or not mode & _GROUP_OR_OTHER:
                    continue
                os.chmod(path, mode & ~_GROUP_OR_OTHER)
            except FileNotFoundError:
                continue  # removed meanwhile: a running broker rolls its segments
            except OSError as exc:
                raise PrivateDirError(str(path), f"cannot tighten it: {exc.strerror}") from None
            tightened += 1
    if tightened:
        log(f"tightened {tightened} file(s) and directories under {root} to owner-only")
    return tightened


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` atomically, the new file 0600 whatever the umask.

    Readers see the old content or the new, never a half-written file (a PID file
    read mid-write would make a running node look stopped).
    """
    payload = data.encode() if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with open(fd, "wb") as handle:
            handle.write(payload)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def open_private(path: Path, *, append: bool = False) -> io.BufferedWriter:
    """Open ``path`` for writing (truncated, or appended to), the file 0600 whatever the umask.

    An existing file is set to 0600 too.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "ab" if append else "wb")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600 if missing) for the ``with`` body.

    The parent directory must exist. A symbolic link in the lock's place is refused: the
    lock of an explicit ``--state-dir`` lives in its parent, which may be shared.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise KafkaProvisionError(f"cannot open the lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path`` (from its last 64 KiB); empty when unreadable."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
