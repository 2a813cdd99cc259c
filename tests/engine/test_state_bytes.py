"""Service state to bytes and back (the Faust table's values): round trip and bad input."""

from __future__ import annotations

import orjson
import pytest

from agents.engine import EngineConfig, ServiceEngine
from agents.errors import RelsecError, StateError
from agents.model.events import Event

from .factory import SERVICE, clock_for, deploy, flag, incident, ms, rollback

CONFIG = EngineConfig()


LAST = deploy("1.1", ms(days=3))


def _engine() -> ServiceEngine:
    events = [deploy("1.0", ms()), flag("CVE-1", "1.0", ms(hours=1), fixed_in="1.1"),
              incident("INC-1", ms(days=2)), rollback("0.9", ms(days=2, hours=1)), LAST]
    svc = ServiceEngine(SERVICE, CONFIG)
    now = clock_for(events)
    for e in events:
        svc.process(e, now)
    return svc


def test_round_trip_keeps_base_log_and_owned_alerts() -> None:
    svc = _engine()
    assert svc.log_length > 0  # something is still within the lateness
    data = svc.to_bytes()
    copy = ServiceEngine.from_bytes(data, CONFIG, ms(days=30))
    assert copy.to_bytes() == data
    assert copy.max_seen_ms == svc.max_seen_ms
    assert [a.alert_id for a in copy.owned_alerts()] == [a.alert_id for a in svc.owned_alerts()]
    # duplicates of logged events are still recognized after the restore
    assert LAST.event_id in {e["event_id"] for e in orjson.loads(data)["log"]}
    assert copy.process(LAST, ms(days=30)).disposition.value == "duplicate"


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"v": 99}', b'{"v": 1, "service": "s"}',
     b'{"v": 1, "service": "s", "max_seen_ms": 0, "base": {"envs": {}, "flags": [], '
     b'"releases": [], "fired_shared": {}}, "log": [{"type": "deploy"}]}',
     b'{"v": 1, "service": "s", "max_seen_ms": 0, "base": {"envs": {"p": 1}}, "log": []}',
     b'{"v": 2, "service": "s", "max_seen_ms": 0, "base": {"envs": {}, "flags": [], '
     b'"releases": [], "names": [["only-one"]]}, "log": []}',
     b'{"v": 2, "service": "s", "max_seen_ms": 0, "base": {"envs": {}, "flags": [], '
     b'"releases": [], "names": [["a", "b"], ["b", "c"]]}, "log": []}',
     b'{"v": 2, "service": "s", "max_seen_ms": 0, "base": {"envs": {}, "flags": [], '
     b'"releases": []}, "log": [], "ids": [[0, 5]]}',
     b'{"v": 2, "service": "s", "max_seen_ms": "0", "base": {"envs": {}, "flags": [], '
     b'"releases": []}, "log": []}'],
)
def test_bad_bytes_raise_state_error(data: bytes) -> None:
    with pytest.raises(StateError) as info:
        ServiceEngine.from_bytes(data, CONFIG, 0)
    assert isinstance(info.value, RelsecError)


# A state written by the format-1 engine (before release names, tombstones and the
# duplicate window), after d1, f1, f2, i1, rb (finalized) and d2, f3 (in the log).
V1_STATE = (
    b'{"v":1,"service":"payments-api","max_seen_ms":1772676000000,"base":{"envs":{"production":{'
    b'"running":"0.9","running_ref":["rb","deploy",1772586000000],"deploys":[["1.0",0,["d1","dep'
    b'loy",1772409600000]],["0.9",0,["rb","deploy",1772586000000]]],"incidents":[["INC-1","opene'
    b'd","sev2",["i1","incident",1772582400000]]],"rollbacks":[["1.0","INC-1",["rb","deploy",177'
    b'2586000000]]]}},"flags":{"1.0":[["CVE-1","high",[],"1.1",["f1","security_flag",17724132000'
    b'00]]],"0.9":[["CVE-2","critical",[],null,["f2","security_flag",1772416800000]]]},"releases'
    b'":[["1.0",1772409600000],["0.9",1772586000000]],"fired_shared":{"492cd26826ab39f66e154b8da'
    b'c5e1d8c":1772413200000,"8e5036a8712314939cacb89b6f08be9f":1772582400000}},"log":[{"type":"'
    b'deploy","event_id":"d2","occurred_at":"2026-03-05T00:00:00Z","source":"argocd","service":"'
    b'payments-api","environment":"production","release":"1.1","action":"deploy","status":"succe'
    b'eded","team":"dev","actor":"someone"},{"type":"security_flag","event_id":"f3","occurred_at'
    b'":"2026-03-05T02:00:00Z","source":"trivy","service":"payments-api","flag_id":"CVE-3","rele'
    b'ase":"1.1","status":"raised","severity":"high","vulnerabilities":[],"title":"a finding"}]}'
)


def _v1_events() -> list[Event]:
    return [
        deploy("1.0", ms(), event_id="d1"),
        flag("CVE-1", "1.0", ms(hours=1), fixed_in="1.1", event_id="f1"),
        flag("CVE-2", "0.9", ms(hours=2), severity="critical", event_id="f2"),
        incident("INC-1", ms(days=2), event_id="i1"),
        rollback("0.9", ms(days=2, hours=1), incident_id="INC-1", event_id="rb"),
        deploy("1.1", ms(days=3), event_id="d2"),
        flag("CVE-3", "1.1", ms(days=3, hours=2), event_id="f3"),
    ]


def test_a_format_1_state_restores_and_goes_on_as_if_never_stored() -> None:
    events = _v1_events()
    now = clock_for(events)
    restored = ServiceEngine.from_bytes(V1_STATE, CONFIG, now)
    fresh = ServiceEngine(SERVICE, CONFIG)
    for e in events:
        fresh.process(e, now)
    assert [a.alert_id for a in restored.owned_alerts()] == [
        a.alert_id for a in fresh.owned_alerts()]
    more = [
        flag("CVE-1", "1.0", ms(days=3, hours=3), event_id="f1-again"),  # remembered owner
        deploy("0.9", ms(days=3, hours=4), env="staging"),  # CVE-2 still active on 0.9
        deploy("1.0", ms(days=3, hours=5)),  # rolled back from during INC-1
        flag("CVE-9", "1.0", ms(days=2, hours=23), event_id="late"),  # inside the log
    ]

    def plain(svc: ServiceEngine) -> list[list[tuple[str, str, str]]]:
        return [[(a.rule, a.status, a.alert_id) for a in
                 (x.replace(detected_at_ms=0) for x in svc.process(e, now).alerts)]
                for e in more]

    assert plain(restored) == plain(fresh)
    again = restored.to_bytes()
    assert orjson.loads(again)["v"] == 2
    assert ServiceEngine.from_bytes(again, CONFIG, now).to_bytes() == again
    # a duplicate of a logged event is still one after the v1 restore
    copy = ServiceEngine.from_bytes(V1_STATE, CONFIG, now)
    assert copy.process(events[-1], now).disposition.value == "duplicate"


def test_a_scanner_report_stored_at_each_checkpoint_stores_what_one_store_does() -> None:
    """The real shape of a burst: a service with weeks of history, then one Trivy report of
    2 000 findings at one instant on the running release, stored every 50 findings (the
    worker's checkpoints during the burst, while nothing leaves the log). The kept
    rendering of the base must not go stale: the last bytes equal those of a service
    stored once, at the end, and restore to the same alerts."""
    history = [deploy(f"1.{i}", ms(days=i)) for i in range(20)]
    report_at = ms(days=20, hours=1)
    report = [
        flag(f"CVE-2026-{i:05d}", "1.19", report_at, fixed_in="1.20") for i in range(2_000)
    ]
    stream = [*history, *report, deploy("1.20", ms(days=21))]
    now = clock_for(stream)
    # Never pruning: storing prunes first, so with pruning the bytes would depend on when.
    config = EngineConfig(prune_every_events=None)
    checkpointed, once = ServiceEngine(SERVICE, config), ServiceEngine(SERVICE, config)
    stored = b""
    for n, event in enumerate(stream):
        checkpointed.process(event, now)
        once.process(event, now)
        if n % 50 == 0:
            stored = checkpointed.to_bytes()
    stored = checkpointed.to_bytes()
    assert stored == once.to_bytes()
    restored = ServiceEngine.from_bytes(stored, config, now)
    assert sorted(a.alert_id for a in restored.owned_alerts()) == sorted(
        a.alert_id for a in once.owned_alerts()
    )
