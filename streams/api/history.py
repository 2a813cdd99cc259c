"""Each service's events over time, for the timeline page (and the status answer's details).

The worker's state keeps only what the rules need (24 hours of deploys, 7 days of
rollbacks), so the history comes from the input topics themselves: every valid event
read, deduplicated by ``event_id`` per service, kept for ``history_ms`` of event time
behind the newest event of its service and at most ``max_events`` per service (the
oldest go first). A history is bounded by the input topics' retention too.

:func:`build_timeline` turns a history into what the page draws: per environment the
running release over time, the deploys and rollbacks, the incidents as spans; per
release its flags as spans, grouped (a scanner report raises thousands of findings at
one instant on one release; one span per severity and lifetime, not one per finding).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from agents.model.events import Deploy, Event, Incident, SecurityFlag, order_key
from agents.model.timefmt import MS_PER_DAY

DEFAULT_HISTORY_MS: Final = 400 * MS_PER_DAY
DEFAULT_MAX_EVENTS: Final = 500_000
FLAG_IDS_PER_GROUP: Final = 12
"""How many flag ids a flag span names; the rest are counted."""
SEVERITY_ORDER: Final = ("low", "medium", "high", "critical")


@dataclass(slots=True)
class ServiceHistory:
    """The events of one service, in arrival order (sorted when read)."""

    events: list[Event] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    newest_ms: int = 0
    deploy_by_id: dict[str, Deploy] = field(default_factory=dict)
    incident_titles: dict[str, str] = field(default_factory=dict)
    sorted_upto: int = 0
    """``events[:sorted_upto]`` is sorted by order key."""
    version: int = 0
    """Changes whenever an event is added or trimmed away."""

    def add(self, event: Event) -> bool:
        if event.event_id in self.ids:
            return False
        self.ids.add(event.event_id)
        self.events.append(event)
        self.version += 1
        if isinstance(event, Deploy):
            self.deploy_by_id[event.event_id] = event
        elif isinstance(event, Incident):
            self.incident_titles[event.incident_id] = event.title
        self.newest_ms = max(self.newest_ms, event.occurred_at_ms)
        return True

    def sorted_events(self) -> list[Event]:
        if self.sorted_upto != len(self.events):
            self.events.sort(key=order_key)
            self.sorted_upto = len(self.events)
        return self.events

    def trim(self, history_ms: int, max_events: int) -> None:
        """Drop events older than ``history_ms`` behind the newest, and beyond ``max_events``."""
        events = self.sorted_events()
        edge = self.newest_ms - history_ms
        drop = 0
        while drop < len(events) and events[drop].occurred_at_ms < edge:
            drop += 1
        drop = max(drop, len(events) - max_events)
        if drop <= 0:
            return
        for event in events[:drop]:
            self.ids.discard(event.event_id)
            if isinstance(event, Deploy):
                self.deploy_by_id.pop(event.event_id, None)
        del events[:drop]
        self.sorted_upto = len(events)
        self.version += 1


class HistoryStore:
    """Histories of every service; thread-safe (the source thread adds, handlers read)."""

    def __init__(
        self, history_ms: int = DEFAULT_HISTORY_MS, max_events: int = DEFAULT_MAX_EVENTS
    ) -> None:
        self.history_ms = history_ms
        self.max_events = max_events
        self._lock = threading.Lock()
        self._services: dict[str, ServiceHistory] = {}
        self.duplicates = 0

    def add(self, event: Event) -> None:
        with self._lock:
            history = self._services.get(event.service)
            if history is None:
                history = self._services[event.service] = ServiceHistory()
            if not history.add(event):
                self.duplicates += 1
                return
            if len(history.events) > self.max_events + self.max_events // 10:
                history.trim(self.history_ms, self.max_events)

    def services(self) -> list[str]:
        with self._lock:
            return sorted(self._services)

    def events_of(self, service: str) -> list[Event]:
        """The service's events sorted by order key (a copy), trimmed to the window."""
        with self._lock:
            history = self._services.get(service)
            if history is None:
                return []
            history.trim(self.history_ms, self.max_events)
            return list(history.sorted_events())

    def version(self, service: str) -> int:
        with self._lock:
            history = self._services.get(service)
            return history.version if history else 0

    def deploy(self, service: str, event_id: str) -> Deploy | None:
        with self._lock:
            history = self._services.get(service)
            return history.deploy_by_id.get(event_id) if history else None

    def incident_title(self, service: str, incident_id: str) -> str | None:
        with self._lock:
            history = self._services.get(service)
            return history.incident_titles.get(incident_id) if history else None


# -- the timeline ----------------------------------------------------------------


def _deploy_obj(d: Deploy) -> dict[str, Any]:
    return {
        "event_id": d.event_id,
        "at": d.occurred_at_ms,
        "release": d.release,
        "previous_release": d.previous_release,
        "action": d.action,
        "status": d.status,
        "team": d.team,
        "actor": d.actor,
        "reason": d.reason,
        "incident_id": d.incident_id,
        "source": d.source,
    }


@dataclass(slots=True)
class _FlagLife:
    start_ms: int
    severity: str
    title: str
    vulnerabilities: tuple[str, ...]
    fixed_in: str | None


def _flag_spans(flags: Iterable[SecurityFlag]) -> list[dict[str, Any]]:
    """Flag lifetimes (raised → cleared or risk accepted), grouped per release, severity,
    start and end; a re-raise while active keeps the start and takes the newest severity."""
    active: dict[tuple[str, str], _FlagLife] = {}
    groups: dict[tuple[str, str, int, int | None, str | None], list[tuple[str, _FlagLife]]] = {}

    def close(
        release: str, flag_id: str, life: _FlagLife, end: int | None, how: str | None
    ) -> None:
        groups.setdefault((release, life.severity, life.start_ms, end, how), []).append(
            (flag_id, life)
        )

    for f in flags:
        key = (f.release, f.flag_id)
        life = active.get(key)
        if f.status == "raised":
            if life is None:
                active[key] = _FlagLife(
                    f.occurred_at_ms, f.severity, f.title, f.vulnerabilities, f.fixed_in
                )
            else:
                life.severity, life.title = f.severity, f.title
                life.vulnerabilities, life.fixed_in = f.vulnerabilities, f.fixed_in
        elif life is not None:
            close(f.release, f.flag_id, life, f.occurred_at_ms, f.status)
            del active[key]
    for (release, flag_id), life in active.items():
        close(release, flag_id, life, None, None)
    spans: list[dict[str, Any]] = []
    for (release, severity, start, end, how), members in groups.items():
        members.sort(key=lambda m: m[0])
        names: list[str] = []
        fixed: list[str] = []
        for flag_id, life in members:
            for name in (flag_id, *life.vulnerabilities):
                if name not in names and len(names) < FLAG_IDS_PER_GROUP:
                    names.append(name)
            if life.fixed_in and life.fixed_in not in fixed:
                fixed.append(life.fixed_in)
        spans.append(
            {
                "release": release,
                "severity": severity,
                "from": start,
                "to": end,
                "ended_by": how,
                "count": len(members),
                "ids": names,
                "title": members[0][1].title if len(members) == 1 else None,
                "fixed_in": fixed[:5],
            }
        )
    spans.sort(key=lambda s: (s["from"], -SEVERITY_ORDER.index(s["severity"]), s["release"]))
    return spans


def _incident_spans(incidents: Iterable[Incident]) -> list[dict[str, Any]]:
    """One span per open period of an incident, in the environment of the event that
    opened it; a re-open after ``resolved`` starts a new span."""
    open_spans: dict[str, dict[str, Any]] = {}
    spans: list[dict[str, Any]] = []
    for i in incidents:
        span = open_spans.get(i.incident_id)
        if i.status == "resolved":
            if span is not None:
                span["to"] = i.occurred_at_ms
                del open_spans[i.incident_id]
            continue
        if span is None:
            span = {
                "incident_id": i.incident_id,
                "environment": i.environment,
                "from": i.occurred_at_ms,
                "to": None,
                "severity": i.severity,
                "title": i.title,
                "suspected_release": i.suspected_release,
                "acknowledged_at": None,
                "event_id": i.event_id,
            }
            open_spans[i.incident_id] = span
            spans.append(span)
        else:
            span["severity"] = i.severity
            span["title"] = i.title or span["title"]
        if i.status == "acknowledged" and span["acknowledged_at"] is None:
            span["acknowledged_at"] = i.occurred_at_ms
    return spans


def build_timeline(events: list[Event]) -> dict[str, Any]:
    """What the timeline page draws, from events sorted by order key.

    Times are epoch milliseconds. ``environments`` maps each environment to its
    ``segments`` (the running release from each succeeded deploy to the next),
    ``deploys`` (every deploy and rollback, failed ones too) and ``incidents``
    (spans); ``flags`` are spans on releases (all environments); ``releases`` lists
    every release named, first seen first.
    """
    envs: dict[str, dict[str, Any]] = {}
    releases: dict[str, int] = {}
    flags: list[SecurityFlag] = []
    incidents: list[Incident] = []
    first_ms: int | None = None
    last_ms: int | None = None
    for event in events:
        ms = event.occurred_at_ms
        first_ms = ms if first_ms is None else min(first_ms, ms)
        last_ms = ms if last_ms is None else max(last_ms, ms)
        if isinstance(event, Deploy):
            env = envs.setdefault(event.environment, {"segments": [], "deploys": []})
            env["deploys"].append(_deploy_obj(event))
            releases.setdefault(event.release, ms)
            if event.status != "succeeded":
                continue
            segments = env["segments"]
            if segments and segments[-1]["to"] is None:
                segments[-1]["to"] = ms
            segments.append(
                {
                    "release": event.release,
                    "from": ms,
                    "to": None,
                    "action": event.action,
                    "event_id": event.event_id,
                }
            )
        elif isinstance(event, Incident):
            envs.setdefault(event.environment, {"segments": [], "deploys": []})
            incidents.append(event)
        else:
            flags.append(event)
            releases.setdefault(event.release, ms)
    by_env_incidents: dict[str, list[dict[str, Any]]] = {}
    for span in _incident_spans(incidents):
        by_env_incidents.setdefault(span["environment"], []).append(span)
    return {
        "from": first_ms,
        "to": last_ms,
        "environments": {
            name: {**env, "incidents": by_env_incidents.get(name, [])}
            for name, env in sorted(envs.items())
        },
        "flags": _flag_spans(flags),
        "releases": list(releases),
        "events": len(events),
    }
