"""Replay runs with the cyclic garbage collector off, and must leave no cyclic garbage.

``streams.replay.collector_paused`` turns the collector off for a replay: every
collection walked the replay's growing state and found nothing. That is safe only while
a replay creates no reference cycles, which reference counting cannot free. These tests
hold every path of a replay (sorted and as-arrived, alerts fired and retracted,
duplicates, dead letters of every kind) to that, and the collector's settings to being
restored for the caller.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from agents.model.alerts import Alert
from agents.model.timefmt import format_rfc3339_ms, parse_rfc3339_ms
from streams.replay import (
    DeadLetter,
    Replayer,
    collector_paused,
    make_engine,
    read_lines,
    replay_as_arrived,
    replay_sorted,
)
from streams.synthetic import SyntheticSpec, generate

CLOCK_MS = parse_rfc3339_ms("2026-06-15T00:00:00Z")
LATENESS_MS = 3_600_000


def _hostile_lines() -> list[bytes]:
    far_future = format_rfc3339_ms(CLOCK_MS + 400 * 86_400_000)
    long_ago = "2026-04-01T00:00:00Z"  # far behind the synthetic stream: late as-arrived
    deploy = {
        "type": "deploy", "event_id": "gc-late", "occurred_at": long_ago, "source": "t",
        "service": "svc-00001", "environment": "production", "release": "9.9.9",
        "action": "deploy",
    }  # fmt: skip
    return [
        b'{"type": "deploy", "event_id": ',  # not JSON
        b"[1, 2, 3]",  # JSON, not an object
        orjson.dumps({"type": "deploy", "event_id": "gc-bad", "action": "sideways"}),
        orjson.dumps({**deploy, "event_id": "gc-future", "occurred_at": far_future}),
        orjson.dumps(deploy),
        b"\xff\xfe not utf-8",
    ]


def _scanner_report(findings: int) -> list[bytes]:
    """A deploy named by its image, a scanner's report of ``findings`` at one instant on
    the same release named by its digest (linked through ``release_aliases``, SPEC §8),
    then a rollback to it: a burst that fires, on names that differ across tools."""
    service, digest = "payments", "sha256:" + "ab" * 32
    at = "2026-05-20T10:00:00Z"
    base = {"source": "argocd", "service": service, "environment": "production"}
    lines = [
        orjson.dumps({
            **base, "type": "deploy", "event_id": "gc-d1", "occurred_at": "2026-05-20T09:00:00Z",
            "release": "payments:2.0.0", "release_aliases": [digest], "action": "deploy",
            "status": "succeeded",
        }),
        orjson.dumps({
            **base, "type": "deploy", "event_id": "gc-d2", "occurred_at": "2026-05-20T09:30:00Z",
            "release": "payments:2.1.0", "action": "deploy", "status": "succeeded",
        }),
    ]  # fmt: skip
    for n in range(findings):
        lines.append(
            orjson.dumps({
                "type": "security_flag", "event_id": f"gc-f{n}", "occurred_at": at,
                "source": "trivy", "service": service, "flag_id": f"CVE-2026-{n:05d}",
                "release": digest, "status": "raised", "severity": "high", "title": "t",
            })
        )  # fmt: skip
    lines.append(
        orjson.dumps({
            **base, "type": "deploy", "event_id": "gc-rb", "occurred_at": "2026-05-20T11:00:00Z",
            "release": "payments:2.0.0", "action": "rollback", "status": "succeeded",
        })
    )  # fmt: skip
    return lines


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic stream with duplicates and out-of-order events, hostile lines between,
    and a scanner's report of 2,000 findings at one instant."""
    spec = SyntheticSpec(services=40, events=4_000, duplicate_share=0.05, out_of_order_share=0.2)
    lines = [orjson.dumps(event) for event in generate(spec)]
    for at, line in zip(range(500, 4_000, 600), _hostile_lines(), strict=False):
        lines.insert(at, line)
    lines[2_000:2_000] = _scanner_report(2_000)
    path = tmp_path_factory.mktemp("gc") / "stream.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _replay(path: Path, *, as_arrived: bool) -> tuple[int, list[Alert], list[DeadLetter]]:
    alerts: list[Alert] = []
    dead: list[DeadLetter] = []
    replayer = Replayer(
        make_engine(as_arrived, LATENESS_MS), lambda: CLOCK_MS, alerts.append, dead.append
    )
    gc.collect()
    if as_arrived:
        replay_as_arrived(read_lines([str(path)]), replayer, chunk_lines=700)
    else:
        replay_sorted(read_lines([str(path)]), replayer, spill_events=900)
    unreachable = gc.collect()
    return unreachable, alerts, dead


@pytest.mark.parametrize("as_arrived", [False, True], ids=["sorted", "as-arrived"])
def test_a_replay_leaves_no_cyclic_garbage(stream: Path, as_arrived: bool) -> None:
    unreachable, alerts, dead = _replay(stream, as_arrived=as_arrived)
    reasons = {d.reason for d in dead}
    # The stream reached the paths it is meant to: alerts and every kind of refusal.
    assert alerts
    rules = {a.rule for a in alerts if a.service == "payments"}
    assert "rollback-to-flagged-release" in rules  # the burst, linked across names
    assert {"invalid_json", "future"} <= reasons
    if as_arrived:
        assert "late" in reasons
    assert unreachable == 0, f"the replay left {unreachable} objects in reference cycles"


def test_the_collector_is_off_during_a_replay_and_restored_after() -> None:
    seen: list[bool] = []
    threshold = gc.get_threshold()

    @collector_paused()
    def run() -> None:
        seen.append(gc.isenabled())

    assert gc.isenabled()
    run()
    assert seen == [False]
    assert gc.isenabled()
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0


def test_a_caller_that_turned_the_collector_off_keeps_it_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            with collector_paused():  # nested: the inner end does not turn it on
                pass
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_a_caller_froze_stays_frozen() -> None:
    def cycles() -> Iterator[list[object]]:
        while True:
            node: list[object] = []
            node.append(node)
            yield node

    kept = [next(cycles()) for _ in range(10)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
    assert kept
