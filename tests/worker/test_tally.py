"""The worker's lock-free counters and how a scrape reads them."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from streams.worker.metrics import PipelineMetrics
from streams.worker.tally import Tally


def test_a_labelled_tally_counts_each_child_and_refuses_wrong_labels() -> None:
    alerts = Tally("relsec_alerts", "Alert events emitted", ("rule", "status"))
    alerts.labels("redeploy", "firing").inc()
    alerts.labels("redeploy", "firing").inc(2)
    alerts.labels("redeploy", "retracted").inc()
    assert sorted(alerts.samples()) == [
        (["redeploy", "firing"], 3),
        (["redeploy", "retracted"], 1),
    ]
    with pytest.raises(ValueError, match=r"takes labels \('rule', 'status'\)"):
        alerts.labels("redeploy")


def test_an_unlabelled_tally_is_one_sample() -> None:
    applied = Tally("relsec_events_applied", "Events applied by the engine")
    applied.inc()
    applied.inc(4)
    assert applied.samples() == [([], 5)]


def test_the_scrape_shows_the_tallies_as_counters() -> None:
    metrics = PipelineMetrics()
    metrics.applied.inc(7)
    metrics.alerts.labels("flip_flop", "firing").inc()
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE relsec_events_applied_total counter" in text
    assert "relsec_events_applied_total 7.0" in text
    assert 'relsec_alerts_total{rule="flip_flop",status="firing"} 1.0' in text
