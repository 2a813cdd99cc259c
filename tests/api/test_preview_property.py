"""``ServiceEngine.preview`` is the engine's own outcome, and asking changes nothing.

For any history of one service (deploys, rollbacks, flags, incidents, arrived in any
order) and any next change: the alerts ``preview`` returns
are the alerts ``process`` fires when that change then happens, and the engine's state
(its bytes) is the same before and after the preview.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.engine import EngineConfig, ServiceEngine
from agents.model.events import Event
from tests.engine.factory import SERVICE, deploy, flag, incident, ms

RELEASES = ["1.0", "1.1", "1.2", "2.0"]
ENVS = ["production", "staging"]


@st.composite
def histories(draw: Any) -> list[Event]:
    events: list[Event] = []
    minute = 0
    for i in range(draw(st.integers(min_value=0, max_value=25))):
        minute += draw(st.integers(min_value=1, max_value=600))
        kind = draw(st.sampled_from(["deploy", "rollback", "flag", "clear", "open", "resolve"]))
        when = ms(minutes=minute)
        env = draw(st.sampled_from(ENVS))
        release = draw(st.sampled_from(RELEASES))
        if kind in ("deploy", "rollback"):
            events.append(
                deploy(
                    release,
                    when,
                    action=kind,
                    env=env,
                    team=draw(st.sampled_from(["sre", "security", "dev"])),
                    status=draw(st.sampled_from(["succeeded", "succeeded", "failed"])),
                    incident_id=draw(st.sampled_from([None, "INC-1"])),
                    event_id=f"e{i}",
                )
            )
        elif kind in ("flag", "clear"):
            events.append(
                flag(
                    draw(st.sampled_from(["CVE-1", "CVE-2"])),
                    release,
                    when,
                    "raised" if kind == "flag" else "cleared",
                    severity=draw(st.sampled_from(["critical", "high", "medium", "low"])),
                    fixed_in=draw(st.sampled_from([None, *RELEASES])),
                    event_id=f"e{i}",
                )
            )
        else:
            events.append(
                incident(
                    draw(st.sampled_from(["INC-1", "INC-2"])),
                    when,
                    "opened" if kind == "open" else "resolved",
                    env=env,
                    event_id=f"e{i}",
                )
            )
    return events


def _content(alerts: Any) -> list[dict[str, Any]]:
    out = []
    for a in alerts:
        d = a.to_dict()
        d.pop("detected_at")
        out.append(d)
    return sorted(out, key=lambda d: d["alert_id"])


@settings(max_examples=150, deadline=None)
@given(
    history=histories(),
    release=st.sampled_from(RELEASES),
    action=st.sampled_from(["deploy", "rollback"]),
    env=st.sampled_from(ENVS),
    team=st.sampled_from(["sre", "security", "dev"]),
    shuffle=st.randoms(use_true_random=False),
)
def test_preview_is_what_process_then_fires_and_changes_nothing(
    history: list[Event], release: str, action: str, env: str, team: str, shuffle: Any
) -> None:
    now = ms(days=40)
    engine = ServiceEngine(SERVICE, EngineConfig())
    arrival = list(history)
    shuffle.shuffle(arrival)  # events later than the lateness are not applied: any state does
    for event in arrival:
        engine.process(event, now)
    last = max((e.occurred_at_ms for e in history), default=ms())
    change = deploy(release, last + 60_000, action=action, env=env, team=team, event_id="next")
    before = (engine.to_bytes(), engine.head.to_obj(), engine.log_length)
    previewed = engine.preview(change, now)
    assert (engine.to_bytes(), engine.head.to_obj(), engine.log_length) == before
    assert engine.preview(change, now) == previewed
    fired = engine.process(change, now).alerts
    assert _content(previewed) == _content(fired)
