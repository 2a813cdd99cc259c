"""Service state to bytes and back (the Faust table's values): round trip and bad input."""

from __future__ import annotations

import orjson
import pytest

from agents.engine import EngineConfig, ServiceEngine
from agents.errors import RelsecError, StateError

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
     b'{"v": 1, "service": "s", "max_seen_ms": 0, "base": {"envs": {"p": 1}}, "log": []}'],
)
def test_bad_bytes_raise_state_error(data: bytes) -> None:
    with pytest.raises(StateError) as info:
        ServiceEngine.from_bytes(data, CONFIG, 0)
    assert isinstance(info.value, RelsecError)
