"""Every scenario gives exactly its expected alert set: sorted, as-arrived and through the CLI.

Scenarios come from ``<repo>/../shared/scenarios`` (the shared ones) and
``tests/data/scenarios`` (ours, expected sets derived by hand from SPEC.md).
Alerts are compared as multisets on the fields the scenarios README lists;
``recommendation_release`` is ``recommendation.release``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.model.alerts import FIRING, Alert
from agents.model.timefmt import parse_rfc3339_ms
from streams.replay import (
    DeadLetter,
    Replayer,
    make_engine,
    read_lines,
    replay_as_arrived,
    replay_sorted,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO.parent / "shared" / "scenarios"
OWN_DIR = REPO / "tests" / "data" / "scenarios"
LATENESS_MS = 24 * 3_600_000
CLOCK_MS = parse_rfc3339_ms("2026-11-26T00:00:00Z")


def _scenarios(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.jsonl") if not p.name.endswith(".expected.jsonl"))


SCENARIOS = [*_scenarios(SHARED_DIR), *_scenarios(OWN_DIR)]
IDS = [f"{p.parent.name}/{p.stem}" for p in SCENARIOS]

Row = tuple[Any, ...]


def _row(obj: dict[str, Any]) -> Row:
    """The README's comparison fields of one alert (JSON form or expected form)."""
    if "recommendation_release" in obj:
        rec = obj["recommendation_release"]
    else:
        rec = obj["recommendation"]["release"] if obj.get("recommendation") else None
    return (
        obj["rule"],
        obj["service"],
        obj["environment"],
        obj["release"],
        parse_rfc3339_ms(obj["occurred_at"]),
        obj["severity"],
        tuple(sorted(obj["notify"])),
        rec,
    )


def _expected(scenario: Path) -> Counter[Row]:
    path = scenario.with_name(scenario.stem + ".expected.jsonl")
    lines = path.read_bytes().splitlines()
    return Counter(_row(orjson.loads(line)) for line in lines if line.strip())


def _final_active(alerts: Iterable[dict[str, Any]]) -> Counter[Row]:
    latest: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        latest[alert["alert_id"]] = alert
    return Counter(_row(a) for a in latest.values() if a["status"] == FIRING)


def _diff(got: Counter[Row], want: Counter[Row]) -> str:
    missing = sorted((want - got).elements())
    unexpected = sorted((got - want).elements())
    return f"missing: {missing}\nunexpected: {unexpected}"


def _replay(
    scenario: Path, *, as_arrived: bool, spill_events: int = 500_000, chunk_lines: int = 10_000
) -> tuple[list[Alert], list[DeadLetter], Replayer]:
    alerts: list[Alert] = []
    dead: list[DeadLetter] = []
    replayer = Replayer(
        make_engine(as_arrived, LATENESS_MS), lambda: CLOCK_MS, alerts.append, dead.append
    )
    lines = read_lines([str(scenario)])
    if as_arrived:
        replay_as_arrived(lines, replayer, chunk_lines=chunk_lines)
    else:
        replay_sorted(lines, replayer, spill_events=spill_events)
    return alerts, dead, replayer


def test_scenarios_are_present() -> None:
    assert _scenarios(SHARED_DIR), f"no shared scenarios in {SHARED_DIR}"
    assert len(_scenarios(OWN_DIR)) >= 3
    for scenario in SCENARIOS:
        assert scenario.with_name(scenario.stem + ".expected.jsonl").is_file()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_sorted(scenario: Path) -> None:
    alerts, dead, replayer = _replay(scenario, as_arrived=False)
    assert dead == []
    assert all(a.status == FIRING for a in alerts), "sorted replay retracts nothing"
    got = _final_active(a.to_dict() for a in alerts)
    want = _expected(scenario)
    assert got == want, _diff(got, want)
    r = replayer.report
    assert r.read == r.applied + r.duplicates + r.dead_lettered
    assert r.firing == len(alerts)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_sorted_with_spilled_runs(scenario: Path) -> None:
    """The external merge (runs spilled to disk) gives the same set."""
    alerts, _, _ = _replay(scenario, as_arrived=False, spill_events=5)
    got = _final_active(a.to_dict() for a in alerts)
    assert got == _expected(scenario), _diff(got, _expected(scenario))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_as_arrived(scenario: Path) -> None:
    alerts, dead, replayer = _replay(scenario, as_arrived=True)
    assert [d for d in dead if d.reason == "late"] == []
    got = _final_active(a.to_dict() for a in alerts)
    want = _expected(scenario)
    assert got == want, _diff(got, want)
    r = replayer.report
    assert r.read == r.applied + r.duplicates + r.dead_lettered


@pytest.mark.parametrize("chunk_lines", [1, 3, 7])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_as_arrived_in_small_chunks(scenario: Path, chunk_lines: int) -> None:
    """Chunk boundaries cut batches of one instant anywhere: the same final set."""
    alerts, _, _ = _replay(scenario, as_arrived=True, chunk_lines=chunk_lines)
    got = _final_active(a.to_dict() for a in alerts)
    assert got == _expected(scenario), _diff(got, _expected(scenario))


def test_a_scanner_report_as_arrived_ends_with_the_sorted_alerts(tmp_path: Path) -> None:
    """One deploy, then 3 000 raises on its release at one instant in hashed-id order:
    as-arrived replay batches them (no fire-then-retract churn) and ends as sorted."""
    import hashlib

    rows = [{"type": "deploy", "event_id": "d", "occurred_at": "2026-03-04T09:00:00Z",
             "source": "argocd", "service": "checkout", "environment": "production",
             "release": "1.0.0", "action": "deploy"}]
    for n in range(3000):
        rows.append({
            "type": "security_flag", "event_id": hashlib.sha256(b"%d" % n).hexdigest()[:20],
            "occurred_at": "2026-03-04T10:00:00Z", "source": "trivy", "service": "checkout",
            "flag_id": f"CVE-2026-{n:05d}", "release": "1.0.0", "status": "raised",
            "severity": "high", "title": "t",
        })
    path = tmp_path / "burst.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    sorted_alerts, _, _ = _replay(path, as_arrived=False)
    arrived_alerts, _, replayer = _replay(path, as_arrived=True, chunk_lines=1000)
    assert _final_active(a.to_dict() for a in arrived_alerts) == _final_active(
        a.to_dict() for a in sorted_alerts)
    assert len(sorted_alerts) == 3000
    assert replayer.report.retracted == 0
    assert replayer.report.applied == 3001


def _relsec() -> list[str]:
    script = Path(sys.executable).with_name("relsec")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from streams.cli import main; sys.exit(main())"]


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*_relsec(), "replay", *args], capture_output=True, env=env, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize("mode", [[], ["--as-arrived"]], ids=["sorted", "as-arrived"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_cli(scenario: Path, mode: list[str]) -> None:
    proc = _cli(*mode, str(scenario))
    assert proc.returncode == 0, proc.stderr.decode()
    alerts = [orjson.loads(line) for line in proc.stdout.splitlines()]
    got = _final_active(alerts)
    want = _expected(scenario)
    assert got == want, _diff(got, want)
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("relsec replay: read=")


def test_all_scenarios_in_one_run() -> None:
    """Several files in one run: services are independent, so the union is expected."""
    proc = _cli(*(str(s) for s in SCENARIOS))
    assert proc.returncode == 0, proc.stderr.decode()
    got = _final_active(orjson.loads(line) for line in proc.stdout.splitlines())
    want: Counter[Row] = Counter()
    for scenario in SCENARIOS:
        want += _expected(scenario)
    assert got == want, _diff(got, want)


def test_an_out_of_order_burst_as_arrived_is_batched_and_ends_with_the_sorted_alerts(
    tmp_path: Path,
) -> None:
    """3 000 raises with distinct times inside the lateness log, arriving in hashed-id
    order (not time order): the ones landing inside the log go to the engine together,
    not one re-evaluation each, and the result is sorted replay's."""
    import hashlib

    rows = [{"type": "deploy", "event_id": "d", "occurred_at": "2026-03-04T09:00:00Z",
             "source": "argocd", "service": "checkout", "environment": "production",
             "release": "1.0.0", "action": "deploy"}]
    order = sorted(range(3000), key=lambda n: hashlib.sha256(b"%d" % n).digest())
    for n in order:
        rows.append({
            "type": "security_flag", "event_id": f"f{n}",
            "occurred_at": f"2026-03-04T10:{n // 60:02d}:{n % 60:02d}Z", "source": "trivy",
            "service": "checkout", "flag_id": f"CVE-2026-{n:05d}", "release": "1.0.0",
            "status": "raised", "severity": "high", "title": "t",
        })
    path = tmp_path / "burst.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    sorted_alerts, _, _ = _replay(path, as_arrived=False)
    alerts: list[Alert] = []
    batches: list[int] = []

    class CountingEngine:
        """The engine, counting the batches it is handed (a compiled class cannot be
        patched, so it is wrapped)."""

        def __init__(self, engine: Any) -> None:
            self.engine = engine

        def __getattr__(self, name: str) -> Any:
            return getattr(self.engine, name)

        def process_batch(self, events: Any, now_ms: int) -> Any:
            batches.append(len(events))
            return self.engine.process_batch(events, now_ms)

    engine: Any = CountingEngine(make_engine(True, LATENESS_MS))
    replayer = Replayer(engine, lambda: CLOCK_MS, alerts.append, lambda _: None)
    replay_as_arrived(read_lines([str(path)]), replayer, chunk_lines=1000)
    assert _final_active(a.to_dict() for a in alerts) == _final_active(
        a.to_dict() for a in sorted_alerts)
    assert replayer.report.applied == 3001
    # Each new newest time goes alone; every event inside the log joins a run. Without
    # the runs, 3 000 batches (one re-evaluation of the log each).
    assert sum(batches) == 3001
    assert len(batches) < 200, len(batches)


@pytest.mark.parametrize("chunk_lines", [3, 10_000])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_refused_lines_change_nothing_as_arrived(
    scenario: Path, tmp_path: Path, chunk_lines: int
) -> None:
    """Far-future copies (a clock gone wrong) and broken lines interleaved with the
    lines: dead-lettered, and the alert records, in order, are those of the file
    without them, whatever the chunk size (refused lines never move a chunk's edge)."""
    lines = [x for x in scenario.read_bytes().splitlines() if x.strip()]
    mixed: list[bytes] = []
    for n, line in enumerate(lines):
        mixed.append(line)
        if n % 2 == 0:
            future = dict(orjson.loads(line), event_id=f"f-{n}", occurred_at="2099-01-01T00:00:00Z")
            mixed += [orjson.dumps(future), b'{"type": "deploy"', b"[]"]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(mixed))
    plain, _, _ = _replay(scenario, as_arrived=True, chunk_lines=chunk_lines)
    with_refused, dead, _ = _replay(path, as_arrived=True, chunk_lines=chunk_lines)
    assert len(dead) == 3 * len(range(0, len(lines), 2))
    assert {d.reason for d in dead} == {"future", "invalid_json", "wrong_type"}
    assert [a.to_dict() for a in with_refused] == [a.to_dict() for a in plain]
