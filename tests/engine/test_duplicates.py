"""The duplicate window (SPEC §1) and the order of admission checks, in every mode.

"A repeated event_id of the same service is a duplicate and is ignored, whatever else it
says, while relsec remembers the first: for the duplicate window (by default 7 days of
event time behind the newest event of the service; configurable), the same in replay,
sorted or as-arrived, and in the worker. A repeat after that is judged like any other
event." Checks: future, then duplicate, then late.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from agents.engine import Disposition, Engine, EngineConfig, ServiceEngine
from agents.engine.core import DUPLICATE_WINDOW_MS
from agents.model.alerts import FIRING, Alert
from agents.model.events import event_to_dict, parse_event
from agents.model.timefmt import MS_PER_DAY, MS_PER_HOUR, format_rfc3339_ms
from streams.replay import (
    Replayer,
    ReplayReport,
    make_engine,
    read_lines,
    replay_as_arrived,
    replay_sorted,
)

from .factory import SERVICE, T0, deploy, flag, ms
from .test_properties import PROPS

LATENESS_MS = 24 * MS_PER_HOUR
CLOCK_MS = T0 + 400 * MS_PER_DAY


def _line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


def replay(
    tmp_path: Path, rows: Sequence[dict[str, Any]], *, as_arrived: bool, name: str = "in"
) -> tuple[ReplayReport, dict[str, Alert]]:
    """Run the replay code over rows (in file order); the report and the final active
    alerts by id."""
    path = tmp_path / f"{name}-{'arrived' if as_arrived else 'sorted'}.jsonl"
    path.write_bytes(b"\n".join(_line(r) for r in rows) + b"\n")
    latest: dict[str, Alert] = {}
    replayer = Replayer(make_engine(as_arrived, LATENESS_MS), lambda: CLOCK_MS,
                        lambda a: latest.__setitem__(a.alert_id, a), lambda dl: None)
    run = replay_as_arrived if as_arrived else replay_sorted
    report = run(read_lines([str(path)]), replayer)
    return report, {k: a for k, a in latest.items() if a.status == FIRING}


def both(
    tmp_path: Path, rows: Sequence[dict[str, Any]]
) -> tuple[ReplayReport, dict[str, Alert]]:
    """Sorted and as-arrived replay of the same file must end alike: the sorted report
    and active alerts."""
    s_report, s_active = replay(tmp_path, rows, as_arrived=False)
    a_report, a_active = replay(tmp_path, rows, as_arrived=True)
    assert set(s_active) == set(a_active)
    assert (s_report.applied, s_report.duplicates, s_report.dead_lettered) == (
        a_report.applied, a_report.duplicates, a_report.dead_lettered)
    return s_report, s_active


def _dict(event: Any, **changes: Any) -> dict[str, Any]:
    return {**event_to_dict(event), **changes}


def test_a_future_copy_does_not_hide_the_real_event(tmp_path: Path) -> None:
    real = deploy("1.0", ms(), event_id="e1")
    rows = [_dict(real, occurred_at="2999-01-01T00:00:00Z"), _dict(real)]
    report, _ = both(tmp_path, rows)
    assert (report.applied, report.duplicates, report.future) == (1, 0, 1)


def test_the_same_id_on_two_services_is_two_events(tmp_path: Path) -> None:
    a = deploy("1.0", ms(), event_id="e1", service="checkout")
    b = deploy("1.0", ms(), event_id="e1", service="ledger")
    report, _ = both(tmp_path, [_dict(a), _dict(b), _dict(a)])
    assert (report.applied, report.duplicates) == (2, 1)


def test_a_resend_a_day_later_with_a_new_time_is_a_duplicate(tmp_path: Path) -> None:
    first = flag("CVE-1", "1.0", ms(), event_id="f1")
    rows = [_dict(deploy("1.0", ms(minutes=-1))), _dict(first),
            _dict(deploy("2.0", ms(days=1))),
            _dict(first, occurred_at=format_rfc3339_ms(ms(days=1, hours=1)), status="cleared")]
    report, active = both(tmp_path, rows)
    assert (report.applied, report.duplicates) == (3, 1)
    # ignored whatever else it says: the flag is not cleared
    assert [a.rule for a in active.values()].count("flag-raised-on-running-release") == 1


def test_a_repeat_after_the_window_is_judged_like_any_other_event(tmp_path: Path) -> None:
    first = deploy("1.0", ms(), event_id="d1")
    later = deploy("2.0", ms(days=8), event_id="d2")
    resent = _dict(first, occurred_at=format_rfc3339_ms(ms(days=8, hours=1)))
    report, _ = both(tmp_path, [_dict(first), _dict(later), resent])
    assert (report.applied, report.duplicates) == (3, 0)
    # a repeat of the old one with its old time is late: dead-lettered as-arrived (sorted
    # replay, which judges no lateness, sees the same event twice)
    a_report, _ = replay(tmp_path, [_dict(first), _dict(later), _dict(first)],
                         as_arrived=True, name="late")
    assert (a_report.applied, a_report.duplicates, a_report.late) == (2, 0, 1)


def test_an_id_used_again_in_the_batch_that_forgot_it_does_not_break_the_log(
    tmp_path: Path,
) -> None:
    """A CI tool that numbers its runs per pipeline uses ``e0`` again eight days later,
    in the same instant as another deploy: as-arrived replay takes the two as one batch,
    and the first ``e0`` is still in the log when the second is admitted (the batch's
    first event moved the duplicate window past it). Both deploys of the flagged release
    fire ``flagged-release-deployed`` with trigger ``e0``: one identity, two logged
    claims. Found by hypothesis: the log's bookkeeping raised KeyError (a crash of the
    replay, and a crash loop of a worker restoring the same batch)."""
    rows = [
        _dict(flag("CVE-1", "1.0", ms(), event_id="e1")),
        _dict(deploy("1.0", ms(), event_id="e0")),
        _dict(deploy("1.0", ms(days=8), event_id="e3")),
        _dict(deploy("1.0", ms(days=8), event_id="e0")),
        _dict(deploy("1.0", ms(days=12), event_id="e17")),
    ]
    report, active = both(tmp_path, rows)
    assert (report.applied, report.duplicates, report.dead_lettered) == (5, 0, 0)
    assert {a.trigger for a in active.values()} == {"e0", "e3", "e17"}
    engine = make_engine(True, LATENESS_MS)
    engine.process_batch([parse_event(rows[0]), parse_event(rows[1])], CLOCK_MS)
    engine.process_batch([parse_event(rows[2]), parse_event(rows[3])], CLOCK_MS)
    service = engine.services[SERVICE]
    owners = list(service._owner.values())
    assert len(owners) == len(set(owners)) == 2  # e0 (the second) and e3 own their ids
    engine.process_batch([parse_event(rows[4])], CLOCK_MS)  # both leave the log
    assert [entry.event.event_id for entry in service._log] == ["e17"]
    assert set(service._owner.values()) == {service._log[0].key}


def test_a_duplicate_is_a_duplicate_even_when_it_would_be_late() -> None:
    engine = Engine(EngineConfig(allowed_lateness_ms=LATENESS_MS))
    first = deploy("1.0", ms(), event_id="d1")
    assert engine.process(first, CLOCK_MS).disposition == Disposition.APPLIED
    assert engine.process(deploy("2.0", ms(days=3)), CLOCK_MS).disposition == Disposition.APPLIED
    outcome = engine.process(first, CLOCK_MS)
    assert outcome.disposition == Disposition.DUPLICATE
    assert "d1" in outcome.detail
    stranger = deploy("3.0", ms(), event_id="d9")
    assert engine.process(stranger, CLOCK_MS).disposition == Disposition.LATE


def test_the_window_is_configurable_and_never_shorter_than_the_lateness() -> None:
    assert EngineConfig().effective_duplicate_window_ms == DUPLICATE_WINDOW_MS == 7 * MS_PER_DAY
    short = EngineConfig(duplicate_window_ms=MS_PER_HOUR, allowed_lateness_ms=LATENESS_MS)
    assert short.effective_duplicate_window_ms == LATENESS_MS
    engine = Engine(EngineConfig(duplicate_window_ms=2 * MS_PER_DAY))
    first = deploy("1.0", ms(), event_id="d1")
    engine.process(first, CLOCK_MS)
    engine.process(deploy("2.0", ms(days=3)), CLOCK_MS)
    again = deploy("1.0", ms(days=3, hours=1), event_id="d1")
    assert engine.process(again, CLOCK_MS).disposition == Disposition.APPLIED


def test_remembered_ids_survive_the_state_bytes() -> None:
    config = EngineConfig()
    svc = ServiceEngine("payments-api", config)
    first = deploy("1.0", ms(), event_id="d1")
    svc.process(first, CLOCK_MS)
    svc.process(deploy("2.0", ms(days=2)), CLOCK_MS)  # d1 left the lateness log
    assert svc.log_length == 1
    copy = ServiceEngine.from_bytes(svc.to_bytes(), config, CLOCK_MS)
    assert copy.to_bytes() == svc.to_bytes()
    resend = deploy("1.0", ms(days=2, hours=1), event_id="d1")
    assert copy.process(resend, CLOCK_MS).disposition == Disposition.DUPLICATE
    # ids past the window are forgotten, also in the bytes
    copy.process(deploy("3.0", ms(days=9)), CLOCK_MS)
    buckets = orjson.loads(copy.to_bytes())["ids"]
    remembered = [i for bucket in buckets for group in bucket for i in group[1:]]
    assert "d1" not in remembered
    assert remembered  # the deploy of day 2 is still remembered (it left the log)


# --- the modes agree on any stream of repeats -----------------------------------------


@st.composite
def _streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of two services in time order (each within an hour of the previous), with
    repeats: the same id again later, on the same or the other service, now and then
    with a new time or status, sometimes after the window."""
    rows: list[dict[str, Any]] = []
    at = T0
    for n in range(draw(st.integers(1, 30))):
        at += draw(st.sampled_from([0, MS_PER_HOUR // 2, MS_PER_HOUR, MS_PER_DAY,
                                    4 * MS_PER_DAY]))
        kind = draw(st.sampled_from(["deploy", "flag", "repeat", "repeat"]))
        service = draw(st.sampled_from(["svc-a", "svc-b"]))
        if kind == "repeat" and rows:
            old = draw(st.sampled_from(rows))
            row = dict(old)
            if draw(st.booleans()):
                row["occurred_at"] = format_rfc3339_ms(at)
            if draw(st.booleans()):
                row["service"] = service
            if row["type"] == "security_flag" and draw(st.booleans()):
                row["status"] = "cleared"
            rows.append(row)
            continue
        release = draw(st.sampled_from(["1.0", "2.0"]))
        if kind == "flag":
            event = flag("CVE-1", release, format_rfc3339_ms(at), service=service,
                         event_id=f"e{n}")
        else:
            event = deploy(release, format_rfc3339_ms(at), service=service, event_id=f"e{n}")
        rows.append(event_to_dict(event))
    return rows


@PROPS
@given(_streams())
def test_sorted_and_as_arrived_replay_agree_on_repeats(rows: list[dict[str, Any]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        s_report, a_report = replay(Path(tmp), rows, as_arrived=False), replay(
            Path(tmp), rows, as_arrived=True)
    (sr, sa), (ar, aa) = s_report, a_report
    assert sr.read == ar.read == len(rows)
    assert sr.read == sr.applied + sr.duplicates + sr.dead_lettered
    assert ar.read == ar.applied + ar.duplicates + ar.dead_lettered
    if ar.late == 0:  # the central guarantee holds for input within the lateness
        assert set(sa) == set(aa)
        assert (sr.applied, sr.duplicates) == (ar.applied, ar.duplicates)


def test_a_busy_services_settled_ids_are_rendered_once() -> None:
    """A week of ids is in every snapshot of a busy service; the hours behind the
    frontier cannot change, so storing the state again renders only the new ones."""
    import time

    config = EngineConfig()
    svc = ServiceEngine("busy", config)
    for i in range(7 * 24 * 60):  # one event a minute for a week: 10 080 ids
        svc.process(deploy(f"r{i % 3}", ms(minutes=i), event_id=f"e{i}", service="busy"),
                    CLOCK_MS)
    first = svc.to_bytes()
    start = time.perf_counter()
    for i in range(50):
        svc.process(deploy("r9", ms(minutes=10_080 + i), event_id=f"n{i}", service="busy"),
                    CLOCK_MS)
        svc.to_bytes()
    per_snapshot = (time.perf_counter() - start) / 50
    data = svc.to_bytes()
    assert len(data) > len(first) // 2
    copy = ServiceEngine.from_bytes(data, config, CLOCK_MS)
    assert copy.to_bytes() == data
    assert copy.remembered_ids > 10_000  # (expired ids of the edge hour are not written)
    assert per_snapshot < 0.05, f"{per_snapshot * 1000:.1f} ms per snapshot"
    # a repeat after the window re-files its id: the bytes still round-trip
    svc.process(deploy("r1", ms(days=15), event_id="e5", service="busy"), CLOCK_MS)
    data = svc.to_bytes()
    assert ServiceEngine.from_bytes(data, config, CLOCK_MS).to_bytes() == data
