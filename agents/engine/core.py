"""The engine: lateness, duplicates, the event log, ownership of alert identities, retractions.

Per service the engine keeps

* ``base``: the state summarized up to the *frontier* (newest event time seen
  minus the allowed lateness); no accepted event can ever land before it;
* ``log``: the events at or after the frontier, sorted by order key, each with
  the alerts it *owns*;
* ``head``: ``base`` moved past every logged event: the state "now".

An event in order is evaluated against ``head``. An event that lands inside
the log (late, but within the allowed lateness) re-evaluates the log from its
position, starting from ``base``; the alerts owned before and after are
compared, and the differences come out as retractions and (re)firings. This
makes the set of active alerts a function of the set of events, whatever the
arrival order.

Alert identities whose trigger is an event's own id have one producer. Those
triggered by a ``flag_id`` or ``incident_id`` may be produced by several
events; the earliest producer in order owns the alert and the others produce
nothing new. Finalized owners are remembered in ``base.fired_shared`` for
``alert_memory_ms`` of event time: a producer more than that after the owner
fires the identity again.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from agents.engine.recommend import recommend
from agents.engine.rules import RULES_BY_EVENT_TYPE, RULES_BY_ID
from agents.engine.state import OrderKey, ServiceState
from agents.engine.transitions import apply
from agents.engine.windows import MAX_FUTURE_MS, is_future, is_late, lateness_frontier
from agents.errors import StateError, ValidationError
from agents.model.alerts import FIRING, RETRACTED, Alert, alert_id_for
from agents.model.events import Event, event_to_dict, order_key, parse_event
from agents.model.timefmt import MS_PER_DAY, MS_PER_HOUR

STATE_FORMAT_VERSION: Final = 1
PRUNE_EVERY_EVENTS: Final = 32
"""Prune a service's state after this many events left its log (and before snapshots)."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Tunables of the engine, units in the names."""

    allowed_lateness_ms: int = 24 * MS_PER_HOUR
    max_future_ms: int = MAX_FUTURE_MS
    alert_memory_ms: int = 90 * MS_PER_DAY
    max_release_candidates: int = 16
    prune_every_events: int | None = PRUNE_EVERY_EVENTS
    """Prune after this many events left the log; ``None`` never prunes (a test hook:
    pruning must not change any outcome, so tests compare never against always)."""

    in_order: bool = False
    """For input already sorted by order key and deduplicated (sorted replay): no
    lateness log and no base state, so each event is applied once. An event that
    is not after the previous one of its service is a duplicate (same key) or is
    dead-lettered as late."""

    def __post_init__(self) -> None:
        if self.allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness_ms must be >= 0")
        if self.max_future_ms < 0:
            raise ValueError("max_future_ms must be >= 0")
        if self.prune_every_events is not None and self.prune_every_events < 1:
            raise ValueError("prune_every_events must be >= 1 or None")
        if self.max_release_candidates < 1:
            raise ValueError("max_release_candidates must be >= 1")


class Disposition(enum.StrEnum):
    """What became of an event."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    FUTURE = "future"

    @property
    def dead_letter(self) -> bool:
        return self in (Disposition.LATE, Disposition.FUTURE)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of processing one event: its disposition and the alert events to emit."""

    disposition: Disposition
    alerts: tuple[Alert, ...] = ()
    detail: str = ""


@dataclass(slots=True)
class _LogEntry:
    key: OrderKey
    event: Event
    owned: dict[str, Alert] = field(default_factory=dict)
    stored: orjson.Fragment | None = None
    """The event as serialized in a state, kept: an event stays in the log (and in
    every snapshot of its service) for the allowed lateness, but is rendered once."""

    def serialized(self) -> orjson.Fragment:
        if self.stored is None:
            compact = {k: v for k, v in event_to_dict(self.event).items() if v is not None}
            self.stored = orjson.Fragment(orjson.dumps(compact))
        return self.stored


class ServiceEngine:
    """The engine for one service: its base, log and head."""

    __slots__ = (
        "_finalized_since_prune",
        "_ids",
        "_last_key",
        "_log",
        "_owner",
        "base",
        "config",
        "head",
        "max_seen_ms",
        "service",
    )

    def __init__(self, service: str, config: EngineConfig) -> None:
        self.service = service
        self.config = config
        self.base = ServiceState()
        self.head = ServiceState()
        self._log: list[_LogEntry] = []
        self._ids: set[str] = set()
        self._owner: dict[str, OrderKey] = {}
        self.max_seen_ms: int | None = None
        self._finalized_since_prune = 0
        self._last_key: OrderKey | None = None
        if config.in_order:
            self.base = self.head  # nothing is ever re-evaluated: one state

    # -- processing ------------------------------------------------------------

    def process(self, event: Event, now_ms: int) -> Outcome:
        if self.config.in_order:
            return self._process_in_order(event, now_ms)
        if event.event_id in self._ids:
            return Outcome(Disposition.DUPLICATE)
        cfg = self.config
        if is_future(event.occurred_at_ms, now_ms, cfg.max_future_ms):
            return Outcome(
                Disposition.FUTURE,
                detail=f"occurred_at is more than {cfg.max_future_ms // 1000} s ahead of the clock",
            )
        if is_late(event.occurred_at_ms, self.max_seen_ms, cfg.allowed_lateness_ms):
            return Outcome(
                Disposition.LATE,
                detail=f"occurred_at is more than {cfg.allowed_lateness_ms // 1000} s behind the "
                f"newest event seen for service {self.service!r}",
            )
        key = order_key(event)
        log = self._log
        if not log or key > log[-1].key:
            entry = _LogEntry(key, event)
            entry.owned = self._evaluate(self.head, event, now_ms)
            for alert_id in entry.owned:
                self._owner[alert_id] = key
            log.append(entry)
            emitted: tuple[Alert, ...] = tuple(entry.owned.values())
        else:
            emitted = self._insert(event, key, now_ms)
        self._ids.add(event.event_id)
        if self.max_seen_ms is None or event.occurred_at_ms > self.max_seen_ms:
            self.max_seen_ms = event.occurred_at_ms
            self._advance()
        return Outcome(Disposition.APPLIED, emitted)

    def process_batch(self, events: Sequence[Event], now_ms: int) -> list[Outcome]:
        """Process events of this service that arrived together, in arrival order.

        One outcome per event, in the order given. The active alerts afterwards are the
        same as after processing them one by one.
        """
        return [self.process(event, now_ms) for event in events]

    def _process_in_order(self, event: Event, now_ms: int) -> Outcome:
        key = order_key(event)
        last = self._last_key
        if last is not None and key <= last:
            if key == last:
                return Outcome(Disposition.DUPLICATE)
            return Outcome(
                Disposition.LATE,
                detail="not after the previous event of its service (in-order mode)",
            )
        cfg = self.config
        if is_future(event.occurred_at_ms, now_ms, cfg.max_future_ms):
            return Outcome(
                Disposition.FUTURE,
                detail=f"occurred_at is more than {cfg.max_future_ms // 1000} s ahead of the clock",
            )
        owned = self._evaluate(self.head, event, now_ms)
        fired_shared = self.head.fired_shared
        for alert_id, alert in owned.items():
            if RULES_BY_ID[alert.rule].shared_identity:
                fired_shared[alert_id] = event.occurred_at_ms
        self._last_key = key
        self.max_seen_ms = event.occurred_at_ms
        self._finalized_since_prune += 1
        every = cfg.prune_every_events
        if every is not None and self._finalized_since_prune >= every:
            self.prune(event.occurred_at_ms)
        return Outcome(Disposition.APPLIED, tuple(owned.values()))

    def _evaluate(self, state: ServiceState, event: Event, now_ms: int) -> dict[str, Alert]:
        """Run the rules at ``event`` against ``state`` (then move ``state`` past it).

        Returns the alerts this event owns: identities no earlier event owns.
        """
        findings = [
            (rule, finding)
            for rule in RULES_BY_EVENT_TYPE[event.type]
            for finding in rule.evaluate(state, event)
        ]
        apply(state, event)
        if not findings:
            return {}
        owned: dict[str, Alert] = {}
        for rule, f in findings:
            alert_id = alert_id_for(f.rule, self.service, f.environment, f.release, f.trigger)
            if rule.shared_identity and (
                alert_id in self._owner or self._remembered(alert_id, event.occurred_at_ms)
            ):
                continue
            owned[alert_id] = Alert(
                alert_id=alert_id,
                rule=f.rule,
                status=FIRING,
                severity=f.severity,
                service=self.service,
                environment=f.environment,
                release=f.release,
                trigger=f.trigger,
                occurred_at_ms=event.occurred_at_ms,
                summary=f.summary,
                notify=rule.notify,
                evidence=f.evidence,
                recommendation=(
                    recommend(
                        state,
                        self.service,
                        f.environment,
                        f.release,
                        event.occurred_at_ms,
                        self.config.max_release_candidates,
                    )
                    if rule.recommends
                    else None
                ),
                detected_at_ms=now_ms,
            )
        return owned

    def _remembered(self, alert_id: str, event_ms: int) -> bool:
        """Whether a finalized event owns ``alert_id`` within ``alert_memory_ms`` before
        ``event_ms``. Judged by age here, not by presence: pruning drops only entries
        older than that, whenever it runs, so it cannot change the answer."""
        fired_ms = self.base.fired_shared.get(alert_id)
        return fired_ms is not None and fired_ms >= event_ms - self.config.alert_memory_ms

    def _insert(self, event: Event, key: OrderKey, now_ms: int) -> tuple[Alert, ...]:
        """Insert an event inside the log and re-evaluate everything after it."""
        log = self._log
        pos = bisect.bisect_left([e.key for e in log], key)
        tail = log[pos:]
        old: dict[str, Alert] = {}
        for entry in tail:
            old.update(entry.owned)
            for alert_id in entry.owned:
                del self._owner[alert_id]
        state = self.base.copy()
        for entry in log[:pos]:
            apply(state, entry.event)
        new_entry = _LogEntry(key, event)
        log.insert(pos, new_entry)
        new: dict[str, Alert] = {}
        for entry in log[pos:]:
            entry.owned = self._evaluate(state, entry.event, now_ms)
            for alert_id, alert in entry.owned.items():
                self._owner[alert_id] = entry.key
                previous = old.get(alert_id)
                if previous is not None and previous.same_content(alert):
                    # Unchanged: keep the first detection time.
                    entry.owned[alert_id] = previous
                new[alert_id] = entry.owned[alert_id]
        self.head = state
        out: list[Alert] = []
        for alert_id, alert in old.items():
            if alert_id not in new:
                out.append(alert.with_status(RETRACTED, now_ms))
        for alert_id, alert in new.items():
            before = old.get(alert_id)
            if before is None or not before.same_content(alert):
                out.append(alert)
        return tuple(out)

    def _advance(self) -> None:
        """Move events behind the frontier from the log into ``base`` and prune."""
        assert self.max_seen_ms is not None
        frontier = lateness_frontier(self.max_seen_ms, self.config.allowed_lateness_ms)
        log = self._log
        done = 0
        base = self.base
        while done < len(log) and log[done].event.occurred_at_ms < frontier:
            entry = log[done]
            apply(base, entry.event)
            for alert_id in entry.owned:
                del self._owner[alert_id]
                if RULES_BY_ID[entry.owned[alert_id].rule].shared_identity:
                    base.fired_shared[alert_id] = entry.event.occurred_at_ms
            self._ids.discard(entry.event.event_id)
            done += 1
        if done:
            del log[:done]
            self._finalized_since_prune += done
            every = self.config.prune_every_events
            if every is not None and self._finalized_since_prune >= every:
                self.prune(frontier)

    def prune(self, frontier_ms: int) -> None:
        """Drop state no evaluation at or after ``frontier_ms`` can need.

        Pruning never changes an outcome."""
        cfg = self.config
        self._finalized_since_prune = 0
        states = (self.head,) if self.base is self.head else (self.base, self.head)
        for state in states:
            state.prune(frontier_ms, cfg.alert_memory_ms, cfg.max_release_candidates)

    # -- inspection ------------------------------------------------------------

    @property
    def log_length(self) -> int:
        return len(self._log)

    def owned_alerts(self) -> Iterator[Alert]:
        """Alerts owned by events still in the log (those that may yet be retracted)."""
        for entry in self._log:
            yield from entry.owned.values()

    # -- serialization ---------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The service's state as bytes: base, the logged events and the newest event time."""
        if (
            self.max_seen_ms is not None
            and self._finalized_since_prune
            and self.config.prune_every_events is not None
        ):
            self.prune(lateness_frontier(self.max_seen_ms, self.config.allowed_lateness_ms))
        obj: dict[str, Any] = {
            "v": STATE_FORMAT_VERSION,
            "service": self.service,
            "max_seen_ms": self.max_seen_ms,
            "base": self.base.to_obj(),
            "log": [entry.serialized() for entry in self._log],
        }
        if self._last_key is not None:
            obj["last_key"] = list(self._last_key)
        return orjson.dumps(obj)

    @staticmethod
    def from_bytes(data: bytes, config: EngineConfig, now_ms: int) -> ServiceEngine:
        """Restore from :meth:`to_bytes`; the owned alerts of the log are re-derived."""
        try:
            obj = orjson.loads(data)
            if obj.get("v") != STATE_FORMAT_VERSION:
                raise StateError(f"state format version {obj.get('v')!r} is not supported")
            engine = ServiceEngine(obj["service"], config)
            engine.base = ServiceState.from_obj(obj["base"])
            engine.max_seen_ms = obj["max_seen_ms"]
            last = obj.get("last_key")
            engine._last_key = (last[0], last[1], last[2]) if last else None
            events = [parse_event(e) for e in obj["log"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"service state is malformed: {exc!r}") from None
        except ValidationError as exc:
            raise StateError(f"service state holds an invalid event: {exc}") from None
        state = engine.base.copy()
        for event in events:
            entry = _LogEntry(order_key(event), event)
            entry.owned = engine._evaluate(state, event, now_ms)
            for alert_id in entry.owned:
                engine._owner[alert_id] = entry.key
            engine._log.append(entry)
            engine._ids.add(event.event_id)
        engine.head = state
        if config.in_order:
            if events:
                raise StateError("an in-order engine cannot restore a lateness log")
            engine.head = engine.base
        return engine

    # -- what-if -----------------------------------------------------------------

    def preview(self, event: Event, now_ms: int) -> tuple[Alert, ...]:
        """The alerts the rules would produce if ``event`` came now, after every event seen.

        Evaluated on a copy of ``head``: no state of this engine changes, and the event is
        neither logged nor remembered as seen (``relsec check`` asks about changes that
        have not happened). Lateness and duplicates are not judged.
        """
        return tuple(self._evaluate(self.head.copy(), event, now_ms).values())


class Engine:
    """The engine over many services: routes each event to its service's engine."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.services: dict[str, ServiceEngine] = {}

    def service(self, name: str) -> ServiceEngine:
        engine = self.services.get(name)
        if engine is None:
            engine = self.services[name] = ServiceEngine(name, self.config)
        return engine

    def process(self, event: Event, now_ms: int) -> Outcome:
        return self.service(event.service).process(event, now_ms)

    def process_batch(self, events: Sequence[Event], now_ms: int) -> list[Outcome]:
        """Process events that arrived together: each service's events go to its engine
        in one turn. One outcome per event, in the order given."""
        by_service: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            by_service.setdefault(event.service, []).append(index)
        outcomes: list[Outcome | None] = [None] * len(events)
        for name, indexes in by_service.items():
            results = self.service(name).process_batch([events[i] for i in indexes], now_ms)
            for index, outcome in zip(indexes, results, strict=True):
                outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    def snapshot(self) -> dict[str, bytes]:
        return {name: engine.to_bytes() for name, engine in self.services.items()}

    @staticmethod
    def restore(snapshot: dict[str, bytes], config: EngineConfig, now_ms: int) -> Engine:
        engine = Engine(config)
        for name, data in snapshot.items():
            engine.services[name] = ServiceEngine.from_bytes(data, config, now_ms)
        return engine
