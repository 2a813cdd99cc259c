"""``relsec replay`` end to end in a subprocess: exit codes, the stdout/stderr contract,
bad lines, retractions, dead letters and the allowed lateness (SPEC §5, §6)."""

from __future__ import annotations

import base64
import io
import os
import re
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import replay

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(
    r"^relsec replay: read=(?P<read>\d+) applied=(?P<applied>\d+) "
    r"duplicates=(?P<duplicates>\d+) dead_lettered=(?P<dead_lettered>\d+) "
    r"\(invalid=(?P<invalid>\d+) late=(?P<late>\d+) future=(?P<future>\d+)\) "
    r"alerts_firing=(?P<firing>\d+) retracted=(?P<retracted>\d+)$"
)
ALERT_KEYS = {
    "alert_id", "rule", "status", "severity", "service", "environment", "release",
    "occurred_at", "detected_at", "summary", "notify", "evidence", "recommendation",
}


def _relsec() -> list[str]:
    script = Path(sys.executable).with_name("relsec")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "streams.cli"]


def relsec(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*_relsec(), *args], input=stdin, capture_output=True, env=env, cwd=REPO, timeout=120
    )


def summary(proc: subprocess.CompletedProcess[bytes]) -> dict[str, int]:
    last = proc.stderr.decode().rstrip("\n").splitlines()[-1]
    m = SUMMARY.match(last)
    assert m is not None, f"last stderr line is not the summary: {last!r}"
    counts = {k: int(v) for k, v in m.groupdict().items()}
    assert counts["read"] == counts["applied"] + counts["duplicates"] + counts["dead_lettered"]
    assert counts["dead_lettered"] == counts["invalid"] + counts["late"] + counts["future"]
    return counts


def alerts(proc: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    """stdout holds alert JSON lines and nothing else."""
    out = []
    for line in proc.stdout.decode().splitlines():
        obj = orjson.loads(line)
        assert isinstance(obj, dict)
        assert set(obj) >= ALERT_KEYS, line
        assert obj["status"] in ("firing", "retracted")
        out.append(obj)
    return out


def ev(kind: str, eid: str, at: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": kind, "event_id": eid, "occurred_at": at,
                            "source": "test", "service": "svc"}
    if kind == "deploy":
        base.update(environment="prod", action="deploy", previous_release=None)
    elif kind == "incident":
        base.update(environment="prod", severity="sev2", title="t", status="opened")
    else:
        base.update(status="raised", severity="high", title="f", vulnerabilities=[])
    base.update(fields)
    return base


def write(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    with path.open("wb") as f:
        for row in rows:
            f.write(row.encode() if isinstance(row, str) else orjson.dumps(row))
            f.write(b"\n")
    return path


# The story of a rollback to a release flagged after the fact: the flag (11:30) arrives late.
STORY = [
    ev("deploy", "d1", "2026-03-02T10:00:00Z", release="r1"),
    ev("deploy", "d2", "2026-03-02T11:00:00Z", release="r2", previous_release="r1"),
    ev("deploy", "d3", "2026-03-02T12:00:00Z", release="r1", previous_release="r2",
       action="rollback"),
    ev("security_flag", "f1", "2026-03-02T11:30:00Z", flag_id="CVE-1", release="r1",
       severity="critical"),
]


def test_help() -> None:
    proc = relsec("replay", "--help")
    assert proc.returncode == 0
    for option in ("--as-arrived", "--allowed-lateness", "--strict", "--dead-letters"):
        assert option in proc.stdout.decode()


def test_clean_run_exits_0_and_accounts_for_every_line(tmp_path: Path) -> None:
    path = write(tmp_path / "story.jsonl", [*STORY, STORY[0]])  # one re-sent line
    proc = relsec("replay", str(path))
    assert proc.returncode == 0, proc.stderr
    got = alerts(proc)
    counts = summary(proc)
    assert counts["read"] == 5
    assert (counts["applied"], counts["duplicates"], counts["dead_lettered"]) == (4, 1, 0)
    assert counts["firing"] == len(got) == 1
    assert counts["retracted"] == 0
    [alert] = got
    assert (alert["rule"], alert["severity"], alert["release"]) == (
        "rollback-to-flagged-release", "critical", "r1")
    assert proc.stderr.decode().count("\n") == 1, "a clean run prints only the summary"


def test_bad_lines_are_reported_with_file_and_line_and_counted(tmp_path: Path) -> None:
    bad_missing = ev("deploy", "d9", "2026-03-02T13:00:00Z", release="r9")
    del bad_missing["action"]
    rows: list[dict[str, Any] | str] = [
        STORY[0],
        "{not json",
        "",
        bad_missing,
        ev("deploy", "d8", "2026-03-02T13:00:00", release="r8"),
        *STORY[1:],
        ev("deploy", "d7", "2026-03-02T13:00:00Z", release="r7", status="maybe"),
    ]
    path = write(tmp_path / "bad.jsonl", rows)
    proc = relsec("replay", str(path))
    assert proc.returncode == 0
    err = proc.stderr.decode()
    assert f"{path}:2:" in err
    assert f"{path}:4:" in err and "'action'" in err
    assert f"{path}:5:" in err and "offset" in err
    assert f"{path}:9:" in err and "'status'" in err
    assert f"{path}:3:" not in err  # the blank line is no record
    counts = summary(proc)
    assert (counts["read"], counts["invalid"], counts["applied"]) == (8, 4, 4)
    assert len(alerts(proc)) == 1  # good lines still give their alert


def test_strict_exits_1_on_a_bad_line_but_still_writes_alerts(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", [*STORY, "[1, 2]"])
    proc = relsec("replay", "--strict", str(path))
    assert proc.returncode == 1
    assert len(alerts(proc)) == 1
    assert summary(proc)["invalid"] == 1
    clean = write(tmp_path / "clean.jsonl", STORY)
    assert relsec("replay", "--strict", str(clean)).returncode == 0


def test_unreadable_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    proc = relsec("replay", str(missing))
    assert proc.returncode == 2
    assert str(missing) in proc.stderr.decode()
    assert proc.stdout == b""
    assert relsec("replay", str(tmp_path)).returncode == 2  # a directory


def test_bad_lateness_option_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path / "s.jsonl", STORY)
    proc = relsec("replay", "--as-arrived", "--allowed-lateness", "soon", str(path))
    assert proc.returncode == 2
    assert "--allowed-lateness" in proc.stderr.decode()


def test_sorted_mode_sees_the_late_flag_in_its_place(tmp_path: Path) -> None:
    path = write(tmp_path / "story.jsonl", STORY)
    got = alerts(relsec("replay", str(path)))
    assert [(a["rule"], a["status"]) for a in got] == [("rollback-to-flagged-release", "firing")]


def test_as_arrived_retracts_what_a_late_event_invalidates(tmp_path: Path) -> None:
    path = write(tmp_path / "story.jsonl", STORY)
    proc = relsec("replay", "--as-arrived", str(path))
    assert proc.returncode == 0
    got = alerts(proc)
    assert [(a["rule"], a["status"]) for a in got] == [
        ("rollback-performed", "firing"),
        ("rollback-performed", "retracted"),
        ("rollback-to-flagged-release", "firing"),
    ]
    assert got[0]["alert_id"] == got[1]["alert_id"]
    assert got[0]["occurred_at"] == got[1]["occurred_at"] == "2026-03-02T12:00:00Z"
    counts = summary(proc)
    assert (counts["firing"], counts["retracted"], counts["late"]) == (2, 1, 0)


def test_as_arrived_late_beyond_lateness_is_dead_lettered(tmp_path: Path) -> None:
    rows = [
        STORY[0], STORY[1], STORY[2],
        ev("security_flag", "f-late", "2026-03-02T10:59:59.999Z", flag_id="CVE-1",
           release="r1"),
        ev("security_flag", "f-edge", "2026-03-02T11:00:00Z", flag_id="CVE-2", release="r9"),
    ]
    path = write(tmp_path / "late.jsonl", rows)
    dl = tmp_path / "dead.jsonl"
    proc = relsec("replay", "--as-arrived", "--allowed-lateness", "1h",
                  "--dead-letters", str(dl), str(path))
    assert proc.returncode == 0
    counts = summary(proc)
    assert (counts["late"], counts["applied"], counts["dead_lettered"]) == (1, 4, 1)
    assert f"{path}:4: late" in proc.stderr.decode()
    # the late flag was not applied: the rollback alert stands
    assert [(a["rule"], a["status"]) for a in alerts(proc)] == [("rollback-performed", "firing")]
    [record] = [orjson.loads(line) for line in dl.read_bytes().splitlines()]
    assert record["reason"] == "late"
    assert (record["file"], record["line"]) == (str(path), 4)
    assert orjson.loads(record["value"]) == rows[3]
    assert record["detail"]
    # with the default 24 h the same flag is in time and changes the outcome
    proc = relsec("replay", "--as-arrived", str(path))
    assert summary(proc)["late"] == 0
    final = {a["alert_id"]: a for a in alerts(proc)}
    assert sorted((a["rule"], a["status"]) for a in final.values()) == [
        ("flag-raised-on-running-release", "firing"),  # r1 ran at 10:59:59.999
        ("rollback-performed", "retracted"),
        ("rollback-to-flagged-release", "firing"),
    ]


def test_dead_letters_file_lists_every_bad_record(tmp_path: Path) -> None:
    future = ev("deploy", "d-future", "2999-01-01T00:00:00Z", release="r5")
    rows: list[dict[str, Any] | str] = [*STORY, "garbage", future,
                                        ev("deploy", "d6", "x", release="r6")]
    path = write(tmp_path / "mixed.jsonl", rows)
    dl = tmp_path / "dead.jsonl"
    proc = relsec("replay", "--quiet", "--strict", "--dead-letters", str(dl), str(path))
    assert proc.returncode == 1
    assert proc.stderr.decode().count("\n") == 1, "--quiet leaves only the summary"
    records = [orjson.loads(line) for line in dl.read_bytes().splitlines()]
    by_line = {r["line"]: r for r in records}
    assert set(by_line) == {5, 6, 7}
    assert by_line[5]["reason"] == "invalid_json"
    assert by_line[5]["value"] == "garbage"
    assert by_line[6]["reason"] == "future"
    assert orjson.loads(by_line[6]["value"]) == future
    assert by_line[7]["reason"] == "bad_timestamp"
    counts = summary(proc)
    assert (counts["invalid"], counts["future"], counts["dead_lettered"]) == (2, 1, 3)


def test_several_files_and_stdin(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", STORY[:2])
    proc = relsec("replay", str(a), "-", stdin=b"\n".join(orjson.dumps(r) for r in STORY[2:]))
    assert proc.returncode == 0
    assert [x["rule"] for x in alerts(proc)] == ["rollback-to-flagged-release"]
    assert summary(proc)["read"] == 4


@pytest.mark.parametrize("mode", [[], ["--as-arrived"]])
def test_stdout_lines_match_the_counts(tmp_path: Path, mode: list[str]) -> None:
    shared = REPO.parent / "shared" / "scenarios" / "generated-7.jsonl"
    assert shared.is_file()
    proc = relsec("replay", *mode, str(shared))
    got = alerts(proc)
    counts = summary(proc)
    assert len(got) == counts["firing"] + counts["retracted"]
    assert sum(a["status"] == "retracted" for a in got) == counts["retracted"]


# --- the input as it is: original bytes, BOMs, line ends, over-long lines -----------


def dead_letter_records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def original_bytes(record: dict[str, Any]) -> bytes:
    """The dead letter's copy of the line: ``value`` (UTF-8) or ``value_base64``."""
    assert ("value" in record) != ("value_base64" in record), record
    if "value" in record:
        return str(record["value"]).encode("utf-8")
    return base64.b64decode(record["value_base64"], validate=True)


def test_dead_letters_keep_the_original_bytes(tmp_path: Path) -> None:
    """Invalid UTF-8 reached the dead letters as U+FFFD; SPEC §5 says the original bytes."""
    latin1 = orjson.dumps(ev("deploy", "d-l1", "2026-03-02T13:00:00Z", release="r")).replace(
        b'"r"', b'"caf\xe9"')
    lines = [
        orjson.dumps(STORY[0]),
        latin1,
        b'{"type": "deploy", "broken": "\xff\xfe"',
        b'  {"type":"nope"}  ',  # surrounding blanks are part of the line
        "\u00e9t\u00e9 is not JSON".encode(),
    ]
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")  # CRLF line ends
    dl = tmp_path / "dead.jsonl"
    proc = relsec("replay", "--quiet", "--dead-letters", str(dl), str(path))
    assert proc.returncode == 0, proc.stderr
    records = {r["line"]: r for r in dead_letter_records(dl)}
    assert set(records) == {2, 3, 4, 5}
    for number, record in records.items():
        assert original_bytes(record) == lines[number - 1]
    assert "value_base64" in records[2] and "value_base64" in records[3]
    assert records[4]["value"] == '  {"type":"nope"}  '
    assert records[5]["value"] == "\u00e9t\u00e9 is not JSON"
    assert records[2]["reason"] == "invalid_json" and "UTF-8" in records[2]["detail"]
    assert summary(proc)["applied"] == 1


def test_a_leading_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    """A file saved with a UTF-8 BOM lost its first line (orjson refuses the BOM)."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(orjson.dumps(r) for r in STORY) + b"\n")
    proc = relsec("replay", "--strict", str(path))
    assert proc.returncode == 0, proc.stderr
    assert (summary(proc)["read"], summary(proc)["applied"]) == (4, 4)
    assert [a["rule"] for a in alerts(proc)] == ["rollback-to-flagged-release"]
    # a BOM anywhere else is part of its line, which is not JSON
    later = tmp_path / "later-bom.jsonl"
    later.write_bytes(orjson.dumps(STORY[0]) + b"\n\xef\xbb\xbf" + orjson.dumps(STORY[1]) + b"\n")
    assert summary(relsec("replay", "--quiet", str(later)))["invalid"] == 1


def test_stdin_bom_is_dropped_too(tmp_path: Path) -> None:
    proc = relsec("replay", "-", stdin=b"\xef\xbb\xbf" + orjson.dumps(STORY[0]) + b"\n")
    assert (summary(proc)["applied"], summary(proc)["invalid"]) == (1, 0)


def test_reading_side_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """Line splitting, blank lines and over-long lines, in process."""
    monkeypatch.setattr(replay, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(replay, "TOO_LONG_KEPT_BYTES", 10)
    data = b"\xef\xbb\xbfa\r\n \t\r\n\n\x0c\n" + b"x" * 250 + b"\r\nlast"
    got = list(replay._lines_of("mem", io.BytesIO(data)))
    assert [(line.number, line.raw, line.size) for line in got] == [
        (1, b"a", 0),
        (4, b"\x0c", 0),  # not JSON whitespace: a record (dead-lettered), never skipped
        (5, b"x" * 10, 250),
        (6, b"last", 0),
    ]
    too_long = replay.decode_line(got[2])
    assert isinstance(too_long, replay.DeadLetter)
    assert (too_long.reason, too_long.line, too_long.size) == ("too_long", 5, 250)
    record = too_long.to_dict(0)
    assert (record["value"], record["value_truncated"], record["value_bytes"]) == (
        "x" * 10, True, 250)
    exact = list(replay._lines_of("mem", io.BytesIO(b"y" * 100 + b"\n" + b"z" * 101)))
    assert [(line.raw, line.size) for line in exact] == [(b"y" * 100, 0), (b"z" * 10, 101)]


@pytest.mark.parametrize("mode", [[], ["--as-arrived"]])
def test_unformattable_timestamp_is_dead_lettered_and_the_run_completes(
    tmp_path: Path, mode: list[str]
) -> None:
    """``0001-01-01T00:00:00+01:00`` ended replay with ``year 0 is out of range``."""
    rows = [*STORY,
            ev("deploy", "d-y0", "0001-01-01T00:00:00+01:00", release="r"),
            ev("deploy", "d-y10k", "9999-12-31T23:59:59-01:00", release="r")]
    path = write(tmp_path / "years.jsonl", rows)
    dl = tmp_path / "dead.jsonl"
    proc = relsec("replay", *mode, "--dead-letters", str(dl), str(path))
    assert proc.returncode == 0, proc.stderr
    counts = summary(proc)
    assert (counts["read"], counts["applied"], counts["invalid"]) == (6, 4, 2)
    records = dead_letter_records(dl)
    assert [(r["line"], r["reason"]) for r in records] == [(5, "bad_timestamp"),
                                                          (6, "bad_timestamp")]
    assert all("outside the instants relsec can represent" in r["detail"] for r in records)


def test_dead_letter_of_a_huge_value_stays_small(tmp_path: Path) -> None:
    """A 600 KB enum value was copied whole into the detail: a 1.2 MB dead letter."""
    huge = ev("deploy", "d-huge", "2026-03-02T13:00:00Z", release="r", action="x" * 600_000)
    path = write(tmp_path / "huge.jsonl", [huge])
    dl = tmp_path / "dead.jsonl"
    proc = relsec("replay", "--dead-letters", str(dl), str(path))
    [record] = dead_letter_records(dl)
    assert record["reason"] == "unknown_enum"
    assert len(record["detail"]) < 300
    assert "(600000 chars)" in record["detail"]
    assert len(dl.read_bytes()) < 600_000 + 1_000  # the value once, the detail bounded
    assert len(proc.stderr) < 1_000


# --- the --dead-letters file and the other outputs ----------------------------------


def test_dead_letters_naming_an_input_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """It truncated the input, then reported read=0 and exited 0."""
    path = write(tmp_path / "story.jsonl", [*STORY, "garbage"])
    before = path.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(path)
    hard = tmp_path / "hard.jsonl"
    os.link(path, hard)
    for target in (path, link, hard):
        proc = relsec("replay", "--dead-letters", str(target), str(path))
        assert proc.returncode == 2, proc.stderr
        assert f"--dead-letters {target}" in proc.stderr.decode()
        assert "input file" in proc.stderr.decode()
        assert proc.stdout == b""
        assert path.read_bytes() == before
    with path.open("rb") as stdin:  # `relsec replay - --dead-letters story.jsonl < story.jsonl`
        proc = subprocess.run(
            [*_relsec(), "replay", "--dead-letters", str(path), "-"], stdin=stdin,
            capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
        )
    assert proc.returncode == 2
    assert "standard input" in proc.stderr.decode()
    assert path.read_bytes() == before


def test_dead_letters_naming_the_alerts_output_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "story.jsonl", [*STORY, "garbage"])
    out = tmp_path / "out.jsonl"
    with out.open("wb") as stdout:
        proc = subprocess.run(
            [*_relsec(), "replay", "--dead-letters", str(out), str(path)], stdout=stdout,
            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
        )
    assert proc.returncode == 2
    assert b"standard output" in proc.stderr


def test_dead_letters_folder_exits_2_with_a_message(tmp_path: Path) -> None:
    path = write(tmp_path / "story.jsonl", [*STORY, "garbage"])
    proc = relsec("replay", "--dead-letters", str(tmp_path), str(path))
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "is a directory" in err and "Traceback" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_exits_2_with_a_message(tmp_path: Path) -> None:
    path = write(tmp_path / "story.jsonl", [*STORY, "garbage"])
    proc = relsec("replay", "--dead-letters", "/dev/full", str(path))
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "cannot write dead letters" in err and "No space left" in err
    assert "Traceback" not in err
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [*_relsec(), "replay", str(path)], stdout=full, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
        )
    assert proc.returncode == 2
    assert b"<stdout>: cannot write alerts: No space left" in proc.stderr
    assert b"Traceback" not in proc.stderr and b"Exception ignored" not in proc.stderr


@pytest.mark.parametrize("lateness", ["1e300h", "1" + "0" * 400 + "h", "367d", "\u0662\u0664h"])
def test_absurd_lateness_exits_2(tmp_path: Path, lateness: str) -> None:
    path = write(tmp_path / "s.jsonl", STORY)
    proc = relsec("replay", "--as-arrived", "--allowed-lateness", lateness, str(path))
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "--allowed-lateness" in err and "Traceback" not in err
    assert len(err) < 400


def test_dead_letters_file_is_owner_only(tmp_path: Path) -> None:
    """It holds raw input (possibly secrets): 0600, also when it existed before."""
    path = write(tmp_path / "story.jsonl", [*STORY, "garbage"])
    fresh = tmp_path / "fresh.jsonl"
    old_umask = os.umask(0o022)
    try:
        assert relsec("replay", "--dead-letters", str(fresh), str(path)).returncode == 0
        existing = tmp_path / "existing.jsonl"
        existing.write_bytes(b"old content that must go\n" * 10)
        existing.chmod(0o644)
        assert relsec("replay", "--dead-letters", str(existing), str(path)).returncode == 0
    finally:
        os.umask(old_umask)
    for target in (fresh, existing):
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        [record] = dead_letter_records(target)
        assert record["value"] == "garbage"
    assert relsec("replay", "--dead-letters", os.devnull, str(path)).returncode == 0


def _reference_lines(data: bytes, max_bytes: int, kept: int) -> list[tuple[int, bytes, int]]:
    """What _lines_of must give, from the whole input at once."""
    out = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.endswith(b"\r") and number <= data.count(b"\n"):
            raw = raw[:-1]
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if len(raw) > max_bytes:
            out.append((number, raw[:kept], len(raw)))
        elif raw.strip(b" \t\r\n"):
            out.append((number, raw, 0))
    return out


class _Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, like a pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(self.step, len(buffer), len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


@settings(max_examples=1500, deadline=None)
@given(
    data=st.lists(
        st.sampled_from([b"{}", b"x", b"\r", b"\n", b"\r\n", b" ", b"\xef\xbb\xbf", b"y" * 7,
                         b"z" * 30, b"w" * 19, b"w" * 20, b"w" * 21, b"\t", b"\xff"]),
        max_size=40,
    ).map(b"".join),
    chunk=st.integers(1, 64),
)
def test_chunked_reading_matches_the_whole_input_split(data: bytes, chunk: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay, "MAX_LINE_BYTES", 20)
        patch.setattr(replay, "TOO_LONG_KEPT_BYTES", 5)
        patch.setattr(replay, "READ_CHUNK", chunk)
        stream = io.BufferedReader(_Trickle(data, chunk), buffer_size=max(chunk, 8))
        got = [(line.number, line.raw, line.size) for line in replay._lines_of("t", stream)]
    assert got == _reference_lines(data, 20, 5)


@pytest.mark.parametrize("mode", [[], ["--as-arrived"]], ids=["sorted", "as-arrived"])
def test_the_duplicate_window_is_configurable(tmp_path: Path, mode: list[str]) -> None:
    """SPEC §1: a repeat of an event_id within the window is a duplicate, after it an
    event like any other (the window is never shorter than the allowed lateness)."""
    rows = [
        ev("deploy", "d1", "2026-03-02T10:00:00Z", release="r1"),
        ev("deploy", "d2", "2026-03-02T14:00:00Z", release="r2", previous_release="r1"),
        ev("deploy", "d1", "2026-03-02T18:00:00Z", release="r3", previous_release="r2"),
    ]
    path = write(tmp_path / "repeat.jsonl", rows)
    lateness = ["--allowed-lateness", "1h"]
    remembered = relsec("replay", *mode, *lateness, str(path))
    assert summary(remembered)["duplicates"] == 1  # the default: 7 days
    forgotten = relsec("replay", *mode, *lateness, "--duplicate-window", "2h", str(path))
    assert forgotten.returncode == 0, forgotten.stderr
    assert summary(forgotten)["duplicates"] == 0 and summary(forgotten)["applied"] == 3
    bad = relsec("replay", "--duplicate-window", "soon", str(path))
    assert bad.returncode == 2 and b"--duplicate-window" in bad.stderr


def test_a_mutable_release_pattern_keeps_a_name_from_linking(tmp_path: Path) -> None:
    """A flag on ``build-current``, an alias of r1 that moves: linked by default, so the
    deploy of r1 is flagged; never linked once the name is declared mutable."""
    rows = [
        ev("security_flag", "f1", "2026-03-02T09:00:00Z", flag_id="CVE-1",
           release="build-current", severity="critical"),
        ev("deploy", "d1", "2026-03-02T10:00:00Z", release="r1",
           release_aliases=["build-current"]),
    ]
    path = write(tmp_path / "mutable.jsonl", rows)
    linked = alerts(relsec("replay", str(path)))
    assert "flagged-release-deployed" in {a["rule"] for a in linked}
    unlinked = relsec("replay", "--mutable-release-pattern", "build-.*", str(path))
    assert unlinked.returncode == 0, unlinked.stderr
    assert "flagged-release-deployed" not in {a["rule"] for a in alerts(unlinked)}
    bad = relsec("replay", "--mutable-release-pattern", "build-(", str(path))
    assert bad.returncode == 2 and b"not a regular expression" in bad.stderr
