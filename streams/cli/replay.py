"""``relsec replay FILE…``: run the rules over JSONL event files and print alert JSON lines."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, Final

import orjson

from agents.errors import ConfigError, FileError
from agents.model.alerts import Alert
from streams.replay import (
    DeadLetter,
    Replayer,
    ReplayReport,
    make_engine,
    read_lines,
    replay_as_arrived,
    replay_sorted,
)
from streams.settings import (
    BOOLEAN,
    DEFAULT_ALLOWED_LATENESS_MS,
    DUPLICATE_WINDOW,
    DURATION,
    INTEGER,
    MUTABLE_RELEASE_PATTERNS,
    TEXT,
    Setting,
    Settings,
    add_flags,
    at_least,
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


REPLAY_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting(
        "as_arrived",
        BOOLEAN,
        False,
        "process lines in file order as a stream would (alerts may be retracted, too-late "
        "events are dead-lettered); else sorted by event time",
    ),
    # The worker's default, but not its variable: a replay is a reproducible run of files.
    Setting(
        "allowed_lateness_ms",
        DURATION,
        DEFAULT_ALLOWED_LATENESS_MS,
        "how far behind the newest event of its service an event may arrive (with --as-arrived)",
        flag="--allowed-lateness",
        check=at_least(0),
    ),
    dataclasses.replace(DUPLICATE_WINDOW, env=None),
    dataclasses.replace(MUTABLE_RELEASE_PATTERNS, env=None),
    Setting("strict", BOOLEAN, False, "exit 1 when any line was dead-lettered"),
    Setting(
        "dead_letters",
        TEXT,
        None,
        "also write each dead-lettered line, with its reason, as a JSON line to FILE",
        metavar="FILE",
    ),
    Setting("quiet", BOOLEAN, False, "do not report each bad line on stderr"),
    Setting(
        "workers",
        INTEGER,
        1,
        "sorted replay in this many processes, each owning the services whose names hash "
        "to it; the output is the same as one process's (files only, not stdin)",
        metavar="N",
        check=at_least(1),
    ),
)
"""What ``relsec replay`` reads: flags only, no environment."""

COMMANDS: Final = {"replay": REPLAY_SETTINGS}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="run the rules over JSONL event files (no Kafka), print alerts as JSON lines",
        description="Run the rules over JSONL event files and write alert JSON lines to stdout. "
        "The last line of stderr summarizes the counts.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="JSONL event files ('-' for stdin)")
    add_flags(p, REPLAY_SETTINGS)
    p.set_defaults(func=run, settings=REPLAY_SETTINGS)


class _Output:
    """A binary output whose write failures (a full disk) end the run with a clear error."""

    def __init__(self, name: str, stream: IO[bytes], what: str) -> None:
        self.name = name
        self.stream = stream
        self.what = what

    def _failed(self, exc: OSError) -> FileError:
        if self.stream is sys.stdout.buffer:
            # What is still buffered would fail again when the interpreter exits, and
            # turn exit status 2 into 120 with a second message: let it go to /dev/null.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FileError(self.name, f"cannot write {self.what}: {exc.strerror or exc}")

    def write_line(self, data: bytes) -> None:
        """Write ``data``, which ends in a newline (``orjson.OPT_APPEND_NEWLINE``)."""
        try:
            self.stream.write(data)
        except BrokenPipeError:
            raise  # the reader went away: main() handles it
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def open_dead_letters(path: str, inputs: Sequence[str]) -> _Output:
    """Open ``--dead-letters PATH`` for writing, owner-only (it holds raw input).

    Refused, before anything is truncated, when PATH is one of the input files (by
    device and inode, so a symlink or hard link to an input is caught too) or the
    file standard output goes to. An existing regular file is truncated and made
    0600; a device (``/dev/null``) is written as it is.
    """
    option = f"--dead-letters {path}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except IsADirectoryError:
        raise FileError(option, "is a directory; name a file to write dead letters to") from None
    except OSError as exc:
        raise FileError(option, f"cannot open for writing: {exc.strerror}") from None
    try:
        target = os.fstat(fd)
        if not stat.S_ISCHR(target.st_mode):
            for name in inputs:
                try:
                    source = os.fstat(sys.stdin.fileno()) if name == "-" else os.stat(name)
                except (OSError, ValueError):
                    continue  # an unreadable input is reported when it is read
                if _same_file(source, target):
                    shown = "standard input" if name == "-" else f"the input file {name}"
                    raise ConfigError(
                        f"{option}: is {shown}; writing dead letters there would destroy it"
                    )
            try:
                if _same_file(os.fstat(sys.stdout.fileno()), target):
                    raise ConfigError(f"{option}: is where standard output (the alerts) goes")
            except (OSError, ValueError):
                pass  # no real standard output (a test harness): nothing to compare
        if stat.S_ISREG(target.st_mode):
            os.ftruncate(fd, 0)
            if target.st_uid == os.geteuid():
                os.fchmod(fd, 0o600)
    except OSError as exc:
        os.close(fd)
        raise FileError(option, f"cannot prepare for writing: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    return _Output(path, os.fdopen(fd, "wb"), "dead letters")


def _replay_in_processes(
    args: argparse.Namespace,
    on_alert_line: Callable[[bytes], None],
    on_dead_letter: Callable[[DeadLetter], None],
) -> ReplayReport:
    """``--workers N``: sorted replay sharded by service over N processes."""
    if args.as_arrived:
        raise ConfigError(
            "--workers: only sorted replay runs in several processes; --as-arrived feeds "
            "the lines in file order in one"
        )
    if "-" in args.files:
        raise ConfigError(
            "--workers: the input is cut into byte ranges read in several processes, "
            "which needs a file; save standard input to a file"
        )
    from streams.replay_shards import ShardJob, replay_sorted_sharded

    job = ShardJob(
        files=tuple(args.files),
        shard=0,
        shards=args.workers,
        allowed_lateness_ms=args.allowed_lateness_ms,
        duplicate_window_ms=args.duplicate_window_ms,
        mutable_release_patterns=tuple(args.mutable_release_patterns),
        clock=wall_clock_ms,
    )
    return replay_sorted_sharded(job, on_alert_line, on_dead_letter)


def run(args: argparse.Namespace) -> int:
    lateness_ms: int = args.allowed_lateness_ms
    err = sys.stderr
    out = _Output("<stdout>", sys.stdout.buffer, "alerts")
    dl_out = open_dead_letters(args.dead_letters, args.files) if args.dead_letters else None

    def on_alert(alert: Alert) -> None:
        out.write_line(orjson.dumps(alert.to_dict(), option=orjson.OPT_APPEND_NEWLINE))

    def on_dead_letter(dl: DeadLetter) -> None:
        if not args.quiet:
            print(f"relsec replay: {dl.message()}", file=err)
        if dl_out is not None:
            dl_out.write_line(
                orjson.dumps(dl.to_dict(wall_clock_ms()), option=orjson.OPT_APPEND_NEWLINE)
            )

    judgment = Settings(
        allowed_lateness_ms=lateness_ms,
        duplicate_window_ms=args.duplicate_window_ms,
        mutable_release_patterns=tuple(args.mutable_release_patterns),
    )
    replayer = Replayer(
        make_engine(args.as_arrived, lateness_ms, judgment.engine_config()),
        wall_clock_ms,
        on_alert,
        on_dead_letter,
    )
    try:
        if args.workers > 1:
            report = _replay_in_processes(args, out.write_line, on_dead_letter)
        elif args.as_arrived:
            report = replay_as_arrived(read_lines(args.files), replayer)
        else:
            report = replay_sorted(read_lines(args.files), replayer)
        out.flush()
        if dl_out is not None:
            dl_out.flush()
    finally:
        if dl_out is not None:
            with contextlib.suppress(OSError):  # a failed flush was reported above
                dl_out.stream.close()
    print(report.summary_line(), file=err)
    if args.strict and report.dead_lettered:
        return 1
    return 0
