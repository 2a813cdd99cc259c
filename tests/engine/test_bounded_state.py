"""Bounded state must not make outcomes depend on when pruning ran or on the lateness.

SPEC §2: the active alerts are a pure function of the set of events. The
engine bounds two memories: the recommendation candidates (the
``max_release_candidates`` most recently deployed releases) and the owners of
shared alert identities (``alert_memory_ms`` of event time). Both must give the
same answer whether or not pruning has run, in sorted and as-arrived runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agents.engine import Engine, EngineConfig
from agents.model.alerts import Alert
from agents.model.events import Event, order_key

from .factory import clock_for, deploy, flag, incident, ms, rec_release

CONFIGS = {
    "sorted-never-pruned": EngineConfig(allowed_lateness_ms=0, prune_every_events=None),
    "sorted-pruned-often": EngineConfig(allowed_lateness_ms=0, prune_every_events=1),
    "sorted-default": EngineConfig(allowed_lateness_ms=0),
    "lateness-24h": EngineConfig(),
    "lateness-24h-pruned-often": EngineConfig(prune_every_events=1),
}


def _alerts(events: Sequence[Event], config: EngineConfig) -> list[Alert]:
    engine = Engine(config)
    now = clock_for(events)
    out: list[Alert] = []
    for event in sorted(events, key=order_key):
        out.extend(engine.process(event, now).alerts)
    return out


def _many_releases() -> list[Event]:
    """20 releases deployed; the 16 most recent flagged; then v20 deployed again."""
    events = [deploy(f"v{i:02d}", ms(hours=i)) for i in range(1, 21)]
    events += [flag(f"F{i}", f"v{i:02d}", ms(hours=21, minutes=i)) for i in range(5, 21)]
    events.append(deploy("v20", ms(hours=30), event_id="trigger"))
    return events


def _recommendations(config: EngineConfig) -> list[str | None]:
    return [
        rec_release(a)
        for a in _alerts(_many_releases(), config)
        if a.rule == "flagged-release-deployed"
    ]


def test_recommendation_beyond_the_candidate_cap_does_not_depend_on_pruning() -> None:
    results = {name: _recommendations(cfg) for name, cfg in CONFIGS.items()}
    assert len({tuple(r) for r in results.values()}) == 1, results
    # the 16 most recent releases are all flagged or the alert's own: nothing to recommend
    assert results["sorted-default"] == [None]


def test_candidate_cap_large_enough_gives_the_next_clean_release() -> None:
    for cfg in (EngineConfig(allowed_lateness_ms=0, max_release_candidates=32),
                EngineConfig(max_release_candidates=32, prune_every_events=1)):
        assert _recommendations(cfg) == ["v04"]


def _re_raised_after(days: int) -> list[Event]:
    events = [deploy("v1", ms()), flag("CVE-1", "v1", ms(hours=1)),
              flag("CVE-1", "v1", ms(days=1), "cleared")]
    events += [incident(f"I{i}", ms(days=2 + i * 2)) for i in range(50)]
    events.append(flag("CVE-1", "v1", ms(days=days)))
    return events


@pytest.mark.parametrize("days", [60, 95])
def test_shared_identity_memory_does_not_depend_on_pruning(days: int) -> None:
    results = {
        name: [(a.rule, a.occurred_at_ms) for a in _alerts(_re_raised_after(days), cfg)
               if a.rule == "flag-raised-on-running-release"]
        for name, cfg in CONFIGS.items()
    }
    assert len({tuple(r) for r in results.values()}) == 1, results
    first = ("flag-raised-on-running-release", ms(hours=1))
    if days <= 90:
        # within the memory the earliest producer owns the identity: nothing new
        assert results["sorted-default"] == [first]
    else:
        # beyond it the identity fires again (same alert_id, new content)
        assert results["sorted-default"] == [first, (first[0], ms(days=days))]
