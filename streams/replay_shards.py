"""Sorted replay over several processes: each shard owns the services hashed to it.

A service's events meet only that service's state (the engine, the duplicate window and
compaction are per service; compaction changes no outcome), so a backfill splits by
service with nothing shared: shard ``k`` of ``n`` takes the lines whose service hashes
to ``k`` (:func:`shard_of`, CRC-32 of the name: the same in every process) and runs
:func:`~streams.replay.replay_sorted` over them. ``--workers N`` makes
:data:`SHARDS_PER_WORKER` shards a worker and groups them onto the N processes by the
bytes routed to each (:func:`balanced_groups`), so uneven services even out. Lines with no
service to route by (not JSON, no ``service`` string, too long) go to shard 0, which
dead-letters them as one process would.

Each line is read and routed once, in two phases over the same N processes
(:func:`replay_sorted_sharded`):

1. the input is cut into byte ranges at line starts, grouped into tasks; each task reads
   its ranges, routes every line and writes a bucket file per shard, its lines numbered
   relative to their range and task (:mod:`streams.replay_ranges`);
2. once every task has ended, the parent turns their counts into offsets, and shard
   ``k`` reads its bucket of every task in input order, each line with the number and
   the place in the whole input that one process gives it (:func:`run_shard`).

The shards write what they emit to temporary files, each record with the key it sorts
by in one process's output: an alert by its event's order key, then the event's place
in the whole input, then its place among that event's alerts; a dead letter of the
first pass by its line's place, one of the second pass after every first-pass one, by
its event's key. :func:`merge_shards` merges the files by those keys, so the alerts and
dead letters come out in exactly the order, and with the same counts, as one process's
(only ``detected_at``, the wall clock, differs). An alert's key is bytes that compare
as the key does (:func:`_event_key`), written in front of its JSON line, so the merge
compares one ``bytes`` per step and builds no tuple. One service's events cannot be
split: a backfill mostly of one service runs at the speed of its shard.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import heapq
import marshal
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, BinaryIO, Final, TypeVar

import msgspec
import orjson

from agents.model.alerts import Alert
from agents.model.events import Event
from streams.replay import (
    Clock,
    DeadLetter,
    Replayer,
    ReplayReport,
    _Line,
    make_engine,
    replay_sorted,
)
from streams.replay_ranges import (
    BucketSource,
    RangeTask,
    RoutedTask,
    ShardLines,
    plan_tasks,
    remove_buckets,
    route_task,
    shard_inputs,
)
from streams.settings import Settings

SPILL_EVENTS: Final = 200_000
"""Events held in memory before spilling, over all shards (each holds its share)."""

FRAME_RECORDS: Final = 2048
"""Records of a shard's output gathered into one ``marshal`` frame."""


class _Routed(msgspec.Struct):
    service: str


_ROUTE: Final = msgspec.json.Decoder(_Routed)


def shard_of_service(service: str, shards: int) -> int:
    return zlib.crc32(service.encode("utf-8", "surrogatepass")) % shards


def shard_of(line: _Line, shards: int) -> int:
    """The shard that owns ``line``: by its ``service`` string, else shard 0.

    msgspec reads only ``service`` (0.8 µs against 2.3 for a whole ``orjson.loads``);
    where it cannot, orjson, which is what the usual path of validation reads, decides.
    Both take the last of repeated keys, and the fast path of validation accepts only
    what orjson reads the same way, so an event's service is the name routed by."""
    if line.size:
        return 0
    try:
        service: object = _ROUTE.decode(line.raw).service
    except (msgspec.DecodeError, RecursionError):
        try:
            obj = orjson.loads(line.raw)
        except orjson.JSONDecodeError:
            return 0
        service = obj.get("service") if type(obj) is dict else None
        if type(service) is not str:
            return 0
    assert isinstance(service, str)
    return shard_of_service(service, shards)


@dataclass(frozen=True)
class ShardJob:
    """What one shard process needs (plain values: it crosses a process boundary)."""

    files: tuple[str, ...]
    shard: int
    shards: int
    allowed_lateness_ms: int
    duplicate_window_ms: int
    mutable_release_patterns: tuple[str, ...]
    clock: Clock
    """A module-level function (pickled by reference)."""
    range_bytes: int | None = None
    """The size of the byte ranges the input is cut into (default: the input over the
    workers); tests make it tiny to put the cuts everywhere."""
    workers: int | None = None
    """The processes that route the input and run the shards (None: one a shard)."""

    @property
    def processes(self) -> int:
        return self.workers or self.shards


@dataclass(frozen=True)
class ShardResult:
    report: ReplayReport
    alerts_path: str
    dead_letters_path: str


_FRAME_LENGTH: Final = struct.Struct("<I")
_EVENT_KEY: Final = struct.Struct(">QB")
_PLACE_KEY: Final = struct.Struct(">Q")
_TIME_BIAS: Final = 1 << 63
_ID_BYTES: Final = bytes(range(1, 256)) + b"\xff"
"""Each byte of an event id moved up by one, so that a 0 can end it: UTF-8 has no byte
above 0xF4, and the moved bytes keep their order."""

_DeadLetterRecord = tuple[tuple[Any, ...], tuple[Any, ...]]
"""A dead letter of a shard: the key it merges by, and its fields in order."""


def _event_key(order: tuple[int, int, str], place: int) -> bytes:
    """Bytes that compare as ``(order, place)`` does: the time (biased to unsigned) and
    the type's rank big-endian, the event id's UTF-8 (byte order is code point order)
    with every byte moved up by one and a 0 after it (a shorter id that is a prefix of
    a longer one sorts first, as in ``str``), then the place. Followed by an alert's
    place among its event's alerts (4 bytes), the key has a fixed length after the 0."""
    at, rank, event_id = order
    return b"".join((
        _EVENT_KEY.pack(at + _TIME_BIAS, rank),
        event_id.encode("utf-8", "surrogatepass").translate(_ID_BYTES),
        b"\0",
        _PLACE_KEY.pack(place),
    ))


_EVENT_ID_AT: Final = _EVENT_KEY.size
_AFTER_ID: Final = 1 + 8 + 4
"""An alert record's bytes after its id's 0 and before its JSON line: the 0, the place,
the alert's place among its event's."""


def alert_line_of(record: bytes) -> bytes:
    """The JSON line of an alert record (after its key)."""
    return record[record.index(b"\0", _EVENT_ID_AT) + _AFTER_ID:]


def merged_frames(streams: list[Iterator[list[bytes]]]) -> Iterator[list[bytes]]:
    """Sorted lists of bytes merged into one order, as lists: each round takes, from
    every stream's current list, what is no greater than the least of their last
    elements (nothing later in any stream can come before that), and sorts it.
    ``list.sort`` merges those sorted runs in C, so no Python step is spent per element
    on the comparison. Every round empties at least one stream's list."""
    pending: list[list[bytes]] = []
    sources: list[Iterator[list[bytes]]] = []
    for stream in streams:
        for frame in stream:
            if frame:
                pending.append(frame)
                sources.append(stream)
                break
    while len(pending) > 1:
        bound = min(frame[-1] for frame in pending)
        batch: list[bytes] = []
        for i, frame in enumerate(pending):
            cut = bisect.bisect_right(frame, bound)
            batch += frame[:cut] if cut < len(frame) else frame
            pending[i] = frame[cut:] if cut < len(frame) else []
        batch.sort()
        yield batch
        for i in reversed(range(len(pending))):
            if not pending[i]:
                refill = next((f for f in sources[i] if f), None)
                if refill is None:
                    del pending[i], sources[i]
                else:
                    pending[i] = refill
    if pending:
        yield pending[0]
        yield from sources[0]


class _FrameWriter:
    """Records gathered into frames, one ``marshal`` call and one write a frame.
    ``marshal`` (lists of bytes and plain tuples) rather than pickle: loading it runs no
    code, and these files sit in ``$TMPDIR``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.records: list[Any] = []

    def add(self, record: Any) -> None:
        self.records.append(record)
        if len(self.records) >= FRAME_RECORDS:
            self.flush()

    def flush(self) -> None:
        if self.records:
            data = marshal.dumps(self.records)
            self.out.write(_FRAME_LENGTH.pack(len(data)))
            self.out.write(data)
            self.records = []


def _read_frames(path: str) -> Iterator[Any]:
    with open(path, "rb") as handle:
        read = handle.read
        while head := read(_FRAME_LENGTH.size):
            yield marshal.loads(read(_FRAME_LENGTH.unpack(head)[0]))


def _read_records(path: str) -> Iterator[Any]:
    for frame in _read_frames(path):
        yield from frame


def _read_dead_letters(path: str) -> Iterator[tuple[tuple[Any, ...], DeadLetter]]:
    for order, fields in _read_records(path):
        yield order, DeadLetter(*fields)


class _ShardReplayer(Replayer):
    """A replayer that knows, while it feeds, which event its alerts come from."""

    def __init__(self, shard: int, shards: int, *args: Any) -> None:
        super().__init__(*args)
        self.shard = shard
        self.shards = shards
        self.feeding: tuple[tuple[int, int, str], int] | None = None
        """The order key and input place of the event being fed (None in the first pass)."""

    def feed_sorted(self, items: Iterable[Any]) -> None:
        super().feed_sorted(self._tracked(items))

    def _tracked(self, items: Iterable[Any]) -> Iterator[Any]:
        shard, shards = self.shard, self.shards
        for item in items:
            event: Event = item[2]
            if shard_of_service(event.service, shards) != shard:
                # Cannot happen (see shard_of); if it did, a service's state would be split
                # between shards and its alerts wrong: stop rather than print them.
                raise AssertionError(
                    f"relsec bug: shard {shard} of {shards} was given an event of "
                    f"{event.service!r}, which another shard owns"
                )
            self.feeding = (item[0], item[1])
            yield item


class _ShardOutput:
    """Where one shard's alerts and dead letters go, each with the key it merges by."""

    def __init__(self, alerts: BinaryIO, dead_letters: BinaryIO, lines: ShardLines) -> None:
        self.alerts = _FrameWriter(alerts)
        self.dead_letters = _FrameWriter(dead_letters)
        self.lines = lines
        self.replayer: _ShardReplayer | None = None
        self._last_feeding: object = None
        self._event_key = b""
        self._in_event = 0

    def position(self) -> int:
        return self.lines.place

    def on_alert(self, alert: Alert) -> None:
        assert self.replayer is not None
        feeding = self.replayer.feeding
        assert feeding is not None  # alerts come only while feeding
        if feeding is not self._last_feeding:
            self._last_feeding, self._in_event = feeding, 0
            self._event_key = _event_key(*feeding)
        data = orjson.dumps(alert.to_dict(), option=orjson.OPT_APPEND_NEWLINE)
        self.alerts.add(b"".join((self._event_key, self._in_event.to_bytes(4, "big"), data)))
        self._in_event += 1

    def on_dead_letter(self, dl: DeadLetter) -> None:
        assert self.replayer is not None
        feeding = self.replayer.feeding
        order = (0, self.lines.place) if feeding is None else (1, feeding[0], feeding[1])
        self.dead_letters.add((order, dataclasses.astuple(dl)))

    def close(self) -> None:
        self.alerts.flush()
        self.dead_letters.flush()


def route(task: RangeTask, shards: int) -> RoutedTask:
    """Phase 1 of one task (in a process of the pool): its lines into per-shard buckets."""
    return route_task(task, shards, shard_of)


def run_shard(job: ShardJob, sources: list[BucketSource]) -> ShardResult:
    """Phase 2 of one shard: its sorted replay over its buckets (``sources``, one per
    task in input order); its alerts and dead letters go to two temporary files (0600),
    which the caller reads and removes. The buckets are left to the caller."""
    settings = Settings(
        allowed_lateness_ms=job.allowed_lateness_ms,
        duplicate_window_ms=job.duplicate_window_ms,
        mutable_release_patterns=job.mutable_release_patterns,
    )
    engine = make_engine(False, job.allowed_lateness_ms, settings.engine_config())
    paths: list[str] = []
    try:
        alerts_fd, alerts_path = tempfile.mkstemp(prefix="relsec-shard-", suffix=".alerts")
        paths.append(alerts_path)
        letters_fd, letters_path = tempfile.mkstemp(prefix="relsec-shard-", suffix=".dead")
        paths.append(letters_path)
        with os.fdopen(alerts_fd, "wb") as alerts, os.fdopen(letters_fd, "wb") as letters:
            output = _ShardOutput(alerts, letters, ShardLines(sources))
            output.replayer = _ShardReplayer(
                job.shard, job.shards, engine, job.clock, output.on_alert, output.on_dead_letter
            )
            report = replay_sorted(
                output.lines,
                output.replayer,
                # A worker runs one shard at a time: its share is the workers'.
                spill_events=max(10_000, SPILL_EVENTS // job.processes),
                position=output.position,
            )
            output.close()
        return ShardResult(report, alerts_path, letters_path)
    except BaseException:
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise


def merge_reports(reports: Iterable[ReplayReport]) -> ReplayReport:
    total = ReplayReport()
    for r in reports:
        total.read += r.read
        total.applied += r.applied
        total.duplicates += r.duplicates
        total.invalid += r.invalid
        total.late += r.late
        total.future += r.future
        total.firing += r.firing
        total.retracted += r.retracted
        for rule, count in r.by_rule.items():
            total.by_rule[rule] = total.by_rule.get(rule, 0) + count
    return total


def shard_jobs(job: ShardJob) -> list[ShardJob]:
    """``job`` for each of its ``shards``."""
    return [dataclasses.replace(job, shard=shard) for shard in range(job.shards)]


_Result = TypeVar("_Result")


def run_all(
    executor: Executor | None,
    function: Callable[..., _Result],
    calls: list[tuple[Any, ...]],
    discard: Callable[[list[_Result]], None],
) -> list[_Result]:
    """``function(*call)`` for each call, in the executor's processes (None: here, one
    after another); every result in order, or the first failure, raised once every call
    has ended, with ``discard`` given the results that were made (to remove their
    files)."""
    results: list[_Result] = []
    failure: BaseException | None = None
    try:
        if executor is None:
            for call in calls:
                results.append(function(*call))
        else:
            for future in [executor.submit(function, *call) for call in calls]:
                try:
                    results.append(future.result())
                except Exception as exc:  # the others still end, and their files go
                    failure = failure or exc
    except BaseException:  # Ctrl-C (the processes get it too and remove their own files)
        discard(results)
        raise
    if failure is not None:
        discard(results)
        raise failure
    return results


def remove_outputs(results: Iterable[ShardResult]) -> None:
    for result in results:
        for path in (result.alerts_path, result.dead_letters_path):
            with contextlib.suppress(OSError):
                os.unlink(path)


def route_input(job: ShardJob, executor: Executor | None) -> list[RoutedTask]:
    """Phase 1: the input planned into tasks (one a worker, about) and routed; raises
    the first task's failure (a file that cannot be read), with every bucket removed."""
    tasks = plan_tasks(job.files, job.processes, range_bytes=job.range_bytes)
    return run_all(executor, route, [(task, job.shards) for task in tasks], remove_buckets)


def balanced_groups(sizes: list[int], groups: int) -> list[list[int]]:
    """The indexes of ``sizes`` in ``groups`` groups of about equal sums: the largest
    first, each into the group with the least so far (longest processing time first);
    each group largest first."""
    heap = [(0, group) for group in range(groups)]
    members: list[list[int]] = [[] for _ in range(groups)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        total, group = heapq.heappop(heap)
        members[group].append(index)
        heapq.heappush(heap, (total + sizes[index], group))
    return [group for group in members if group]


ShardGroup = list[tuple[int, list[BucketSource]]]
"""A worker's shards in phase 2: each with its buckets."""


def shard_plan(job: ShardJob, routed: list[RoutedTask]) -> list[ShardGroup]:
    """Phase 2's work for each worker: shards and their buckets, balanced by the bytes
    routed to each shard (a shard's cost follows its events)."""
    inputs = shard_inputs(routed, job.shards)
    sizes = [0] * job.shards
    for result in routed:
        for shard, path in enumerate(result.buckets):
            if path is not None:
                sizes[shard] += os.path.getsize(path)
    return [
        [(shard, inputs[shard]) for shard in group]
        for group in balanced_groups(sizes, job.processes)
    ]


def run_shard_group(job: ShardJob, group: ShardGroup) -> list[ShardResult]:
    """A worker's shards, one after another (see :func:`run_shard`)."""
    results: list[ShardResult] = []
    try:
        for shard, sources in group:
            results.append(run_shard(dataclasses.replace(job, shard=shard), sources))
    except BaseException:
        remove_outputs(results)
        raise
    return results


def run_shards(
    job: ShardJob, routed: list[RoutedTask], executor: Executor | None
) -> list[ShardResult]:
    """Phase 2: every shard over its buckets, in groups, one a worker; the buckets are
    removed after."""
    try:
        calls = [(job, group) for group in shard_plan(job, routed)]
        groups = run_all(
            executor,
            run_shard_group,
            calls,
            lambda made: remove_outputs(r for results in made for r in results),
        )
        return [result for results in groups for result in results]
    finally:
        remove_buckets(routed)


def merge_shards(
    results: list[ShardResult],
    on_alert_line: Callable[[bytes], None],
    on_dead_letter: Callable[[DeadLetter], None],
) -> ReplayReport:
    """The shards' output in one process's order: dead letters first, then alert lines
    (JSON, each ending in a newline). The report is the sum of the shards' (``read``
    counts every line once: each line has one owner). The files are removed."""
    try:
        for _, dl in heapq.merge(*(_read_dead_letters(r.dead_letters_path) for r in results)):
            on_dead_letter(dl)
        index, after_id = bytes.index, _AFTER_ID
        for batch in merged_frames([_read_frames(r.alerts_path) for r in results]):
            for record in batch:  # alert_line_of, inline: this loop is the merge's cost
                on_alert_line(record[index(record, b"\0", _EVENT_ID_AT) + after_id:])
        return merge_reports(r.report for r in results)
    finally:
        remove_outputs(results)


SHARDS_PER_WORKER: Final = 4
"""Shards a worker runs, one after another. Services hash to shards unevenly (and some
services are much larger than others); more shards than workers, grouped by the bytes
routed to each, even out the workers' loads."""


def sharded_job(job: ShardJob, shards_per_worker: int = SHARDS_PER_WORKER) -> ShardJob:
    """``job`` (``shards``: the workers wanted) with ``shards_per_worker`` shards a worker."""
    return dataclasses.replace(job, shards=job.shards * shards_per_worker, workers=job.shards)


def replay_sorted_sharded(
    job: ShardJob,
    on_alert_line: Callable[[bytes], None],
    on_dead_letter: Callable[[DeadLetter], None],
    *,
    in_processes: bool = True,
    shards_per_worker: int = SHARDS_PER_WORKER,
) -> ReplayReport:
    """Sorted replay of ``job.files`` in ``job.shards`` processes, merged. The same
    processes run both phases (each starts and imports once); ``in_processes=False``
    runs every task and shard here, one after another (tests)."""
    job = sharded_job(job, shards_per_worker)
    if not in_processes:
        results = run_shards(job, route_input(job, None), None)
        return merge_shards(results, on_alert_line, on_dead_letter)
    context = get_context("spawn")  # no fork of a process that may hold threads
    with ProcessPoolExecutor(max_workers=job.processes, mp_context=context) as pool:
        results = run_shards(job, route_input(job, pool), pool)
    return merge_shards(results, on_alert_line, on_dead_letter)
