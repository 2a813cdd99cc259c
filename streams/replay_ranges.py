"""The input of a parallel replay read once: byte ranges routed to per-shard buckets.

Phase 1 of ``relsec replay --workers N`` (:mod:`streams.replay_shards`). The files are
cut into byte ranges at line starts (:func:`plan_tasks`; a cut is moved past the next
``\\n``), and consecutive ranges are grouped into tasks of about equal size. Each task,
in a process of its own, reads its ranges with the line reader of one process
(``streams.replay._lines_of``: blank lines, CRLF, a byte order mark only where a file
opens, over-long lines kept as a head and a size, a last line without terminator),
routes each line to its shard (:func:`~streams.replay_shards.shard_of`) and appends it
to that shard's bucket file (0600, in ``$TMPDIR``), with its line number relative to its
range and its place relative to its task (:func:`route_task`). A task returns its
counts: the newlines of each range and the lines (records) of the task.

The parent turns the counts into offsets (:func:`shard_inputs`): a line's number is its
range's newlines before it in the same file plus its number in the range, its place in
the whole input the records of every earlier task plus its place in the task. Phase 2:
shard ``k`` reads its bucket of every task in task order, which is file order
(:func:`shard_lines`), so it sees its lines exactly as one process would have, with the
numbers and places one process gives them.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import stat
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, Final, cast

from agents.errors import FileError
from streams.replay import _Line, _lines_of

SCAN_CHUNK: Final = 1 << 12
"""Bytes read at a time while looking for the line start after a cut."""

READ_CHUNK: Final = 1 << 16
"""Bytes a range hands the line reader at a time (the size ``_lines_of`` reads)."""

BUCKET_BUFFER: Final = 1 << 20
"""Bytes (about) a bucket gathers before it writes them as one frame."""

_FRAME_LENGTH: Final = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``[start, end)`` of ``path``: whole lines (``start`` opens a line, ``end``
    follows a ``\\n`` or is the end of the file as it was planned)."""

    path: str
    start: int
    end: int

    @property
    def opens_file(self) -> bool:
        return self.start == 0


@dataclass(frozen=True, slots=True)
class RangeTask:
    """Consecutive ranges (in input order) that one process reads and routes."""

    index: int
    ranges: tuple[ByteRange, ...]

    @property
    def size(self) -> int:
        return sum(r.end - r.start for r in self.ranges)


@dataclass(frozen=True, slots=True)
class RoutedTask:
    """What a task left: a bucket file per shard (None: no line of its went there), the
    newlines of each of its ranges, and the records (non-blank lines) it read."""

    task: RangeTask
    buckets: tuple[str | None, ...]
    newlines: tuple[int, ...]
    records: int

    def paths(self) -> list[str]:
        return [path for path in self.buckets if path is not None]


@dataclass(frozen=True, slots=True)
class BucketSource:
    """One task's bucket for one shard, with the offsets that make its lines' numbers
    and places those of the whole input."""

    path: str | None
    files: tuple[str, ...]
    """The file of each range of the task."""
    line_offsets: tuple[int, ...]
    """Added to a line's number in its range: the lines of the file before the range,
    less the one line the reader was told came before it (see :func:`_range_lines`)."""
    place_offset: int


def _open_for_reading(path: str) -> BinaryIO:
    """``path`` opened as one process opens it (the same message when it cannot be)."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise FileError(path, f"cannot read: {exc.strerror}") from None


def _line_start_at_or_after(handle: BinaryIO, position: int, size: int) -> int:
    """The first line start at or after ``position``: ``position`` itself when the byte
    before it is a ``\\n``, else the byte after the next ``\\n``, else ``size``."""
    if position <= 0:
        return 0
    if position >= size:
        return size
    handle.seek(position - 1)
    scanned = position - 1
    while scanned < size:
        chunk = handle.read(min(SCAN_CHUNK, size - scanned))
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline >= 0:
            return scanned + newline + 1
        scanned += len(chunk)
    return size


def plan_tasks(
    paths: Iterable[str], tasks: int, *, range_bytes: int | None = None
) -> list[RangeTask]:
    """Cut the files into ranges at line starts and group them into about ``tasks``
    tasks of equal bytes.

    A range holds about ``range_bytes`` (default: the whole input over ``tasks``); a
    file's end always ends a range, and a task holds consecutive ranges until it has
    its share of bytes, so many small files make few tasks. Tests pass a tiny
    ``range_bytes`` to put cuts everywhere. The files are read as they are now: bytes
    appended while the replay runs are not read. Raises :class:`FileError` for a file
    that cannot be opened or is not a regular file (a pipe cannot be cut into ranges).
    """
    sized: list[tuple[str, int]] = []
    for path in paths:
        with _open_for_reading(path) as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise FileError(
                    path,
                    "is not a regular file: --workers cuts the input into byte ranges; "
                    "save it to a file",
                )
            sized.append((path, status.st_size))
    total = sum(size for _, size in sized)
    share = max(1, -(-total // max(1, tasks)))
    step = max(1, range_bytes if range_bytes is not None else share)
    ranges: list[ByteRange] = []
    for path, size in sized:
        if size == 0:
            continue
        with _open_for_reading(path) as handle:
            start = 0
            while start < size:
                end = _line_start_at_or_after(handle, start + step, size)
                ranges.append(ByteRange(path, start, end))
                start = end
    grouped: list[RangeTask] = []
    current: list[ByteRange] = []
    held = 0
    for byte_range in ranges:
        current.append(byte_range)
        held += byte_range.end - byte_range.start
        if held >= share:
            grouped.append(RangeTask(len(grouped), tuple(current)))
            current, held = [], 0
    if current:
        grouped.append(RangeTask(len(grouped), tuple(current)))
    return grouped


class _RangeStream:
    """Bytes ``[start, end)`` of an open file as a stream ``_lines_of`` reads, counting
    the newlines it hands out."""

    def __init__(self, handle: BinaryIO, byte_range: ByteRange) -> None:
        self.handle = handle
        self.path = byte_range.path
        self.position = byte_range.start
        self.end = byte_range.end
        self.newlines = 0
        handle.seek(byte_range.start)

    def read(self, size: int = -1) -> bytes:
        left = self.end - self.position
        if left <= 0:
            return b""
        want = left if size < 0 else min(size, left)
        try:
            chunk = self.handle.read(want)
        except OSError as exc:
            # The reader's own message would give a line number relative to the range.
            raise FileError(
                self.path, f"cannot read at byte {self.position}: {exc.strerror}"
            ) from None
        if not chunk:  # the file shrank since it was planned: what is there is read
            self.end = self.position
            return b""
        self.position += len(chunk)
        self.newlines += chunk.count(b"\n")
        return chunk


def _range_lines(stream: _RangeStream, opens_file: bool) -> Iterator[_Line]:
    """The lines of a range, numbered from 1 if it opens its file, else from 2 (the
    reader is told one line came before, so that it drops no byte order mark and takes
    no line for a file's first); :class:`BucketSource` takes that one back."""
    return _lines_of(stream.path, cast(IO[bytes], stream), lines_before=0 if opens_file else 1)


class _Buckets:
    """A task's bucket files, one per shard that gets lines (0600, made when the first
    line comes). Each holds ``marshal`` frames of plain tuples, one a line: its range
    (in the task), its number in the range, its place in the task, its size (0 unless
    over-long: then ``raw`` is its head) and ``raw``. Not pickle: loading it runs no
    code, and these files sit in ``$TMPDIR``."""

    def __init__(self, shards: int) -> None:
        self.records: list[list[tuple[int, int, int, int, bytes]]] = [[] for _ in range(shards)]
        self.held = [0] * shards
        self.outputs: list[BinaryIO | None] = [None] * shards
        self.paths: list[str | None] = [None] * shards

    def flush(self, shard: int) -> None:
        out = self.outputs[shard]
        if out is None:
            fd, self.paths[shard] = tempfile.mkstemp(prefix="relsec-bucket-", suffix=".lines")
            out = self.outputs[shard] = os.fdopen(fd, "wb")
        data = marshal.dumps(self.records[shard])
        out.write(_FRAME_LENGTH.pack(len(data)))
        out.write(data)
        self.records[shard].clear()  # the same list: route_task holds its append
        self.held[shard] = 0

    def close(self) -> None:
        for shard, records in enumerate(self.records):
            if records:
                self.flush(shard)
        for out in self.outputs:
            if out is not None:
                out.close()

    def remove(self) -> None:
        for out in self.outputs:
            if out is not None:
                with contextlib.suppress(OSError):
                    out.close()
        for path in self.paths:
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def route_task(task: RangeTask, shards: int, route: Callable[[_Line, int], int]) -> RoutedTask:
    """Phase 1 for one task: read its ranges, route each line with ``route(line,
    shards)``, write the buckets. On failure its bucket files are removed."""
    buckets = _Buckets(shards)
    appends = [records.append for records in buckets.records]
    held = buckets.held
    newlines: list[int] = []
    place = 0
    try:
        for range_index, byte_range in enumerate(task.ranges):
            with _open_for_reading(byte_range.path) as handle:
                stream = _RangeStream(handle, byte_range)
                for line in _range_lines(stream, byte_range.opens_file):
                    shard = route(line, shards)
                    _, number, raw, size = line
                    appends[shard]((range_index, number, place, size, raw))
                    held[shard] += len(raw) + 32
                    if held[shard] >= BUCKET_BUFFER:
                        buckets.flush(shard)
                    place += 1
                newlines.append(stream.newlines)
        buckets.close()
    except BaseException:
        buckets.remove()
        raise
    return RoutedTask(task, tuple(buckets.paths), tuple(newlines), place)


def shard_inputs(routed: list[RoutedTask], shards: int) -> list[list[BucketSource]]:
    """For each shard, its bucket of every task in task order, with the offsets that the
    counts of the earlier tasks give."""
    inputs: list[list[BucketSource]] = [[] for _ in range(shards)]
    place_offset = 0
    lines_before: dict[str, int] = {}  # per file, the newlines of its ranges so far
    for result in sorted(routed, key=lambda r: r.task.index):
        line_offsets = []
        for byte_range, newlines in zip(result.task.ranges, result.newlines, strict=True):
            before = 0 if byte_range.opens_file else lines_before.get(byte_range.path, 0)
            line_offsets.append(before if byte_range.opens_file else before - 1)
            lines_before[byte_range.path] = before + newlines
        files = tuple(r.path for r in result.task.ranges)
        for shard, path in enumerate(result.buckets):
            inputs[shard].append(BucketSource(path, files, tuple(line_offsets), place_offset))
        place_offset += result.records
    return inputs


class ShardLines:
    """Phase 2: a shard's lines from its buckets, in input order, with their numbers
    and places in the whole input; :attr:`place` is the place of the line read last."""

    def __init__(self, sources: Iterable[BucketSource]) -> None:
        self.sources = list(sources)
        self.place = -1

    def __iter__(self) -> Iterator[_Line]:
        make, loads, header = _Line, marshal.loads, _FRAME_LENGTH.size
        for source in self.sources:
            if source.path is None:
                continue
            files, line_offsets = source.files, source.line_offsets
            place_offset = source.place_offset
            with open(source.path, "rb") as handle:
                read = handle.read
                while head := read(header):
                    frame = loads(read(_FRAME_LENGTH.unpack(head)[0]))
                    for range_index, number, place, size, raw in frame:
                        self.place = place_offset + place
                        number += line_offsets[range_index]
                        yield make(files[range_index], number, raw, size)


def remove_buckets(routed: Iterable[RoutedTask]) -> None:
    for result in routed:
        for path in result.paths():
            with contextlib.suppress(OSError):
                os.unlink(path)
