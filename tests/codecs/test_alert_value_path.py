"""The worker renders alerts from the Alert value; the bytes must equal the dict path's."""

from __future__ import annotations

import orjson
import pytest

from agents.engine import EngineConfig, ServiceEngine
from agents.model.alerts import RETRACTED, Alert
from agents.model.events import parse_event
from streams.codecs import make_codec
from streams.codecs.datum import alert_to_datum, alert_value_to_datum
from streams.ocsf import alert_to_ocsf, alert_value_to_ocsf
from streams.synthetic import SyntheticSpec, generate
from tests.codecs.codec_samples import make_alert


def _engine_alerts() -> list[Alert]:
    """Alerts of every rule, firings and retractions (events arrive out of order)."""
    spec = SyntheticSpec(services=40, events=3_000, out_of_order_share=0.2, seed=7)
    engines: dict[str, ServiceEngine] = {}
    out: list[Alert] = []
    for obj in generate(spec):
        event = parse_event(obj)
        engine = engines.setdefault(event.service, ServiceEngine(event.service, EngineConfig()))
        out.extend(engine.process(event, event.occurred_at_ms + 1_500).alerts)
    return out


ENGINE_ALERTS = _engine_alerts()
SAMPLES = [
    make_alert(),
    make_alert("retracted"),
    make_alert(release_rec=None),
    make_alert().replace(release_aliases=(), evidence_count=0, recommendation=None),
    make_alert().replace(evidence=(), evidence_count=0, summary="no CVE- id here"),
]


def test_the_sample_covers_retractions_and_every_rule() -> None:
    assert any(a.status == RETRACTED for a in ENGINE_ALERTS)
    assert len({a.rule for a in ENGINE_ALERTS}) >= 6
    assert any(a.recommendation is None for a in ENGINE_ALERTS)
    assert any(a.recommendation is not None for a in ENGINE_ALERTS)


@pytest.mark.parametrize("alert", SAMPLES + ENGINE_ALERTS[::7])
def test_avro_from_the_value_equals_avro_from_the_dict(alert: Alert) -> None:
    codec = make_codec()
    assert alert_value_to_datum(alert) == alert_to_datum(alert.to_dict())
    assert codec.encode_alert_value(alert) == codec.encode_alert(alert.to_dict())


@pytest.mark.parametrize("alert", SAMPLES + ENGINE_ALERTS[::7])
def test_ocsf_with_the_value_equals_ocsf_from_the_dict(alert: Alert) -> None:
    as_dict = alert.to_dict()
    assert alert_to_ocsf(as_dict, alert) == alert_to_ocsf(as_dict)


@pytest.mark.parametrize("alert", SAMPLES + ENGINE_ALERTS[::3])
def test_ocsf_of_the_value_is_the_dict_paths_byte_for_byte(alert: Alert) -> None:
    expected = alert_to_ocsf(alert.to_dict())
    rendered = alert_value_to_ocsf(alert)
    assert rendered == expected
    assert orjson.dumps(rendered) == orjson.dumps(expected)  # key order too
