"""Run ``relsec replay`` in process over valid lines mixed with hostile ones, and check it.

Shared by ``test_fuzz_replay.py`` (under hypothesis) and ``campaign.py`` (large,
seeded with ``random``). :func:`check_mixed_run` is the whole contract of SPEC §5 for
files: no crash, every hostile line dead-lettered with its line number, a reason it
may have and its original bytes, ``read = applied + duplicates + dead_lettered``, and
the valid lines' alerts exactly as without the hostile ones.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.cli import main
from streams.synthetic import START_MS, SyntheticSpec, generate

from .hostile import Chooser, format_instant, hostile_line

SUMMARY = re.compile(
    r"relsec replay: read=(?P<read>\d+) applied=(?P<applied>\d+) "
    r"duplicates=(?P<duplicates>\d+) dead_lettered=(?P<dead_lettered>\d+) "
    r"\(invalid=(?P<invalid>\d+) late=(?P<late>\d+) future=(?P<future>\d+)\) "
    r"alerts_firing=(?P<firing>\d+) retracted=(?P<retracted>\d+)\Z"
)
MODES = {"sorted": [], "as-arrived": ["--as-arrived"]}
MAX_DETAIL_CHARS = 512


def valid_events(events: int = 240, services: int = 6, seed: int = 20261201,
                 scanner_burst: int = 300) -> list[dict[str, Any]]:
    """A synthetic stream (out of order, with re-sent duplicates) plus the real shape of a
    scanner report: ``scanner_burst`` findings at one instant on one release of one service."""
    stream = list(generate(SyntheticSpec(services=services, events=events, seed=seed)))
    middle = len(stream) // 2
    # in time where it is inserted: the release the middle event's service last deployed
    service = stream[middle]["service"]
    deployed = [e for e in stream[:middle] if e["type"] == "deploy" and e["service"] == service]
    release = deployed[-1]["release"] if deployed else "1.0.0"
    at = stream[middle]["occurred_at"]
    burst = [
        {
            "type": "security_flag", "event_id": f"scan-{i:05d}", "occurred_at": at,
            "source": "trivy", "service": service, "flag_id": f"CVE-2026-{10000 + i}",
            "release": release, "status": "raised",
            "severity": ("critical", "high", "medium", "low")[i % 4],
            "vulnerabilities": [f"CVE-2026-{10000 + i}"], "title": f"finding {i}",
            "fixed_in": None,
        }
        for i in range(scanner_burst)
    ]
    # A flag that arrives after the rollback it concerns: as-arrived retracts an alert.
    def story(kind: str, eid: str, hour: int, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": eid, "source": "fuzz", "service": "story",
                "occurred_at": format_instant(START_MS + hour * 3_600_000), **fields}

    late_flag_story = [
        story("deploy", "story-d1", 10, environment="prod", release="r1", action="deploy"),
        story("deploy", "story-d2", 11, environment="prod", release="r2", action="deploy"),
        story("deploy", "story-d3", 12, environment="prod", release="r1", action="rollback"),
        story("security_flag", "story-f1", 11, flag_id="CVE-2026-0001", release="r1",
              status="raised", severity="critical", title="late", vulnerabilities=[]),
    ]
    return [*stream[:middle], *burst, *late_flag_story, *stream[middle:]]


@dataclass(slots=True)
class RunResult:
    status: int
    alerts: list[dict[str, Any]]
    counts: dict[str, int]
    dead_letters: list[dict[str, Any]]
    stderr: str


def run_replay(args: Sequence[str]) -> tuple[int, bytes, str]:
    """``relsec ARGS`` in this process; its exit status, stdout bytes and stderr text."""
    out = io.BytesIO()
    err = io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, err
    try:
        status = main(list(args))
        stdout.flush()
        return status, out.getvalue(), err.getvalue()
    finally:
        sys.stdout, sys.stderr = saved
        stdout.detach()


def original_bytes(record: dict[str, Any]) -> bytes:
    assert ("value" in record) != ("value_base64" in record), record
    if "value" in record:
        return str(record["value"]).encode("utf-8")
    return base64.b64decode(record["value_base64"], validate=True)


def replay_file(path: str, mode: str, workdir: str) -> RunResult:
    dead = os.path.join(workdir, "dead-letters.jsonl")
    status, stdout, stderr = run_replay(
        ["replay", *MODES[mode], "--quiet", "--dead-letters", dead, path]
    )
    last = stderr.rstrip("\n").splitlines()[-1] if stderr else ""
    m = SUMMARY.match(last)
    assert m is not None, f"the last stderr line is not the summary: {last!r}"
    counts = {k: int(v) for k, v in m.groupdict().items()}
    alerts = []
    for line in stdout.splitlines():
        alert = orjson.loads(line)
        del alert["detected_at"]  # wall-clock time, not content
        alerts.append(alert)
    records = []
    with open(dead, "rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            # the bytes by digest: a campaign's dead letters hold hundreds of MB of input
            record["bytes_sha256"] = hashlib.sha256(original_bytes(record)).hexdigest()
            record.pop("value", None)
            record.pop("value_base64", None)
            records.append(record)
    return RunResult(status, alerts, counts, records, stderr)


def write_lines(path: str, lines: Sequence[bytes], endings: Sequence[bytes], bom: bool) -> None:
    with open(path, "wb") as handle:
        if bom:
            handle.write(b"\xef\xbb\xbf")
        for line, ending in zip(lines, endings, strict=True):
            handle.write(line)
            handle.write(ending)


@dataclass(slots=True)
class MixedRun:
    """What a mixed run read, for the campaign's figures."""

    lines: int = 0
    hostile: int = 0
    by_mutation: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Written:
    """A hostile line as the check needs it after writing: not its (maybe huge) bytes."""

    mutation: str
    reasons: frozenset[str]
    sha256: str
    start: bytes


def write_mixed(
    c: Chooser, valid: Sequence[dict[str, Any]], hostile_count: int, path: str
) -> tuple[dict[int, Written], int, int]:
    """Write the valid lines in their order with hostile ones between them (never
    before the first), a few blank lines, mixed LF/CRLF ends, maybe a BOM opening the
    file. Returns the hostile lines by line number, the number of lines and of blanks."""
    gaps: dict[int, int] = {}  # how many hostile lines after each valid one
    for _ in range(hostile_count):
        gap = c.integer(1, len(valid))
        gaps[gap] = gaps.get(gap, 0) + 1
    serials = iter(range(hostile_count))
    hostile: dict[int, Written] = {}
    number = blanks = 0
    # the file's last line may end without a terminator
    final = (len(valid), gaps[len(valid)] - 1) if len(valid) in gaps else (len(valid), -1)

    def ending(at: tuple[int, int]) -> bytes:
        options = (b"\n", b"") if at == final else (b"\n", b"\n", b"\n", b"\r\n")
        return c.pick(options)

    with open(path, "wb") as handle:
        if c.integer(0, 1):
            handle.write(b"\xef\xbb\xbf")
        for i, event in enumerate(valid, start=1):
            handle.write(orjson.dumps(event) + ending((i, -1)))
            number += 1
            for j in range(gaps.get(i, 0)):
                # made when written: a campaign's hostile lines are hundreds of MB
                h = hostile_line(c, c.pick(valid), next(serials))
                if c.integer(0, 15) == 0:
                    handle.write(c.pick((b"", b"   ", b"\t", b"\r")) + b"\n")
                    number += 1
                    blanks += 1
                handle.write(h.raw)
                handle.write(ending((i, j)))
                number += 1
                hostile[number] = Written(
                    h.mutation, h.reasons, hashlib.sha256(h.raw).hexdigest(), h.raw[:300]
                )
    return hostile, number, blanks


def check_mixed_run(
    c: Chooser, valid: Sequence[dict[str, Any]], baseline: RunResult, mode: str,
    hostile_count: int,
) -> MixedRun:
    """One mixed file through ``relsec replay`` (``mode``), checked against ``baseline``
    (the same valid lines alone, same mode). Raises AssertionError naming what broke."""
    with tempfile.TemporaryDirectory(prefix="relsec-fuzz-") as workdir:
        path = os.path.join(workdir, "mixed.jsonl")
        hostile, lines, blanks = write_mixed(c, valid, hostile_count, path)
        got = replay_file(path, mode, workdir)
    counts, base = got.counts, baseline.counts
    assert got.status == 0, got.stderr[-2000:]
    by_line = {r["line"]: r for r in got.dead_letters}
    assert len(by_line) == len(got.dead_letters), "one dead letter per line"
    run = MixedRun(lines=counts["read"], hostile=len(hostile), counts=counts)
    for number, h in hostile.items():
        record = by_line.get(number)
        assert record is not None, (
            f"hostile line {number} ({h.mutation}) was not dead-lettered: {h.start!r}"
        )
        assert record["reason"] in h.reasons, (
            f"line {number} ({h.mutation}): reason {record['reason']!r}, expected one of "
            f"{sorted(h.reasons)}; detail {record['detail']!r}"
        )
        assert 0 < len(record["detail"]) <= MAX_DETAIL_CHARS, record["detail"][:1000]
        assert record["bytes_sha256"] == h.sha256, (
            f"line {number}: the dead letter's bytes are not the line's"
        )
        run.by_mutation[h.mutation] = run.by_mutation.get(h.mutation, 0) + 1
        run.by_reason[record["reason"]] = run.by_reason.get(record["reason"], 0) + 1
    assert counts["read"] == counts["applied"] + counts["duplicates"] + counts["dead_lettered"]
    assert counts["read"] == lines - blanks, (counts, lines, blanks)
    assert counts["read"] == base["read"] + len(hostile), (counts, base)
    assert counts["dead_lettered"] == base["dead_lettered"] + len(hostile), (counts, base)
    assert (counts["applied"], counts["duplicates"]) == (base["applied"], base["duplicates"])
    assert got.alerts == baseline.alerts, "hostile lines changed the valid lines' alerts"
    others = [r["bytes_sha256"] for n, r in sorted(by_line.items()) if n not in hostile]
    expected = sorted(baseline.dead_letters, key=lambda r: int(r["line"]))
    assert others == [r["bytes_sha256"] for r in expected]
    return run


def baseline_run(valid: Sequence[dict[str, Any]], mode: str) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="relsec-fuzz-") as workdir:
        path = os.path.join(workdir, "valid.jsonl")
        write_lines(path, [orjson.dumps(e) for e in valid], [b"\n"] * len(valid), bom=False)
        result = replay_file(path, mode, workdir)
    assert result.status == 0
    return result
