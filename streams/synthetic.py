"""Synthetic event streams for benchmarks and large tests.

Per service a small world moves forward: releases are cut and deployed, some
deploys fail, incidents open and close and trigger rollbacks, scanners raise
and clear flags on recent releases. The output is the SPEC §1 JSON objects in
*arrival order*: mostly by event time, with a share of events delayed (within
``max_delay_ms``) and a share re-sent as duplicates. Deterministic per seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agents.model.timefmt import MS_PER_HOUR, format_rfc3339_ms

START_MS = 1_777_593_600_000  # 2026-05-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """Shape of a synthetic stream."""

    services: int = 100
    events: int = 10_000
    environments: tuple[str, ...] = ("production", "staging")
    span_ms: int = 30 * 24 * MS_PER_HOUR
    duplicate_share: float = 0.02
    out_of_order_share: float = 0.1
    max_delay_ms: int = 20 * MS_PER_HOUR
    seed: int = 7


class _World:
    __slots__ = ("incident_seq", "open_incidents", "raised", "release_seq", "releases", "running")

    def __init__(self) -> None:
        self.release_seq = 0
        self.releases: list[str] = []
        self.running: dict[str, str] = {}
        self.open_incidents: dict[str, str] = {}
        self.raised: dict[tuple[str, str], str] = {}
        self.incident_seq = 0


def _event(kind: str, seq: int, ms: int, service: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "event_id": f"syn-{seq:09d}",
        "occurred_at": format_rfc3339_ms(ms),
        "source": "synthetic",
        "service": service,
        **fields,
    }


def generate(spec: SyntheticSpec) -> Iterator[dict[str, Any]]:
    """Events in arrival order (see module docstring)."""
    rng = random.Random(spec.seed)
    worlds = [_World() for _ in range(spec.services)]
    names = [f"svc-{i:05d}" for i in range(spec.services)]
    step_ms = max(1, spec.span_ms // max(1, spec.events))
    delayed: list[tuple[int, int, dict[str, Any]]] = []  # (release time, tiebreak, event)
    tiebreak = 0
    ms = START_MS
    produced = 0
    seq = 0
    import heapq

    while produced < spec.events:
        ms += rng.randint(0, 2 * step_ms) // 1000 * 1000
        i = rng.randrange(spec.services)
        event = _step(rng, worlds[i], names[i], seq, ms, spec)
        seq += 1
        while delayed and delayed[0][0] <= ms:
            _, _, late = heapq.heappop(delayed)
            yield late
        if rng.random() < spec.out_of_order_share:
            tiebreak += 1
            heapq.heappush(delayed, (ms + rng.randint(1, spec.max_delay_ms), tiebreak, event))
        else:
            yield event
        produced += 1
        if produced < spec.events and rng.random() < spec.duplicate_share:
            tiebreak += 1
            heapq.heappush(
                delayed, (ms + rng.randint(0, spec.max_delay_ms // 2), tiebreak, dict(event))
            )
            produced += 1
    while delayed:
        yield heapq.heappop(delayed)[2]


def _step(
    rng: random.Random, w: _World, service: str, seq: int, ms: int, spec: SyntheticSpec
) -> dict[str, Any]:
    env = rng.choice(spec.environments)
    roll = rng.random()
    if roll < 0.55 or not w.releases:
        return _deploy(rng, w, service, seq, ms, env)
    if roll < 0.78:
        return _incident(rng, w, service, seq, ms, env)
    return _flag(rng, w, service, seq, ms)


def _deploy(
    rng: random.Random, w: _World, service: str, seq: int, ms: int, env: str
) -> dict[str, Any]:
    previous = w.running.get(env)
    rollback = previous is not None and len(w.releases) > 1 and rng.random() < 0.3
    if rollback:
        candidates = [r for r in w.releases[-4:] if r != previous]
        release = rng.choice(candidates)
    elif w.releases and rng.random() < 0.4:
        release = rng.choice(w.releases[-3:])
    else:
        w.release_seq += 1
        release = f"1.{w.release_seq // 10}.{w.release_seq % 10}"
        w.releases.append(release)
        del w.releases[:-8]
    status = "failed" if rng.random() < 0.05 else "succeeded"
    if status == "succeeded":
        w.running[env] = release
    incident: str | None = next((i for i, e in w.open_incidents.items() if e == env), None)
    return _event(
        "deploy",
        seq,
        ms,
        service,
        environment=env,
        release=release,
        previous_release=previous if rng.random() < 0.8 else None,
        action="rollback" if rollback else "deploy",
        status=status,
        team=rng.choice(("sre", "security", "dev", None)),
        actor=None,
        reason=None,
        incident_id=incident if rollback and incident and rng.random() < 0.7 else None,
    )


def _incident(
    rng: random.Random, w: _World, service: str, seq: int, ms: int, env: str
) -> dict[str, Any]:
    if w.open_incidents and rng.random() < 0.5:
        incident_id = rng.choice(sorted(w.open_incidents))
        env = w.open_incidents[incident_id]
        status = rng.choice(("acknowledged", "resolved", "resolved"))
        if status == "resolved":
            del w.open_incidents[incident_id]
    else:
        w.incident_seq += 1
        incident_id = f"{service}-INC-{w.incident_seq}"
        w.open_incidents[incident_id] = env
        status = "opened"
    return _event(
        "incident",
        seq,
        ms,
        service,
        environment=env,
        incident_id=incident_id,
        status=status,
        severity=rng.choice(("sev1", "sev2", "sev3", "sev4")),
        title="synthetic incident",
        suspected_release=w.running.get(env),
    )


def _flag(rng: random.Random, w: _World, service: str, seq: int, ms: int) -> dict[str, Any]:
    if w.raised and rng.random() < 0.35:
        key = rng.choice(sorted(w.raised))
        del w.raised[key]
        release, flag_id = key
        status = rng.choice(("cleared", "risk_accepted"))
    else:
        release = rng.choice(w.releases[-4:])
        flag_id = f"CVE-2026-{rng.randint(1000, 99999)}"
        w.raised[(release, flag_id)] = release
        status = "raised"
    later = [r for r in w.releases if r > release]
    return _event(
        "security_flag",
        seq,
        ms,
        service,
        flag_id=flag_id,
        release=release,
        status=status,
        severity=rng.choice(("critical", "high", "medium", "low")),
        vulnerabilities=[flag_id],
        title="synthetic finding",
        fixed_in=later[0] if later and rng.random() < 0.5 else None,
    )
