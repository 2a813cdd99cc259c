"""The read model: per service, the worker's engine state, its alerts and its history.

Fed by :mod:`streams.api.source` (one consumer thread), read by the HTTP handlers.

* **States** come from the worker's state changelog: the newest record per service
  (raw engine bytes, decoded on first use and cached until a newer record arrives).
  The decoded :class:`~agents.engine.core.ServiceEngine` is the same object the worker
  runs, so the status and the check read the state exactly as the rules do.
* **Alerts** come from the alerts topic: the last record per ``alert_id``; the active
  ones are those whose last record is ``firing`` (what ``relsec alerts --active``
  prints). The worker's state holds only the alerts that may still be retracted.
* **History** comes from the input topics (:mod:`streams.api.history`).

:func:`service_status` is the status answer of one service.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from agents.engine import EngineConfig, ServiceEngine
from agents.engine.recommend import recommend
from agents.engine.state import DeployRecord, EnvState, FlagRecord, ServiceState
from agents.engine.windows import REDEPLOY_WINDOW_MS, within_before
from agents.errors import StateError
from agents.model.alerts import SEVERITIES
from agents.model.timefmt import format_rfc3339_ms
from streams.api.changelog import PartsBuffer, engine_bytes_of
from streams.api.history import HistoryStore
from streams.api.progress import TopicProgress

FLAGS_LISTED_PER_RELEASE: Final = 100
"""The status lists at most this many active flags per release (all are counted)."""
ALERTS_LISTED: Final = 200
"""The status lists at most this many active alerts (most severe, then newest, first; all
are counted): a scanner report of thousands of findings on a running release fires
thousands of alerts, and an answer an SRE reads mid-outage must stay small."""
TRIGGERS_PER_GROUP: Final = 20
EVIDENCE_LISTED: Final = 10
SUMMARY_CHARS: Final = 1000
"""An alert listed by the API keeps this much of its summary (a report of thousands of
findings names them all) and its first ``EVIDENCE_LISTED`` evidence events, with
``evidence_count`` counting all (as the alert's own JSON does when its evidence is capped)."""


def clip(text: str, limit: int = SUMMARY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact_alert(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert as the API lists it: summary and evidence capped, counts kept."""
    evidence = alert.get("evidence") or []
    summary = str(alert.get("summary", ""))
    if len(evidence) <= EVIDENCE_LISTED and len(summary) <= SUMMARY_CHARS:
        return alert
    out = dict(alert)
    out["summary"] = clip(summary)
    if len(evidence) > EVIDENCE_LISTED:
        out["evidence"] = evidence[:EVIDENCE_LISTED]
        out["evidence_count"] = max(int(alert.get("evidence_count") or 0), len(evidence))
    return out


@dataclass(frozen=True, slots=True)
class StoredState:
    """The newest changelog record of one service."""

    engine_bytes: bytes
    partition: int
    offset: int
    written_at_ms: int


_SEVERITY_RANK: Final = {s: i for i, s in enumerate(SEVERITIES)}


def group_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts that fired together (one rule, environment, release and trigger time: a
    scanner report's findings) as one group, with their count and first triggers."""
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for a in alerts:
        key = (str(a["rule"]), str(a["environment"]), str(a["release"]), str(a["occurred_at"]))
        group = groups.get(key)
        if group is None:
            groups[key] = {
                "rule": a["rule"],
                "severity": a["severity"],
                "environment": a["environment"],
                "release": a["release"],
                "occurred_at": a["occurred_at"],
                "count": 1,
                "summary": clip(str(a["summary"])),
                "triggers": [a.get("trigger")],
                "alert_ids": [a["alert_id"]],
                "recommendation": a.get("recommendation"),
            }
            continue
        group["count"] += 1
        if _SEVERITY_RANK.get(a["severity"], 0) > _SEVERITY_RANK.get(group["severity"], 0):
            group["severity"] = a["severity"]
            group["summary"] = clip(str(a["summary"]))
        if len(group["triggers"]) < TRIGGERS_PER_GROUP:
            group["triggers"].append(a.get("trigger"))
            group["alert_ids"].append(a["alert_id"])
    out = list(groups.values())
    out.sort(key=lambda g: (g["occurred_at"], _SEVERITY_RANK.get(g["severity"], 0)), reverse=True)
    return out


class AlertStore:
    """The last record of every alert on the alerts topic, indexed by service."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, dict[str, Any]] = {}
        self._by_service: dict[str, set[str]] = {}
        self._versions: dict[str, int] = {}
        self._active: dict[str, tuple[int, list[dict[str, Any]]]] = {}

    def put(self, alert: dict[str, Any]) -> None:
        alert_id = str(alert["alert_id"])
        service = str(alert["service"])
        with self._lock:
            self._by_id[alert_id] = alert
            self._by_service.setdefault(service, set()).add(alert_id)
            self._versions[service] = self._versions.get(service, 0) + 1

    def delete(self, alert_id: str) -> None:
        with self._lock:
            alert = self._by_id.pop(alert_id, None)
            if alert is not None:
                service = str(alert["service"])
                self._by_service.get(service, set()).discard(alert_id)
                self._versions[service] = self._versions.get(service, 0) + 1

    def version(self, service: str) -> int:
        """Changes whenever an alert of the service is stored or deleted."""
        with self._lock:
            return self._versions.get(service, 0)

    def active(self, service: str) -> list[dict[str, Any]]:
        """Active alerts of a service, most severe first, then newest trigger first
        (sorted once per change: a service can hold a hundred thousand)."""
        with self._lock:
            version = self._versions.get(service, 0)
            cached = self._active.get(service)
            if cached is not None and cached[0] == version:
                return cached[1]
            ids = self._by_service.get(service, set())
            alerts = [self._by_id[i] for i in ids if self._by_id[i].get("status") == "firing"]
        alerts.sort(key=lambda a: (a["occurred_at"], a["alert_id"]), reverse=True)
        alerts.sort(key=lambda a: _SEVERITY_RANK.get(a["severity"], 0), reverse=True)
        with self._lock:
            self._active[service] = (version, alerts)
        return alerts

    def services(self) -> list[str]:
        with self._lock:
            return sorted(self._by_service)

    def active_counts(self) -> dict[str, dict[str, int]]:
        """Per service, the number of active alerts by severity (services with none left out)."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for service, ids in self._by_service.items():
                for alert_id in ids:
                    alert = self._by_id[alert_id]
                    if alert.get("status") != "firing":
                        continue
                    counts = out.setdefault(service, {})
                    severity = str(alert["severity"])
                    counts[severity] = counts.get(severity, 0) + 1
        return out


class ReadModel:
    """Everything the API answers from, kept current by the source."""

    def __init__(
        self,
        config: EngineConfig,
        clock: Callable[[], int],
        topics: dict[str, str],
        history: HistoryStore | None = None,
    ) -> None:
        """``topics`` maps each kind (``changelog``, ``alerts``, ``inputs``... ) to a topic."""
        self.config = config
        self.clock = clock
        self.history = history or HistoryStore()
        self.alerts = AlertStore()
        started = clock()
        self.progress: dict[str, TopicProgress] = {
            name: TopicProgress(name, started) for name in topics.values()
        }
        self.topic_of = dict(topics)
        self._lock = threading.Lock()
        self._states: dict[str, StoredState] = {}
        self._engines: dict[str, tuple[int, ServiceEngine]] = {}
        self.parts = PartsBuffer()
        """Parts of states too big for one changelog record, until their head is read."""
        self.bad_states = 0
        self.bad_records: dict[str, int] = {}
        self.last_error: str | None = None

    # -- fed by the source --------------------------------------------------------

    def put_state(
        self, service: str, value: bytes | None, partition: int, offset: int, written_at_ms: int
    ) -> None:
        if value is None:
            with self._lock:
                self._states.pop(service, None)
                self._engines.pop(service, None)
            return
        try:
            engine_bytes = engine_bytes_of(service.encode(), value, self.parts)
        except StateError as exc:
            where = f"{service!r} at partition {partition} offset {offset}"
            self.count_bad("changelog", f"{where}: {exc}")
            return
        with self._lock:
            self._states[service] = StoredState(engine_bytes, partition, offset, written_at_ms)

    def count_bad(self, kind: str, detail: str) -> None:
        with self._lock:
            self.bad_records[kind] = self.bad_records.get(kind, 0) + 1
            self.last_error = f"{kind}: {detail}"

    # -- read by the handlers ------------------------------------------------------

    def engine(self, service: str) -> ServiceEngine | None:
        """The service's engine as the worker last stored it; ``None`` if never stored.

        A state that cannot be decoded counts as bad and reads as unknown."""
        with self._lock:
            stored = self._states.get(service)
            cached = self._engines.get(service)
        if stored is None:
            return None
        if cached is not None and cached[0] == stored.offset:
            return cached[1]
        try:
            engine = ServiceEngine.from_bytes(stored.engine_bytes, self.config, self.clock())
        except StateError as exc:
            self.count_bad("changelog", f"{service!r} at offset {stored.offset}: {exc}")
            return None
        with self._lock:
            if self._states.get(service) is stored:
                self._engines[service] = (stored.offset, engine)
        return engine

    def stored(self, service: str) -> StoredState | None:
        with self._lock:
            return self._states.get(service)

    def services(self) -> list[str]:
        with self._lock:
            names = set(self._states)
        names.update(self.alerts.services())
        names.update(self.history.services())
        return sorted(names)

    def freshness(self, *kinds: str) -> dict[str, Any]:
        """How far behind its topics (of the given kinds, else all) the model is."""
        now = self.clock()
        wanted = kinds or tuple(self.topic_of)
        return {
            kind: self.progress[self.topic_of[kind]].snapshot(now)
            for kind in wanted
            if kind in self.topic_of
        }

    def caught_up(self, *kinds: str) -> bool:
        wanted = kinds or tuple(self.topic_of)
        return all(self.progress[self.topic_of[k]].caught_up() for k in wanted)


# -- the status answer ----------------------------------------------------------------


def evaluation_time(engine: ServiceEngine | None, now_ms: int) -> int:
    """The instant answers are judged at: now, or the service's newest event if that is
    later (a clock behind the events must not put a question before what already happened)."""
    newest = engine.max_seen_ms if engine is not None else None
    return max(now_ms, newest) if newest is not None else now_ms


def flag_obj(flag: FlagRecord, release: str) -> dict[str, Any]:
    """A flag as the API shows it; ``release`` is the name it is shown under (flags are
    kept per release, whichever of the release's names they were raised on, SPEC §8)."""
    return {
        "flag_id": flag.flag_id,
        "release": release,
        "severity": flag.severity,
        "vulnerabilities": list(flag.vulnerabilities),
        "fixed_in": flag.fixed_in,
        "raised_at": format_rfc3339_ms(flag.ref.occurred_at_ms),
        "event_id": flag.ref.event_id,
    }


def _reversals(state: ServiceState, deploys: Sequence[DeployRecord]) -> list[bool]:
    """Per deploy, whether it was a reversal (A → B → A, SPEC §3), names compared as the
    same release now."""
    same = state.same_release
    return [
        i >= 2
        and same(d.release, deploys[i - 2].release)
        and not same(d.release, deploys[i - 1].release)
        for i, d in enumerate(deploys)
    ]


def flags_summary(state: ServiceState, release: str) -> dict[str, Any]:
    """Active flags of a release: counts by severity and the list (worst first, capped)."""
    release_flags = state.flags_of(release)
    flags = list(release_flags.active.values()) if release_flags is not None else []
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    flags.sort(key=lambda f: (order.get(f.severity, 9), f.flag_id))
    counts: dict[str, int] = {}
    for f in flags:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    return {
        "count": len(flags),
        "by_severity": counts,
        "flags": [flag_obj(f, release) for f in flags[:FLAGS_LISTED_PER_RELEASE]],
        "truncated": len(flags) > FLAGS_LISTED_PER_RELEASE,
    }


def linked_rollbacks(env: EnvState, at_ms: int) -> list[dict[str, Any]]:
    """Incident-linked rollbacks of the last 7 days before ``at_ms``, newest first."""
    return [
        {
            "event_id": r.ref.event_id,
            "occurred_at": format_rfc3339_ms(r.ms),
            "from_release": r.from_release,
            "incident_id": r.incident_id,
        }
        for r in reversed(env.linked_rollbacks)
        if within_before(r.ms, at_ms, REDEPLOY_WINDOW_MS)
    ]


def open_incidents_of(env: EnvState | None) -> list[dict[str, Any]]:
    """The open incidents of an environment, in the order they opened."""
    if env is None:
        return []
    return [
        {
            "incident_id": i.incident_id,
            "status": i.status,
            "severity": i.severity,
            "since": format_rfc3339_ms(i.ref.occurred_at_ms),
            "event_id": i.ref.event_id,
        }
        for i in env.open_incidents.values()
    ]


def environment_status(
    model: ReadModel, engine: ServiceEngine, name: str, env: EnvState, at_ms: int
) -> dict[str, Any]:
    state = engine.head
    running = env.running
    deploys = []
    reversals = _reversals(state, env.deploys)
    for d, reversal in zip(reversed(env.deploys), reversed(reversals), strict=True):
        known = model.history.deploy(engine.service, d.ref.event_id)
        deploys.append(
            {
                "event_id": d.ref.event_id,
                "occurred_at": format_rfc3339_ms(d.ms),
                "release": d.release,
                "action": known.action if known else None,
                "team": known.team if known else None,
                "reversal": reversal,
            }
        )
    rollbacks = linked_rollbacks(env, at_ms)
    recommendation = recommend(
        state, engine.service, name, running or "", at_ms, model.config.max_release_candidates
    )
    running_flags = state.has_active_flag(running) if running else False
    rolled_back_from = running is not None and any(
        state.same_release(r["from_release"], running) for r in rollbacks
    )
    return {
        "running": (
            {
                "release": running,
                "since": format_rfc3339_ms(env.running_ref.occurred_at_ms)
                if env.running_ref
                else None,
                "event_id": env.running_ref.event_id if env.running_ref else None,
                "flagged": running_flags,
                "rolled_back_from_recently": rolled_back_from,
                "clear": not running_flags and not rolled_back_from,
            }
            if running
            else None
        ),
        "recent_deploys": deploys,
        "open_incidents": [
            {**i, "title": model.history.incident_title(engine.service, i["incident_id"])}
            for i in open_incidents_of(env)
        ],
        "incident_linked_rollbacks": rollbacks,
        "recommendation": recommendation.to_dict(),
    }


def environments_now(model: ReadModel, service: str) -> dict[str, Any]:
    """Per environment what runs now, the recommendation and the open incidents (what the
    timeline page shows above the chart), without the rest of the status."""
    engine = model.engine(service)
    if engine is None:
        return {}
    at_ms = evaluation_time(engine, model.clock())
    out: dict[str, Any] = {}
    for name in sorted(engine.head.envs):
        status = environment_status(model, engine, name, engine.head.envs[name], at_ms)
        out[name] = {
            "running": status["running"],
            "recommendation": status["recommendation"],
            "open_incidents": status["open_incidents"],
        }
    return out


def service_status(model: ReadModel, service: str) -> dict[str, Any] | None:
    """The status answer of one service; ``None`` when relsec knows nothing of it."""
    engine = model.engine(service)
    alerts = model.alerts.active(service)
    if engine is None and not alerts and not model.history.events_of(service):
        return None
    now = model.clock()
    at_ms = evaluation_time(engine, now)
    environments: dict[str, Any] = {}
    flags: dict[str, Any] = {}
    if engine is not None:
        state = engine.head
        for name in sorted(state.envs):
            environments[name] = environment_status(model, engine, name, state.envs[name], at_ms)
        for release in sorted(state.flags):
            summary = flags_summary(state, release)
            if summary["count"]:
                flags[release] = summary
    for name, env_status in environments.items():
        env_alerts = [a for a in alerts if a.get("environment") == name]
        env_status["active_alert_count"] = len(env_alerts)
        env_status["active_alerts"] = [compact_alert(a) for a in env_alerts[:ALERTS_LISTED]]
    stored = model.stored(service)
    return {
        "service": service,
        "evaluated_at": format_rfc3339_ms(at_ms),
        "newest_event_at": (
            format_rfc3339_ms(engine.max_seen_ms)
            if engine is not None and engine.max_seen_ms is not None
            else None
        ),
        "state_written_at": format_rfc3339_ms(stored.written_at_ms) if stored else None,
        "environments": environments,
        "active_flags": flags,
        "active_alert_count": len(alerts),
        "active_alerts_by_rule": _count_by(alerts, "rule"),
        "active_alerts": [compact_alert(a) for a in alerts[:ALERTS_LISTED]],
        "freshness": model.freshness(),
    }


def _count_by(alerts: list[dict[str, Any]], field: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in alerts:
        counts[str(a[field])] = counts.get(str(a[field]), 0) + 1
    return counts


def services_index(model: ReadModel) -> list[dict[str, Any]]:
    """Every known service with its active alerts by severity, conflicts first."""
    counts = model.alerts.active_counts()
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    rows: list[dict[str, Any]] = []
    for service in model.services():
        by_severity = counts.get(service, {})
        worst = min(by_severity, key=lambda s: rank.get(s, 9)) if by_severity else None
        conflicts = sum(n for s, n in by_severity.items() if s != "info")
        rows.append(
            {
                "service": service,
                "active_alerts": sum(by_severity.values()),
                "conflicts": conflicts,
                "by_severity": by_severity,
                "worst_severity": worst,
            }
        )

    def key(row: dict[str, Any]) -> tuple[int, int, str]:
        return (-int(row["conflicts"]), rank.get(row["worst_severity"] or "", 9), row["service"])

    rows.sort(key=key)
    return rows
