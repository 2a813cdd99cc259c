"""``relsec replay``: the engine over JSONL event files, no Kafka.

Two modes:

* **sorted** (default): every valid event is ordered by the SPEC order key and
  fed in order, so the output is the final active alert set and nothing is
  late. Files are read streaming; events are kept in memory up to
  ``spill_events`` and beyond that sorted in runs spilled to temporary files
  and merged, so memory stays bounded (see docs/replay.md).
* **as-arrived**: lines are fed in file order, as a stream would see them:
  alerts fire and may be retracted, too-late events are dead-lettered. A service's
  consecutive events at one instant (a scanner report: thousands of findings of one
  scan) go to the engine as one batch (``Engine.process_batch``: each event is judged
  as if alone, the log is re-evaluated once per batch), up to ``chunk_lines``.

Both modes judge duplicates by the same rule, the engine's duplicate window
(``agents.engine.dedup``): sorted mode in file order before it sorts.

Every line is accounted for: ``read = applied + duplicates + dead_lettered``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gc
import heapq
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final, NamedTuple

import orjson

from agents.engine import DuplicateFilter, Engine, EngineConfig, Outcome, future_outcome
from agents.errors import FileError, FileLine, ValidationError
from agents.model.alerts import FIRING, Alert
from agents.model.events import Event, order_key, parse_event
from agents.model.timefmt import format_rfc3339_ms
from agents.model.wire import event_from_json

Clock = Callable[[], int]
"""Wall clock in UTC epoch ms; passed in so tests control time."""


@dataclass(slots=True)
class ReplayReport:
    """Counts of one replay; ``read == applied + duplicates + dead_lettered``."""

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    invalid: int = 0
    late: int = 0
    future: int = 0
    firing: int = 0
    retracted: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def dead_lettered(self) -> int:
        return self.invalid + self.late + self.future

    def summary_line(self) -> str:
        return (
            f"relsec replay: read={self.read} applied={self.applied} "
            f"duplicates={self.duplicates} dead_lettered={self.dead_lettered} "
            f"(invalid={self.invalid} late={self.late} future={self.future}) "
            f"alerts_firing={self.firing} retracted={self.retracted}"
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A line that was not applied, with where it came from and why.

    ``raw`` is the line's bytes as they were in the file, without the line terminator
    (and without a UTF-8 byte order mark opening the file). For a line longer than
    :data:`MAX_LINE_BYTES`, ``raw`` is its first :data:`TOO_LONG_KEPT_BYTES` and
    ``size`` its length; otherwise ``size`` is 0.
    """

    file: str
    line: int
    reason: str
    detail: str
    raw: bytes
    size: int = 0

    @property
    def where(self) -> FileLine:
        return FileLine(self.file, self.line)

    def message(self) -> str:
        return f"{self.where}: {self.reason}: {self.detail}"

    def to_dict(self, detected_at_ms: int) -> dict[str, Any]:
        """The dead-letter file's JSON object (docs/replay.md).

        The original bytes are ``value`` when they are UTF-8 (nearly always), else
        ``value_base64`` (standard base64), so that no byte is replaced.
        """
        out: dict[str, Any] = {
            "reason": self.reason,
            "detail": self.detail,
            "file": self.file,
            "line": self.line,
        }
        try:
            out["value"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            out["value_base64"] = base64.b64encode(self.raw).decode("ascii")
        if self.size:
            out["value_truncated"] = True
            out["value_bytes"] = self.size
        out["detected_at"] = format_rfc3339_ms(detected_at_ms)
        return out


MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""The longest line read as a record. A valid event is far smaller (at most a few MB
even with 1000 vulnerability ids written as escapes); a longer line is a wrong file,
and holding it whole could exhaust memory."""
TOO_LONG_KEPT_BYTES: Final = 64 * 1024
"""How much of an over-long line its dead letter keeps."""

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_JSON_BLANKS: Final = b" \t\r\n"


class _Line(NamedTuple):
    """One line of an input file (a tuple: cheap to build, and to spill in sorted replay)."""

    file: str
    number: int
    raw: bytes
    size: int = 0
    """The line's length when it is longer than MAX_LINE_BYTES (``raw`` holds a prefix)."""


def read_lines(paths: Iterable[str]) -> Iterator[_Line]:
    """Non-blank lines of the files, streaming; ``-`` is standard input.

    Raises :class:`FileError` naming the file when one cannot be opened or read.
    """
    for path in paths:
        if path == "-":
            yield from _lines_of("<stdin>", sys.stdin.buffer)
            continue
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise FileError(path, f"cannot read: {exc.strerror}") from None
        with handle:
            yield from _lines_of(path, handle)


READ_CHUNK: Final = 1 << 16


def _lines_of(name: str, stream: IO[bytes], *, lines_before: int = 0) -> Iterator[_Line]:
    """The records of one stream: lines without their terminator (LF or CRLF).

    A line of nothing but JSON whitespace is no record; a UTF-8 byte order mark
    opening the stream is dropped (editors on Windows write one). Read in chunks and
    split in C (twice as fast as a ``readline`` loop); a line longer than
    :data:`MAX_LINE_BYTES` is never held whole: it becomes one ``_Line`` with its first
    :data:`TOO_LONG_KEPT_BYTES` and its length.

    ``lines_before``: lines of the file before the stream's first (a stream that starts
    inside a file, as a byte range of a parallel replay does); numbering goes on from
    there, and a stream that does not open its file has no byte order mark to drop.
    """
    read = getattr(stream, "read1", stream.read)
    number = lines_before
    parts: list[bytes] = []  # the pieces of a line whose end is not read yet
    pending = 0  # their length
    skipped = -1  # while passing over an over-long line: its length so far
    head = b""  # and its first bytes
    last_cr = False  # the byte before the current chunk was a CR
    max_bytes, make = MAX_LINE_BYTES, _Line  # locals: the loop is hot
    while True:
        try:
            chunk = read(READ_CHUNK)
        except OSError as exc:
            raise FileError(name, f"cannot read after line {number}: {exc.strerror}") from None
        if not chunk:
            break
        if skipped >= 0:
            end = chunk.find(b"\n")
            if end < 0:
                skipped += len(chunk)
                last_cr = chunk.endswith(b"\r")
                continue
            cr = chunk[end - 1] == 0x0D if end else last_cr
            number += 1
            yield _too_long(name, number, head, skipped + end - cr)
            skipped = -1
            chunk = chunk[end + 1:]
        if b"\n" in chunk:
            data = b"".join((*parts, chunk)) if parts else chunk
            has_cr = b"\r" in data
            lines = data.split(b"\n")
            tail = lines.pop()
            for number, raw in enumerate(lines, number + 1):  # noqa: B020 - it goes on counting
                if has_cr and raw.endswith(b"\r"):
                    raw = raw[:-1]
                # The fast path: a line that opens an object, not the first, not too long.
                if raw and raw[0] == 0x7B and len(raw) <= max_bytes and number != 1:
                    yield make(name, number, raw)
                else:
                    line = _unusual(name, number, raw)
                    if line is not None:
                        yield line
            parts, pending = ([tail], len(tail)) if tail else ([], 0)
        else:  # no line ends here: keep the piece, copy nothing (a long line is many chunks)
            parts.append(chunk)
            pending += len(chunk)
        # One byte more than the limit may be the CR of a CRLF still to come, and three
        # the BOM opening the stream.
        if pending > max_bytes + 1 and not (
            number == 0 and pending <= max_bytes + 4 and b"".join(parts).startswith(_UTF8_BOM)
        ):
            last_cr = parts[-1].endswith(b"\r")
            skipped, head = pending, b"".join(parts)[: TOO_LONG_KEPT_BYTES + 3]
            parts, pending = [], 0
    tail = b"".join(parts)
    number += 1
    if skipped >= 0:
        yield _too_long(name, number, head, skipped)
        return
    line = _unusual(name, number, tail)
    if line is not None:
        yield line


def _unusual(name: str, number: int, raw: bytes) -> _Line | None:
    """A line off the fast path: the first of a stream (a BOM?), an over-long one, the
    last one (no terminator). None for a blank line."""
    if number == 1 and raw.startswith(_UTF8_BOM):
        raw = raw[3:]
    if len(raw) > MAX_LINE_BYTES:
        return _Line(name, number, raw[:TOO_LONG_KEPT_BYTES], len(raw))
    return _Line(name, number, raw) if raw.strip(_JSON_BLANKS) else None


def _too_long(name: str, number: int, head: bytes, size: int) -> _Line:
    """An over-long line passed over in pieces: its first bytes (a BOM opening the stream
    dropped) and its length."""
    if number == 1 and head.startswith(_UTF8_BOM):
        head, size = head[3:], size - 3
    return _Line(name, number, head[:TOO_LONG_KEPT_BYTES], size)


def decode_line(line: _Line) -> Event | DeadLetter:
    """The event of one line, or its dead letter (reason and detail, SPEC §5)."""
    if line.size:
        return DeadLetter(
            line.file, line.number, "too_long",
            f"the line has {line.size} bytes, more than the {MAX_LINE_BYTES} a record may have",
            line.raw, line.size,
        )
    event = event_from_json(line.raw)  # nearly every line; the rest is judged below
    if event is not None:
        return event
    try:
        obj = orjson.loads(line.raw)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(line.file, line.number, "invalid_json", f"not JSON: {exc}", line.raw)
    try:
        return parse_event(obj)
    except ValidationError as exc:
        return DeadLetter(line.file, line.number, exc.reason, str(exc), line.raw)


class Replayer:
    """Feeds events to the engine and writes alerts and dead letters."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        on_alert: Callable[[Alert], None],
        on_dead_letter: Callable[[DeadLetter], None],
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.on_alert = on_alert
        self.on_dead_letter = on_dead_letter
        self.report = ReplayReport()
        self._newest_ms: dict[str, int] = {}
        """Per service, the newest ``occurred_at`` fed: whether an event lands inside
        the lateness log (a batching decision only; the engine judges lateness)."""

    def dead_letter(self, dl: DeadLetter) -> None:
        if dl.reason == "late":
            self.report.late += 1
        elif dl.reason == "future":
            self.report.future += 1
        else:
            self.report.invalid += 1
        self.on_dead_letter(dl)

    def feed(self, event: Event, line: _Line) -> None:
        self.account(self.engine.process(event, self.clock()), line)

    def feed_sorted(self, items: Iterable[_Spilled]) -> None:
        """Feed events in order-key order, reading the clock once every
        :data:`CLOCK_READ_EVERY` events (it stamps ``detected_at`` and judges the future,
        which sorted replay judged already when it read the lines)."""
        process, account, clock = self.engine.process, self.account, self.clock
        now_ms = clock()
        for count, (_, _, event, line) in enumerate(items, 1):
            if count % CLOCK_READ_EVERY == 0:
                now_ms = clock()
            account(process(event, now_ms), line)

    def feed_chunk(self, items: list[tuple[Event | DeadLetter, _Line]]) -> None:
        """Lines in file order. Each service's consecutive events that would each
        re-evaluate the same stretch of its log go to the engine as one batch: events of
        one ``occurred_at`` (a scanner report), and events landing inside the log (older
        than the newest fed: an out-of-order backfill, a report whose hashed ids arrive
        out of time order). Events in time order go one by one, so a file shows the
        firings and retractions SPEC §6 describes. Services are independent, so only
        each service's own order matters; outcomes and dead letters are reported in
        file order."""
        events = [None if isinstance(item, DeadLetter) else item for item, _ in items]
        runs: dict[str, list[int]] = {}  # service -> positions of its current run
        run_kind: dict[str, int | None] = {}  # its occurred_at, or None: inside the log
        outcomes: list[Outcome | None] = [None] * len(items)
        newest = self._newest_ms
        now_ms = self.clock()
        config = self.engine.config

        def flush(positions: list[int]) -> None:
            batch = [e for e in (events[i] for i in positions) if e is not None]
            results = self.engine.process_batch(batch, now_ms)
            for i, outcome in zip(positions, results, strict=True):
                outcomes[i] = outcome

        for position, event in enumerate(events):
            if event is None:
                continue
            service, at = event.service, event.occurred_at_ms
            if future_outcome(at, now_ms, config) is not None:
                # Refused without a trace in the engine: judged alone, it neither cuts a
                # run nor moves the newest time, so runs never depend on refused lines.
                (outcomes[position],) = self.engine.process_batch([event], now_ms)
                continue
            seen = newest.get(service)
            kind = None if seen is not None and at < seen else at
            if seen is None or at > seen:
                newest[service] = at
            run = runs.get(service)
            if run is not None and run_kind[service] == kind:
                run.append(position)
                continue
            if run is not None:
                flush(run)
            runs[service] = [position]
            run_kind[service] = kind
        for run in runs.values():
            flush(run)
        for (item, line), outcome in zip(items, outcomes, strict=True):
            if isinstance(item, DeadLetter):
                self.dead_letter(item)
            elif outcome is not None:
                self.account(outcome, line)

    def account(self, outcome: Outcome, line: _Line) -> None:
        """Count one event's outcome and pass on its alerts (or its dead letter)."""
        disposition = outcome.disposition
        if disposition == "applied":
            self.report.applied += 1
        elif disposition == "duplicate":
            self.report.duplicates += 1
        else:
            self.dead_letter(
                DeadLetter(line.file, line.number, disposition.value, outcome.detail, line.raw)
            )
        for alert in outcome.alerts:
            if alert.status == FIRING:
                self.report.firing += 1
                self.report.by_rule[alert.rule] = self.report.by_rule.get(alert.rule, 0) + 1
            else:
                self.report.retracted += 1
            self.on_alert(alert)


AS_ARRIVED_CHUNK_LINES = 10_000
"""Events read before they are fed: the largest batch of one instant (a scanner report
of this many findings costs about what sorted replay costs, docs/performance.md),
and a chunk's lines and events stay a few MB."""

AS_ARRIVED_MAX_HELD_LINES = 10 * AS_ARRIVED_CHUNK_LINES
"""Lines a chunk may hold, refused ones included, before it is fed anyway."""


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector off while the block (or the decorated call) runs.

    A replay allocates millions of objects that form no cycles (lines, events, alerts:
    reference counting frees them) beside a large live state that only grows. Each
    collection walked the state allocated since the one before and found next to
    nothing: at generation-0 threshold 100 000, 4.8% of a sorted replay's CPU and 14.6%
    of an as-arrived one, for 77 objects collected in all, most of them at start-up
    (docs/performance.md §25). ``tests/test_replay_gc.py`` holds a replay to creating no
    cyclic garbage.

    At the end, what the replay allocated is moved to the oldest generation without
    being walked (``gc.freeze()`` then ``gc.unfreeze()``): the next young collection
    would otherwise walk all of it at once. A caller that froze objects itself keeps
    them, and the replay's, frozen.
    """
    was_enabled = gc.isenabled()
    frozen_before = gc.get_freeze_count()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if not frozen_before:
            gc.unfreeze()
        if was_enabled:
            gc.enable()


@collector_paused()
def replay_as_arrived(
    lines: Iterable[_Line], replayer: Replayer, chunk_lines: int = AS_ARRIVED_CHUNK_LINES
) -> ReplayReport:
    """Feed the lines in file order, in chunks of up to ``chunk_lines`` events.

    Only events the engine may take count towards a chunk: a line refused before the
    engine (undecodable, invalid, far in the future) rides along in the chunk that holds
    its neighbours, so refused lines never move a chunk's boundary, and the alerts of a
    file are those of its valid lines alone. A file of refused lines is still fed every
    :data:`AS_ARRIVED_MAX_HELD_LINES` lines."""
    chunk: list[tuple[Event | DeadLetter, _Line]] = []
    events = 0
    config = replayer.engine.config
    held_at_most = max(chunk_lines, AS_ARRIVED_MAX_HELD_LINES)
    now_ms = replayer.clock()  # once a chunk: only which lines count is decided with it
    for line in lines:
        replayer.report.read += 1
        decoded = decode_line(line)
        chunk.append((decoded, line))
        if not isinstance(decoded, DeadLetter) and (
            future_outcome(decoded.occurred_at_ms, now_ms, config) is None
        ):
            events += 1
        if events >= chunk_lines or len(chunk) >= held_at_most:
            replayer.feed_chunk(chunk)
            chunk = []
            events = 0
            now_ms = replayer.clock()
    if chunk:
        replayer.feed_chunk(chunk)
    return replayer.report


CLOCK_READ_EVERY: Final = 1024
"""Lines sorted replay reads, and events it feeds, between two readings of the wall clock
(which judges the future and stamps ``detected_at``: milliseconds, not lines, matter)."""

_Spilled = tuple[tuple[int, int, str], int, Event, _Line]
"""A line of sorted replay: its order key, its place in the input, the event, the line."""


@collector_paused()
def replay_sorted(
    lines: Iterable[_Line],
    replayer: Replayer,
    spill_events: int = 200_000,
    position: Callable[[], int] | None = None,
) -> ReplayReport:
    """Validate and dedupe in file order, then feed in order-key order.

    In file order, as as-arrived replay and the worker judge them: a line too far in the
    future is dead-lettered (and registers nothing), then a repeated ``event_id`` of a
    service is a duplicate while the engine's duplicate window remembers the first.

    Events of equal order keys are fed in file order: each accepted line is ranked by
    ``position()`` when given (a shard of a parallel replay passes the line's place in
    the whole input, so that the shards' outputs merge into one order), else by its rank
    among the accepted lines.
    """
    config = replayer.engine.config
    dedup = DuplicateFilter(config.effective_duplicate_window_ms)
    batch: list[_Spilled] = []
    runs: list[str] = []
    sequence = 0
    now_ms = replayer.clock()
    try:
        for line in lines:
            replayer.report.read += 1
            if replayer.report.read % CLOCK_READ_EVERY == 0:
                now_ms = replayer.clock()
            decoded = decode_line(line)
            if isinstance(decoded, DeadLetter):
                replayer.dead_letter(decoded)
                continue
            future = future_outcome(decoded.occurred_at_ms, now_ms, config)
            if future is not None:
                replayer.dead_letter(
                    DeadLetter(line.file, line.number, "future", future.detail, line.raw)
                )
                continue
            if not dedup.take(decoded):
                replayer.report.duplicates += 1
                continue
            batch.append(
                (order_key(decoded), sequence if position is None else position(), decoded, line)
            )
            sequence += 1
            if len(batch) >= spill_events:
                runs.append(_spill(batch))
                batch = []
        batch.sort()  # (key, sequence) is unique: the comparison never reaches the event
        if not runs:
            replayer.feed_sorted(batch)
            return replayer.report
        replayer.feed_sorted(heapq.merge(*(_read_run(path) for path in runs), batch))
        return replayer.report
    finally:
        for path in runs:
            os.unlink(path)


_RUN_HEADER: Final = struct.Struct("<QQQI")
"""A spilled line's header: its sequence, line number, size, and the length of its file
name and bytes (the name, then the bytes, follow)."""


def _spill(batch: list[_Spilled]) -> str:
    """Sort ``batch`` and write its lines to a new run file (0600, removed after the merge).

    The raw lines, framed (no JSON or text round trip): reading a run decodes each line
    again, with the fast path that admitted it. Pickling the events instead measured no
    faster, and a run file holds nothing but the input's own bytes."""
    batch.sort()
    fd, path = tempfile.mkstemp(prefix="relsec-replay-", suffix=".run")
    pack = _RUN_HEADER.pack
    with os.fdopen(fd, "wb") as out:
        write = out.write
        for _, sequence, _, line in batch:
            name = line.file.encode("utf-8", "surrogateescape")
            write(pack(sequence, line.number, line.size, len(name)))
            write(name)
            write(len(line.raw).to_bytes(4, "little"))
            write(line.raw)
    return path


def _read_run(path: str) -> Iterator[_Spilled]:
    unpack, header = _RUN_HEADER.unpack, _RUN_HEADER.size
    names: dict[bytes, str] = {}
    with open(path, "rb") as handle:
        read = handle.read
        while head := read(header):
            sequence, number, size, name_length = unpack(head)
            name = read(name_length)
            file = names.get(name) or names.setdefault(
                name, name.decode("utf-8", "surrogateescape")
            )
            raw = read(int.from_bytes(read(4), "little"))
            # Validated when first read: the fast path, else the usual one, accepts it.
            event = event_from_json(raw) or parse_event(orjson.loads(raw))
            yield order_key(event), sequence, event, _Line(file, number, raw, size)


def make_engine(
    as_arrived: bool, allowed_lateness_ms: int, base: EngineConfig | None = None
) -> Engine:
    """Sorted input never arrives late, so sorted mode keeps no lateness log; its config
    still carries the lateness, which sets the duplicate window in effect. ``base``: the
    rest of the configuration (the duplicate window, mutable release names)."""
    config = dataclasses.replace(
        base or EngineConfig(), allowed_lateness_ms=allowed_lateness_ms, in_order=not as_arrived
    )
    return Engine(config)
