"""Sorted replay sharded by service (``relsec replay --workers N``) says exactly what one
process says: the same alerts in the same order, the same dead letters, the same counts.

In process (every shard run in turn, then merged) under hypothesis, on real shapes: a
scanner report of hundreds of findings at one instant, one service holding most of the
stream, events of equal order keys in different services, duplicates, hostile lines
(the fuzz suite's mutations) and over-long lines; the routing agrees with the decoded
event on every line; and end to end through ``relsec`` in real processes, with the
errors of options that cannot shard.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.engine.core import DUPLICATE_WINDOW_MS
from agents.model.events import Event
from streams.replay import (
    MAX_LINE_BYTES,
    DeadLetter,
    Replayer,
    ReplayReport,
    _Line,
    decode_line,
    make_engine,
    read_lines,
    replay_sorted,
)
from streams.replay_ranges import ShardLines, remove_buckets, shard_inputs
from streams.replay_shards import (
    ShardJob,
    _event_key,
    alert_line_of,
    balanced_groups,
    merge_shards,
    merged_frames,
    route_input,
    run_shards,
    shard_of,
    shard_of_service,
)
from streams.settings import Settings
from tests.fuzz.hostile import DrawChooser, hostile_line
from tests.fuzz.replay_harness import valid_events

REPO = Path(__file__).resolve().parents[1]
UTF8_BOM = b"\xef\xbb\xbf"
FIXED_NOW_MS = 1_800_000_000_000  # 2027-01-15: after every event below, so none is "future"
LATENESS_MS = 24 * 3_600_000


def fixed_clock() -> int:
    return FIXED_NOW_MS


def skewed_stream() -> list[dict[str, Any]]:
    """The fuzz suite's stream (a scanner burst of 300 findings inside), most of it moved
    onto one service, plus twins: one deploy and one finding, each with one event_id at
    one instant, in many services (alerts of equal order keys in different shards: they
    must still come out in the file's order, which is not the services' order)."""
    events = valid_events(events=400, services=8, scanner_burst=300)
    for i, event in enumerate(events):
        if i % 5 and event["service"] != "story":
            event["service"] = "svc-hot"
    start = events[0]["occurred_at"]
    deploy = {
        "type": "deploy",
        "event_id": "twin-deploy",
        "occurred_at": start,
        "source": "argo",
        "environment": "prod",
        "release": "9.9.9",
        "action": "deploy",
    }
    finding = {
        "type": "security_flag",
        "event_id": "twin-flag",
        "occurred_at": start,
        "source": "trivy",
        "flag_id": "CVE-2026-7777",
        "release": "9.9.9",
        "status": "raised",
        "severity": "critical",
        "title": "twin",
    }
    twins = [f"twin-{name}" for name in "qwertyuiop"]
    return [
        *events,
        *({**deploy, "service": name} for name in twins),
        *({**finding, "service": name} for name in reversed(twins)),
    ]


Output = tuple[list[bytes], list[DeadLetter], ReplayReport]
"""Alert lines, dead letters, counts."""


def one_process(files: Sequence[str]) -> Output:
    alerts: list[bytes] = []
    letters: list[DeadLetter] = []
    engine = make_engine(False, LATENESS_MS, Settings().engine_config())
    replayer = Replayer(
        engine,
        fixed_clock,
        lambda a: alerts.append(orjson.dumps(a.to_dict()) + b"\n"),
        letters.append,
    )
    report = replay_sorted(read_lines(files), replayer, spill_events=150)
    return alerts, letters, report


def sharded(
    files: Sequence[str], shards: int, range_bytes: int | None = None, workers: int | None = None
) -> tuple[list[bytes], list[DeadLetter], ReplayReport]:
    """Both phases run here, one task and one group of shards after another, then the
    merge; no bucket or shard file is left behind."""
    job = ShardJob(
        tuple(files), 0, shards, LATENESS_MS, DUPLICATE_WINDOW_MS, (), fixed_clock,
        range_bytes=range_bytes, workers=workers,
    )
    alerts: list[bytes] = []
    letters: list[DeadLetter] = []
    routed = route_input(job, None)
    results = run_shards(job, routed, None)
    for task in routed:
        assert not any(os.path.exists(path) for path in task.paths())
    report = merge_shards(results, alerts.append, letters.append)
    for r in results:
        assert not os.path.exists(r.alerts_path) and not os.path.exists(r.dead_letters_path)
    return alerts, letters, report


FUZZ = settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


BLANKS = (b"", b"  ", b"\t", b" \r")
"""Lines that are no record (one process skips them, but counts them in line numbers)."""


def framed(rng: random.Random, lines: list[bytes], bom: bool) -> bytes:
    """``lines`` as a file would hold them: each ended by LF or CRLF, blank lines between,
    maybe a byte order mark in front and no terminator after the last line."""
    out = [UTF8_BOM] if bom else []
    for raw in lines:
        if rng.random() < 0.1:
            out.append(rng.choice(BLANKS) + b"\n")
        out.append(raw + rng.choice((b"\n", b"\r\n")))
    if lines and rng.random() < 0.5:  # the last line without its terminator
        out[-1] = out[-1].rstrip(b"\n").removesuffix(b"\r")
    return b"".join(out)


@FUZZ
@given(
    data=st.data(),
    shards=st.integers(2, 9),
    split=st.booleans(),
    range_bytes=st.one_of(st.none(), st.integers(1, 24), st.integers(25, 5_000)),
    workers=st.integers(1, 4),
)
def test_shards_merge_into_what_one_process_says(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    shards: int,
    split: bool,
    range_bytes: int | None,
    workers: int,
) -> None:
    """Whatever the cuts: ``range_bytes`` of a few bytes puts range boundaries inside
    lines, inside CRLFs, inside the over-long line, right after a byte order mark, on
    blank lines; the files' framing varies (LF, CRLF, blank lines, a BOM opening a file
    and one opening a line inside it, a last line without terminator), and one file may
    be named twice. Fewer workers than shards: each runs a group of them."""
    chooser = DrawChooser(data, max_string=3_000)
    events = skewed_stream()
    lines = [orjson.dumps(e) for e in events]
    for serial in range(chooser.integer(0, 25)):
        base = events[chooser.integer(0, len(events) - 1)]
        lines.insert(chooser.integer(0, len(lines)), hostile_line(chooser, base, serial).raw)
    lines.insert(
        chooser.integer(0, len(lines)),
        b'{"service": "svc-hot", "x": "' + b"y" * MAX_LINE_BYTES + b'"}',
    )
    # A BOM inside a file is no BOM: the line is not JSON, in one process as in ranges.
    lines.insert(chooser.integer(1, len(lines)), UTF8_BOM + lines[0])
    lines.extend(lines[: chooser.integer(0, 30)])  # re-sent: duplicates of the first lines
    folder = tmp_path_factory.mktemp("shards")
    cut = len(lines) // 3 if split else len(lines)
    files = [str(folder / "a.jsonl"), str(folder / "b.jsonl")]
    rng = random.Random(data.draw(st.integers(0, 2**32), label="framing seed"))
    Path(files[0]).write_bytes(framed(rng, lines[:cut], bom=rng.random() < 0.5))
    Path(files[1]).write_bytes(framed(rng, lines[cut:], bom=rng.random() < 0.5))
    if data.draw(st.booleans()):
        files.append(files[0])  # read again: its events are duplicates, its bad lines not

    expected = one_process(files)
    got = sharded(files, shards, range_bytes, min(workers, shards))
    assert expected[2].applied > 0 and expected[2].firing > 0 and expected[2].invalid > 0
    assert got[0] == expected[0]  # the same alert lines, byte for byte, in the same order
    assert got[1] == expected[1]  # the same dead letters: file, line number, bytes, size
    assert got[2] == expected[2]


@settings(FUZZ, max_examples=40)
@given(
    data=st.data(),
    shards=st.integers(1, 6),
    range_bytes=st.one_of(st.integers(1, 12), st.integers(13, 400), st.none()),
)
def test_the_buckets_hold_every_line_once_with_its_number_and_place(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    shards: int,
    range_bytes: int | None,
) -> None:
    """Phase 1 and the offsets alone, cut anywhere: every shard's lines, put together by
    place, are the lines one process reads (file, number, bytes, size) at the places it
    reads them, and each shard has them in input order."""
    rng = random.Random(data.draw(st.integers(0, 2**32), label="framing seed"))
    valid = [orjson.dumps(e) for e in valid_events(events=40, services=6, scanner_burst=10)]
    pool = [*valid, b"{not json", b"\xef\xbb\xbf{}", b"\r", b"x" * 40, b'{"service": 7}']
    folder = tmp_path_factory.mktemp("ranges")
    files = []
    for name in "abc":
        lines = [rng.choice(pool) for _ in range(rng.randint(0, 30))]
        path = folder / f"{name}.jsonl"
        path.write_bytes(framed(rng, lines, bom=rng.random() < 0.5))
        files.append(str(path))
    if rng.random() < 0.3:
        files.append(files[0])
    expected = list(enumerate(read_lines(files)))

    job = ShardJob(
        tuple(files), 0, shards, LATENESS_MS, DUPLICATE_WINDOW_MS, (), fixed_clock,
        range_bytes=range_bytes,
    )
    routed = route_input(job, None)
    try:
        got: list[tuple[int, _Line]] = []
        for shard, sources in enumerate(shard_inputs(routed, shards)):
            shard_lines = ShardLines(sources)
            places = []
            for line in shard_lines:
                assert shard_of(line, shards) == shard
                places.append(shard_lines.place)
                got.append((shard_lines.place, line))
            assert places == sorted(places)
        assert sorted(got) == expected
    finally:
        remove_buckets(routed)
    assert not any(os.path.exists(path) for task in routed for path in task.paths())


def test_the_hot_service_has_one_shard_and_every_line_one_owner(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in skewed_stream()))
    owners = [shard_of(line, 4) for line in read_lines([str(path)])]
    hot = {shard_of(line, 4) for line in read_lines([str(path)]) if b'"svc-hot"' in line.raw}
    assert hot == {shard_of_service("svc-hot", 4)}
    assert len(set(owners)) > 1  # the rest spreads


@FUZZ
@given(data=st.data())
def test_a_line_is_routed_by_the_service_its_event_has(data: st.DataObject) -> None:
    """Whatever a line decodes to (either path of validation), its shard is its event's
    service's: the routing decode and validation never read two names."""
    chooser = DrawChooser(data, max_string=3_000)
    valid = valid_events(events=60, services=5, scanner_burst=5)
    from streams.replay import _Line

    for serial in range(40):
        base = valid[chooser.integer(0, len(valid) - 1)]
        raw = orjson.dumps(base) if serial % 4 == 0 else hostile_line(chooser, base, serial).raw
        line = _Line("in.jsonl", serial + 1, raw)
        decoded = decode_line(line)
        for shards in (2, 3, 7):
            if isinstance(decoded, Event):
                assert shard_of(line, shards) == shard_of_service(decoded.service, shards)


def test_routing_by_bytes_and_by_decoders_agree_on_tricky_spellings() -> None:
    """Lines whose bytes hold ``"service"`` more than once, escaped, nested, spaced or as
    text: each routes by its event's service."""
    from streams.replay import _Line

    deploy = {
        "type": "deploy",
        "event_id": "e1",
        "occurred_at": "2026-05-01T00:00:00Z",
        "source": "argo",
        "environment": "prod",
        "release": "1.2.3",
        "action": "deploy",
    }
    plain = orjson.dumps({**deploy, "service": "payments"})
    tricky = [
        plain,
        # the top-level key escaped, a nested literal one (an unknown field)
        plain.replace(b'"service"', b'"\\u0073ervice"')[:-1] + b',"x":{"service":"decoy"}}',
        # the name spelled with an escape
        plain.replace(b'"payments"', b'"pay\\u006dents"'),
        # repeated keys (the last wins in both decoders)
        plain[:-1] + b',"service":"billing"}',
        # spaced, and "service" as a value's text
        plain.replace(b'"service":', b'"service" : '),
        orjson.dumps({**deploy, "service": "payments", "reason": "service"}),
        orjson.dumps({**deploy, "service": "p\u00e4yments"}),
    ]
    routed = 0
    for number, raw in enumerate(tricky, 1):
        line = _Line("tricky.jsonl", number, raw)
        decoded = decode_line(line)
        if isinstance(decoded, Event):
            routed += 1
            for shards in (2, 3, 7, 16):
                assert shard_of(line, shards) == shard_of_service(decoded.service, shards), raw
    assert routed >= 5


# --- end to end, in real processes ----------------------------------------------------


def relsec(*args: str, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    script = Path(sys.executable).with_name("relsec")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "streams.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    return subprocess.run(
        [*command, *args], capture_output=True, env=env, cwd=REPO, timeout=300, check=False
    )


def without_detected_at(output: bytes) -> list[dict[str, Any]]:
    records = [orjson.loads(line) for line in output.splitlines()]
    for record in records:
        record.pop("detected_at", None)
    return records


def test_relsec_replay_workers_prints_what_one_process_prints(tmp_path: Path) -> None:
    """A backfill over two files: one service with most of it, a scanner report of
    2 000 findings at one instant on its running release, bad lines."""
    stream = skewed_stream()
    at = stream[len(stream) // 2]["occurred_at"]
    running = [
        e["release"]
        for e in stream[: len(stream) // 2]
        if e["type"] == "deploy" and e["service"] == "svc-hot"
    ][-1]
    report = [
        {
            "type": "security_flag",
            "event_id": f"trivy-{i}",
            "occurred_at": at,
            "source": "trivy",
            "service": "svc-hot",
            "flag_id": f"CVE-2026-{20000 + i}",
            "release": running,
            "status": "raised",
            "severity": "high",
            "title": f"f{i}",
        }
        for i in range(2_000)
    ]
    middle = len(stream) // 2
    lines = [orjson.dumps(e) for e in stream[:middle]] + [b"{not json", b'{"type": "deploy"}']
    lines += [orjson.dumps(e) for e in report + stream[middle:]]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"\n".join(lines[:300]) + b"\n")
    second.write_bytes(b"\n".join(lines[300:]) + b"\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    runs = {}
    for workers in ("1", "3"):
        dead = tmp_path / f"dead-{workers}.jsonl"
        runs[workers] = relsec(
            "replay",
            "--workers",
            workers,
            "--dead-letters",
            str(dead),
            str(first),
            str(second),
            tmp=scratch,
        )
        assert runs[workers].returncode == 0, runs[workers].stderr.decode()
    one, three = runs["1"], runs["3"]
    assert len(one.stdout.splitlines()) > 2_000
    assert without_detected_at(three.stdout) == without_detected_at(one.stdout)
    assert three.stderr == one.stderr  # each bad line's message, then the summary
    assert without_detected_at((tmp_path / "dead-3.jsonl").read_bytes()) == without_detected_at(
        (tmp_path / "dead-1.jsonl").read_bytes()
    )
    assert list(scratch.iterdir()) == []  # no shard file or spilled run left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2", "--as-arrived"], "--workers: only sorted replay runs in several"),
        (["--workers", "2", "-"], "save standard input to a file"),
        (["--workers", "0"], "must be at least 1"),
    ],
)
def test_workers_refused_where_replay_cannot_shard(
    tmp_path: Path, args: list[str], message: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(orjson.dumps(skewed_stream()[0]) + b"\n")
    proc = relsec("replay", *args, str(path), tmp=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr.decode()
    assert proc.stdout == b""


def test_an_unreadable_file_is_named_as_one_process_names_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.jsonl")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    one = relsec("replay", missing, tmp=scratch)
    three = relsec("replay", "--workers", "3", missing, tmp=scratch)
    assert one.returncode == three.returncode != 0
    assert three.stderr == one.stderr
    assert b"missing.jsonl: cannot read" in three.stderr
    assert list(scratch.iterdir()) == []  # the shards' output files went with them


# --- the merge's keys and its merge of sorted frames ---------------------------------

ORDER_KEYS = st.tuples(
    st.integers(-(2**62), 2**62),
    st.sampled_from((0, 1, 2)),
    st.text(st.characters(codec="utf-8") | st.sampled_from("\x00\x01\ud800\udfff"), max_size=6),
)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.lists(st.tuples(ORDER_KEYS, st.integers(0, 2**40)), min_size=2, max_size=12))
def test_an_alert_key_compares_as_its_order_key_and_place(
    keys: list[tuple[tuple[int, int, str], int]],
) -> None:
    """Ids that are prefixes of one another, hold a NUL, a lone surrogate or characters
    of every UTF-8 length; times before 1970."""
    encoded = {key: _event_key(*key) for key in keys}
    assert sorted(keys, key=encoded.__getitem__) == sorted(keys)
    for key in keys:
        record = encoded[key] + (3).to_bytes(4, "big") + b'{"alert": 1}\n'
        assert alert_line_of(record) == b'{"alert": 1}\n'


@settings(max_examples=200, derandomize=True, database=None)
@given(
    st.lists(st.lists(st.binary(max_size=4), unique=True), max_size=5),
    st.lists(st.integers(0, 6), min_size=1),
)
def test_merged_frames_is_one_sorted_order(
    streams: list[list[bytes]], frame_sizes: list[int]
) -> None:
    """Streams cut into frames of any size, empty ones included."""
    taken: set[bytes] = set()  # the streams' elements made unique across streams
    unique = []
    for stream in streams:
        unique.append(sorted(set(stream) - taken))
        taken.update(stream)

    def frames(stream: list[bytes]) -> Iterator[list[bytes]]:
        at = 0
        for size in frame_sizes * (len(stream) + 1):
            if at >= len(stream):
                return
            yield stream[at:at + size]
            at += size
        yield stream[at:]

    merged = [b for batch in merged_frames([frames(s) for s in unique]) for b in batch]
    assert merged == sorted(taken)


@settings(max_examples=200, derandomize=True, database=None)
@given(st.lists(st.integers(0, 10**9), max_size=40), st.integers(1, 16))
def test_balanced_groups_give_each_shard_one_worker_and_even_loads(
    sizes: list[int], workers: int
) -> None:
    groups = balanced_groups(sizes, workers)
    assert sorted(i for group in groups for i in group) == list(range(len(sizes)))
    assert len(groups) <= workers
    if sizes:  # longest-first: no worker holds more than an even share plus one shard
        heaviest = max(sum(sizes[i] for i in group) for group in groups)
        assert heaviest <= sum(sizes) / workers + max(sizes)
