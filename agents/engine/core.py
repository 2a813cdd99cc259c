"""The engine: admission (future, duplicate, late), the event log, ownership of alert
identities, retractions, batches.

Per service the engine keeps

* ``base``: the state summarized up to the *frontier* (newest event time seen
  minus the allowed lateness); no accepted event can ever land before it;
* ``log``: the events at or after the frontier, sorted by order key, each with
  the alerts it *owns*;
* ``head``: ``base`` moved past every logged event: the state "now";
* the duplicate window: the event ids taken in the last 7 days of event time
  (:mod:`agents.engine.dedup`).

**Admission**, per event in arrival order: more than ``max_future_ms`` ahead of the
clock is ``future``; a remembered ``event_id`` is a ``duplicate``; more than the allowed
lateness behind the newest event of the service is ``late``; else it is taken.
A dead-lettered record and a duplicate register nothing.

**Evaluation.** Events after the whole log are evaluated against ``head``. Events that
land inside the log (late, but within the allowed lateness) are inserted, and the log is
re-evaluated once from the earliest of them, starting from ``base``; the alerts owned
before and after are compared, and the differences come out as retractions and
(re)firings. :meth:`ServiceEngine.process_batch` does that once for all events of a
batch, :meth:`ServiceEngine.process` for one. This makes the set of active alerts a
function of the set of events, whatever the arrival order and however it is batched.

Alert identities whose trigger is an event's own id have one producer. Those
triggered by a ``flag_id`` or ``incident_id`` may be produced by several
events; the earliest producer in order owns the alert and the others produce
nothing new. Finalized owners are remembered for ``alert_memory_ms`` of event time:
a producer more than that after the owner fires the identity again.
"""

from __future__ import annotations

import bisect
import enum
import heapq
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson

from agents.engine.dedup import DuplicateWindow
from agents.engine.names import (
    DEFAULT_MUTABLE_RELEASE_PATTERNS,
    MAX_LINKED_NAMES_PER_SERVICE,
    MAX_NAMES_PER_RELEASE,
    ReleaseNamePolicy,
    policy_for,
)
from agents.engine.recommend import recommend
from agents.engine.rules import RULES_BY_EVENT_TYPE, RULES_BY_ID
from agents.engine.state import OrderKey, ServiceState
from agents.engine.transitions import apply, apply_effects, evidence_of, link
from agents.engine.windows import MAX_FUTURE_MS, is_future, is_late, lateness_frontier
from agents.errors import StateError, ValidationError
from agents.model.alerts import FIRING, RETRACTED, Alert, Evidence, alert_id_for
from agents.model.events import Event, event_to_dict, order_key, parse_event
from agents.model.timefmt import MS_PER_DAY, MS_PER_HOUR, format_rfc3339_ms
from agents.model.values import Value

STATE_FORMAT_VERSION: Final = 2
"""2: release names, flags by release class with tombstones, the duplicate window's ids,
shared-identity memory at the top level. Version 1 states still restore."""
PRUNE_EVERY_EVENTS: Final = 32
"""Prune a service's state after this many events left its log (and before snapshots)."""
DUPLICATE_WINDOW_MS: Final = 7 * MS_PER_DAY
"""SPEC §1: a repeated event_id is a duplicate for 7 days of event time by default."""
MAX_ALERT_ALIASES: Final = 16
"""Other names of its release an alert lists (``Alert.release_aliases``)."""

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

    duplicate_window_ms: int = DUPLICATE_WINDOW_MS
    """SPEC §1: how long (event time behind the newest event of the service) a taken
    event_id is remembered. Never less than the allowed lateness in effect: see
    :attr:`effective_duplicate_window_ms`."""

    mutable_release_patterns: tuple[str, ...] = DEFAULT_MUTABLE_RELEASE_PATTERNS
    """SPEC §8: regular expressions (full match) of release names that never link, besides
    ``latest``; see :data:`agents.engine.names.DEFAULT_MUTABLE_RELEASE_PATTERNS`."""

    max_names_per_release: int = MAX_NAMES_PER_RELEASE
    """SPEC §8 bound: names one release class may hold; a link past it is not made."""

    max_linked_names: int = MAX_LINKED_NAMES_PER_SERVICE
    """SPEC §8 bound: linked release names one service may hold."""

    def __post_init__(self) -> None:
        if self.allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness_ms must be >= 0")
        if self.max_future_ms < 0:
            raise ValueError("max_future_ms must be >= 0")
        if self.prune_every_events is not None and self.prune_every_events < 1:
            raise ValueError("prune_every_events must be >= 1 or None")
        if self.max_release_candidates < 1:
            raise ValueError("max_release_candidates must be >= 1")
        if self.duplicate_window_ms < 0:
            raise ValueError("duplicate_window_ms must be >= 0")
        if self.max_names_per_release < 2 or self.max_linked_names < 2:
            raise ValueError("max_names_per_release and max_linked_names must be >= 2")
        for pattern in self.mutable_release_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"mutable release pattern {pattern!r}: {exc}") from None

    @property
    def effective_duplicate_window_ms(self) -> int:
        """An event still in the lateness log is always remembered, so the window in
        effect is at least the allowed lateness."""
        return max(self.duplicate_window_ms, self.allowed_lateness_ms)

    @property
    def name_policy(self) -> ReleaseNamePolicy:
        return policy_for(
            self.mutable_release_patterns, self.max_names_per_release, self.max_linked_names
        )


class Disposition(enum.StrEnum):
    """What became of an event."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    FUTURE = "future"

    @property
    def dead_letter(self) -> bool:
        return self in (Disposition.LATE, Disposition.FUTURE)


class Outcome(Value):
    """The result of processing one event: its disposition and the alert events to emit."""

    FIELDS: ClassVar[tuple[str, ...]] = ("disposition", "alerts", "detail")
    __slots__ = FIELDS

    def __init__(
        self, disposition: Disposition, alerts: tuple[Alert, ...] = (), detail: str = ""
    ) -> None:
        self.disposition: Final = disposition
        self.alerts: Final = alerts
        self.detail: Final = detail

    def values(self) -> tuple[object, ...]:
        return (self.disposition, self.alerts, self.detail)


_NO_ALERTS: Final[dict[str, Alert]] = {}
"""What an event that owns no alert owns (shared, never changed: most events own none)."""


class _LogEntry:
    """An event in the lateness log, with what the engine keeps beside it."""

    __slots__ = ("event", "key", "owned", "ref", "stored")

    def __init__(self, key: OrderKey, event: Event, ref: Evidence) -> None:
        self.key: Final = key
        self.event: Final = event
        self.ref: Final = ref
        """The event's evidence reference, shared by the records and alerts that cite it."""
        self.owned: dict[str, Alert] = _NO_ALERTS
        """The alerts this event owns (the shared empty dict until it owns one)."""
        self.stored: orjson.Fragment | None = None
        """The event as serialized in a state, kept: an event stays in the log (and in
        every snapshot of its service) for the allowed lateness, but is rendered once
        (as ``str``: an ``orjson.dumps`` result keeps a 4 KB buffer however short it is)."""

    def serialized(self) -> orjson.Fragment:
        if self.stored is None:
            compact = {k: v for k, v in event_to_dict(self.event).items() if v is not None}
            self.stored = orjson.Fragment(orjson.dumps(compact).decode())
        return self.stored


def _entry(key: OrderKey, event: Event) -> _LogEntry:
    return _LogEntry(key, event, evidence_of(event))


def _entry_key(entry: _LogEntry) -> OrderKey:
    return entry.key


def future_outcome(occurred_at_ms: int, now_ms: int, config: EngineConfig) -> Outcome | None:
    """The ``future`` dead letter of an event too far ahead of the clock, else ``None``.

    The first check of admission in every mode (sorted replay makes it before its
    duplicate check too): a dead-lettered record registers nothing."""
    if not is_future(occurred_at_ms, now_ms, config.max_future_ms):
        return None
    return Outcome(
        Disposition.FUTURE,
        detail=f"occurred_at is more than {config.max_future_ms // 1000} s ahead of the clock",
    )


class ServiceEngine:
    """The engine for one service: its base, log and head."""

    __slots__ = (
        "_base_stored",
        "_finalized_since_prune",
        "_fired_shared",
        "_last_key",
        "_log",
        "_owner",
        "_policy",
        "_seen",
        "base",
        "config",
        "evaluations",
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
        self._seen = DuplicateWindow(config.effective_duplicate_window_ms)
        self._owner: dict[str, OrderKey] = {}
        self._fired_shared: dict[str, int] = {}
        """Shared-identity alerts owned by finalized events: alert_id -> event time."""
        self._policy = config.name_policy
        self.max_seen_ms: int | None = None
        self._finalized_since_prune = 0
        self._last_key: OrderKey | None = None
        self.evaluations = 0
        """How many times the rules ran at an event (a cost measure: re-evaluation of
        the lateness log counts each time)."""
        self._base_stored: orjson.Fragment | None = None
        """``base`` as :meth:`to_bytes` last rendered it, while it has not changed since:
        ``base`` changes only when events leave the log (:meth:`_advance`) and when it
        is pruned, and a busy service (a scanner report arriving) is stored at every
        checkpoint while nothing leaves its log. Never kept in in-order mode, where the
        base is the head and changes with every event."""
        if config.in_order:
            self.base = self.head  # nothing is ever re-evaluated: one state

    # -- processing ------------------------------------------------------------

    def process(self, event: Event, now_ms: int) -> Outcome:
        """Process one event (as :meth:`process_batch` of one)."""
        if self.config.in_order:
            return self._process_in_order(event, now_ms)
        newest_before = self.max_seen_ms
        rejected = self._admit(event, now_ms)
        if rejected is not None:
            return rejected
        key = order_key(event)
        log = self._log
        if not log or key > log[-1].key:  # the common case: after the whole log
            entry = _entry(key, event)
            entry.owned = owned = self._evaluate(self.head, event, now_ms, entry.ref)
            for alert_id in owned:
                self._owner[alert_id] = key
            log.append(entry)
            alerts = tuple(owned.values()) if owned else ()
        else:
            (alerts,) = self._take([(key, event)], now_ms)
        if self.max_seen_ms != newest_before:
            self._advance()
        return Outcome(Disposition.APPLIED, alerts)

    def process_batch(self, events: Sequence[Event], now_ms: int) -> list[Outcome]:
        """Process events of this service that arrived together, in arrival order.

        Each event is admitted as if alone, in the order given (future, duplicate, also
        of an earlier event of the batch, late against the newest event taken so far).
        The taken events are then inserted together and the log is re-evaluated once,
        from the earliest of them. One outcome per event, in the order given; the
        batch's alert records go out once per alert identity (its net change over the
        batch), on the outcome of

        * the batch event that owns the alert, for a firing it owns;
        * the batch event earliest in order (the point re-evaluation started from), for
          retractions and for changes to alerts owned by events logged before.

        The active alerts afterwards are the same as after processing them one by one.
        """
        if self.config.in_order:
            return [self._process_in_order(event, now_ms) for event in events]
        newest_before = self.max_seen_ms
        outcomes: list[Outcome | None] = []
        taken: list[tuple[OrderKey, Event]] = []
        taken_at: list[int] = []
        for event in events:
            rejected = self._admit(event, now_ms)
            if rejected is None:
                taken.append((order_key(event), event))
                taken_at.append(len(outcomes))
            outcomes.append(rejected)
        if taken:
            for at, alerts in zip(taken_at, self._take(taken, now_ms), strict=True):
                outcomes[at] = Outcome(Disposition.APPLIED, alerts)
            if self.max_seen_ms != newest_before:
                self._advance()
        return [o for o in outcomes if o is not None]

    def _admit(self, event: Event, now_ms: int) -> Outcome | None:
        """The disposition of an event that is not taken, or ``None`` (now remembered).

        Future first (a dead-lettered record registers nothing, so a far-future copy
        cannot hide the real event), then duplicate (ignored whatever else it says,
        also when it would be late), then late."""
        cfg = self.config
        at = event.occurred_at_ms
        future = future_outcome(at, now_ms, cfg)
        if future is not None:
            return future
        first = self._seen.first_seen_ms(event.event_id, self.max_seen_ms)
        if first is not None:
            return Outcome(
                Disposition.DUPLICATE,
                detail=f"event_id {event.event_id!r} was taken with occurred_at "
                f"{format_rfc3339_ms(first)}, within the duplicate window",
            )
        newest = self.max_seen_ms
        if is_late(at, newest, cfg.allowed_lateness_ms):
            return Outcome(
                Disposition.LATE,
                detail=f"occurred_at is more than {cfg.allowed_lateness_ms // 1000} s behind the "
                f"newest event seen for service {self.service!r}",
            )
        if newest is None or at > newest:
            self.max_seen_ms = newest = at
        self._seen.remember(event.event_id, at, newest)
        return None

    def _take(self, taken: list[tuple[OrderKey, Event]], now_ms: int) -> list[tuple[Alert, ...]]:
        """Log admitted events (distinct keys, none before ``base``); the alert records
        each one's outcome carries, in the order given."""
        log = self._log
        order = sorted(range(len(taken)), key=lambda i: taken[i][0])
        emitted: list[tuple[Alert, ...]] = [()] * len(taken)
        first = order[0]
        if not log or taken[first][0] > log[-1].key:
            head = self.head
            for i in order:
                key, event = taken[i]
                entry = _entry(key, event)
                entry.owned = self._evaluate(head, event, now_ms, entry.ref)
                for alert_id in entry.owned:
                    self._owner[alert_id] = key
                log.append(entry)
                emitted[i] = tuple(entry.owned.values())
            return emitted
        pos = bisect.bisect_left(log, taken[first][0], key=_entry_key)
        state = self._state_at(pos)
        before: dict[str, Alert] = {}
        for entry in log[pos:]:
            before.update(entry.owned)
            for alert_id in entry.owned:
                self._owner.pop(alert_id, None)  # two entries may claim one (_advance)
        fresh = [_entry(taken[i][0], taken[i][1]) for i in order]
        fresh_at = {taken[i][0]: i for i in order}
        tail = list(heapq.merge(log[pos:], fresh, key=_entry_key))
        del log[pos:]
        log.extend(tail)
        after: dict[str, _LogEntry] = {}
        for entry in tail:
            entry.owned = owned = self._evaluate(state, entry.event, now_ms, entry.ref)
            for alert_id, alert in owned.items():
                self._owner[alert_id] = entry.key
                previous = before.get(alert_id)
                if previous is not None and previous.same_content(alert):
                    owned[alert_id] = previous  # unchanged: keep the first detection time
                after[alert_id] = entry
        self.head = state
        out: list[list[Alert]] = [[] for _ in taken]
        for alert_id, alert in before.items():
            if alert_id not in after:
                out[first].append(alert.with_status(RETRACTED, now_ms))
        for alert_id, entry in after.items():
            alert = entry.owned[alert_id]
            previous = before.get(alert_id)
            if previous is None or not previous.same_content(alert):
                out[fresh_at.get(entry.key, first)].append(alert)
        return [tuple(alerts) for alerts in out]

    def _state_at(self, pos: int) -> ServiceState:
        """A state moved past the first ``pos`` logged events, safe to change."""
        state = self.base.copy()
        policy = self._policy
        for entry in self._log[:pos]:
            apply(state, entry.event, policy, entry.ref)
        return state

    def _process_in_order(self, event: Event, now_ms: int) -> Outcome:
        cfg = self.config
        future = future_outcome(event.occurred_at_ms, now_ms, cfg)
        if future is not None:
            return future
        key = order_key(event)
        last = self._last_key
        if last is not None and key <= last:
            if key == last:
                return Outcome(Disposition.DUPLICATE, detail="the same event as the previous one")
            return Outcome(
                Disposition.LATE,
                detail="not after the previous event of its service (in-order mode)",
            )
        owned = self._evaluate(self.head, event, now_ms)
        for alert_id, alert in owned.items():
            if RULES_BY_ID[alert.rule].shared_identity:
                self._remember_owner(alert_id, event.occurred_at_ms)
        self._last_key = key
        self.max_seen_ms = event.occurred_at_ms
        self._finalized_since_prune += 1
        every = cfg.prune_every_events
        if every is not None and self._finalized_since_prune >= every:
            self.prune(event.occurred_at_ms)
        return Outcome(Disposition.APPLIED, tuple(owned.values()))

    def _evaluate(
        self, state: ServiceState, event: Event, now_ms: int, ref: Evidence | None = None
    ) -> dict[str, Alert]:
        """Run the rules at ``event`` against ``state`` (then move ``state`` past it).

        Returns the alerts this event owns: identities no earlier event owns (a shared
        empty dict when none: do not change it). The event's release links are made
        first (SPEC §8: the rules at an event see its own links), then the rules read
        the state before the event's effects, then the effects are applied and
        recommendations judged. ``ref`` is the event's evidence reference, if the
        caller keeps one.
        """
        self.evaluations += 1
        if ref is None:
            ref = evidence_of(event)
        link(state, event, self._policy)
        findings = [
            (rule, finding)
            for rule in RULES_BY_EVENT_TYPE[event.type]
            for finding in rule.evaluate(state, event, ref)
        ]
        apply_effects(state, event, ref)
        if not findings:
            return _NO_ALERTS
        cfg = self.config
        owned: dict[str, Alert] = {}
        for rule, f in findings:
            alert_id = alert_id_for(f.rule, self.service, f.environment, f.release, f.trigger)
            if rule.shared_identity and (
                alert_id in self._owner or self._remembered(alert_id, event.occurred_at_ms)
            ):
                continue
            shown = state.display_name(f.release, cfg.max_release_candidates)
            owned[alert_id] = Alert(
                alert_id=alert_id,
                rule=f.rule,
                status=FIRING,
                severity=f.severity,
                service=self.service,
                environment=f.environment,
                release=shown,
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
                        cfg.max_release_candidates,
                    )
                    if rule.recommends
                    else None
                ),
                detected_at_ms=now_ms,
                release_aliases=state.other_names(f.release, shown, MAX_ALERT_ALIASES),
                evidence_count=f.evidence_count,
            )
        return owned

    def _remember_owner(self, alert_id: str, event_ms: int) -> None:
        """Owners are finalized in order, so the memory stays ordered by time (oldest
        first) and pruning stops at the first entry it keeps."""
        self._fired_shared.pop(alert_id, None)
        self._fired_shared[alert_id] = event_ms

    def _remembered(self, alert_id: str, event_ms: int) -> bool:
        """Whether a finalized event owns ``alert_id`` within ``alert_memory_ms`` before
        ``event_ms``. Judged by age here, not by presence: pruning drops only entries
        older than that, whenever it runs, so it cannot change the answer."""
        fired_ms = self._fired_shared.get(alert_id)
        return fired_ms is not None and fired_ms >= event_ms - self.config.alert_memory_ms

    def _advance(self) -> None:
        """Move events behind the frontier from the log into ``base`` and prune."""
        assert self.max_seen_ms is not None
        frontier = lateness_frontier(self.max_seen_ms, self.config.allowed_lateness_ms)
        log = self._log
        done = 0
        base = self.base
        policy = self._policy
        while done < len(log) and log[done].event.occurred_at_ms < frontier:
            entry = log[done]
            self._base_stored = None
            apply(base, entry.event, policy, entry.ref)
            for alert_id in entry.owned:
                # Two logged events can claim one identity: an event_id used again after
                # the duplicate window forgot it, arriving in the batch that moved the
                # window, while its first use is still in the log (a trigger is an event
                # id). The later claim owns it; the earlier one leaving releases nothing.
                if self._owner.get(alert_id) == entry.key:
                    del self._owner[alert_id]
                if RULES_BY_ID[entry.owned[alert_id].rule].shared_identity:
                    self._remember_owner(alert_id, entry.event.occurred_at_ms)
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
        self._base_stored = None
        states = (self.head,) if self.base is self.head else (self.base, self.head)
        for state in states:
            state.prune(frontier_ms, cfg.max_release_candidates)
        fired = self._fired_shared
        edge = frontier_ms - cfg.alert_memory_ms
        while fired:
            oldest = next(iter(fired))
            if fired[oldest] >= edge:
                break
            del fired[oldest]

    # -- inspection ------------------------------------------------------------

    @property
    def log_length(self) -> int:
        return len(self._log)

    @property
    def remembered_ids(self) -> int:
        """Event ids in the duplicate window (expired ones may linger until a prune)."""
        return len(self._seen)

    def owned_alerts(self) -> Iterator[Alert]:
        """Alerts owned by events still in the log (those that may yet be retracted)."""
        for entry in self._log:
            yield from entry.owned.values()

    # -- serialization ---------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The service's state as bytes: base, the logged events, the newest event time,
        the remembered event ids and the shared-identity memory."""
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
            "base": self._stored_base(),
            "log": [entry.serialized() for entry in self._log],
        }
        if self._fired_shared:
            obj["fired_shared"] = self._fired_shared
        frontier = (
            lateness_frontier(self.max_seen_ms, self.config.allowed_lateness_ms)
            if self.max_seen_ms is not None
            else None
        )
        ids = self._seen.to_obj(self.max_seen_ms, frontier)  # the later ones are logged
        if ids:
            obj["ids"] = ids
        if self._last_key is not None:
            obj["last_key"] = list(self._last_key)
        # A copy: orjson's own result keeps a 4 KB buffer however short it is, and these
        # bytes are kept (idle services, the worker's state cache).
        return memoryview(orjson.dumps(obj)).tobytes()

    def _stored_base(self) -> orjson.Fragment:
        stored = self._base_stored
        if stored is None:
            stored = orjson.Fragment(orjson.dumps(self.base.to_obj()).decode())
            if self.base is not self.head:
                self._base_stored = stored
        return stored

    @staticmethod
    def from_bytes(data: bytes, config: EngineConfig, now_ms: int) -> ServiceEngine:
        """Restore from :meth:`to_bytes` (or a version 1 state); the owned alerts of the
        log are re-derived."""
        try:
            obj = orjson.loads(data)
            version = obj.get("v")
            if version not in (1, STATE_FORMAT_VERSION):
                raise StateError(f"state format version {version!r} is not supported")
            engine = ServiceEngine(obj["service"], config)
            engine.base = ServiceState.from_obj(obj["base"], version)
            max_seen = obj["max_seen_ms"]
            if max_seen is not None and type(max_seen) is not int:
                raise TypeError("max_seen_ms must be an integer")
            engine.max_seen_ms = max_seen
            shared = obj["base"]["fired_shared"] if version == 1 else obj.get("fired_shared", {})
            owners = sorted(((str(k), int(v)) for k, v in shared.items()), key=lambda kv: kv[1])
            engine._fired_shared = dict(owners)
            engine._seen.load(obj.get("ids", []))
            last = obj.get("last_key")
            engine._last_key = (int(last[0]), int(last[1]), str(last[2])) if last else None
            events = [parse_event(e) for e in obj["log"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"service state is malformed: {exc!r}") from None
        except ValidationError as exc:
            raise StateError(f"service state holds an invalid event: {exc}") from None
        if config.in_order and events:
            raise StateError("an in-order engine cannot restore a lateness log")
        state = engine.base.copy()
        for event in events:
            entry = _entry(order_key(event), event)
            entry.owned = engine._evaluate(state, event, now_ms, entry.ref)
            for alert_id in entry.owned:
                engine._owner[alert_id] = entry.key
            engine._log.append(entry)
            engine._seen.remember(event.event_id, event.occurred_at_ms, max_seen or 0)
        engine.head = state
        if config.in_order:
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


IDLE_SWEEP_EVERY_EVENTS: Final = 4096
"""How often (in events processed) :class:`Engine` looks for idle services."""
MAX_LIVE_SERVICES: Final = 20_000
"""Live services :class:`Engine` keeps before it compacts the recently idle ones too
(about 10 KB each live, 1-2 KB as bytes)."""


class Engine:
    """The engine over many services: routes each event to its service's engine.

    A service is *idle* when its newest event is far behind the newest event the engine
    has taken; with ``compact_idle`` an idle service is kept as its compact bytes
    (:meth:`ServiceEngine.to_bytes`) and re-inflated by its next event. Compaction
    changes no outcome (the bytes restore the same engine); it costs a restore when the
    service is heard from again. Idle means:

    * more than ``idle_after_ms`` behind (default: the duplicate window in effect), always;
    * more than the allowed lateness behind, once more than ``max_live_services`` are
      live (bounded memory for inputs over very many services, at the cost of restores).
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        compact_idle: bool = True,
        idle_after_ms: int | None = None,
        max_live_services: int = MAX_LIVE_SERVICES,
        sweep_every_events: int = IDLE_SWEEP_EVERY_EVENTS,
    ) -> None:
        self.config = config or EngineConfig()
        self.sweep_every_events = sweep_every_events
        """How often (in events processed) idle services are looked for."""
        self.services: dict[str, ServiceEngine] = {}
        """The live services (idle ones are in :attr:`idle`)."""
        self.idle: dict[str, bytes] = {}
        """Idle services as their compact bytes."""
        if idle_after_ms is None:
            idle_after_ms = self.config.effective_duplicate_window_ms
        self.compact_idle = compact_idle
        self.idle_after_ms = idle_after_ms
        self.max_live_services = max_live_services
        self.newest_ms: int | None = None
        self.reinflated = 0
        """How many times an idle service was brought back (a cost measure)."""
        self._since_sweep = 0

    def service(self, name: str, now_ms: int = 0) -> ServiceEngine:
        """The live engine of a service (re-inflated if idle; ``now_ms`` stamps the alerts
        its log re-derives, which are not emitted)."""
        engine = self.services.get(name)
        if engine is None:
            data = self.idle.pop(name, None)
            if data is None:
                engine = ServiceEngine(name, self.config)
            else:
                engine = ServiceEngine.from_bytes(data, self.config, now_ms)
                self.reinflated += 1
            self.services[name] = engine
        return engine

    def process(self, event: Event, now_ms: int) -> Outcome:
        engine = self.service(event.service, now_ms)
        outcome = engine.process(event, now_ms)
        self._after(engine, 1)
        return outcome

    def process_batch(self, events: Sequence[Event], now_ms: int) -> list[Outcome]:
        """Process events that arrived together: each service's events go to its engine
        in one batch (:meth:`ServiceEngine.process_batch`). One outcome per event, in the
        order given."""
        by_service: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            by_service.setdefault(event.service, []).append(index)
        outcomes: list[Outcome | None] = [None] * len(events)
        for name, indexes in by_service.items():
            engine = self.service(name, now_ms)
            results = engine.process_batch([events[i] for i in indexes], now_ms)
            for index, outcome in zip(indexes, results, strict=True):
                outcomes[index] = outcome
            self._after(engine, len(indexes))
        return [o for o in outcomes if o is not None]

    def _after(self, engine: ServiceEngine, count: int) -> None:
        newest = engine.max_seen_ms
        if newest is not None and (self.newest_ms is None or newest > self.newest_ms):
            self.newest_ms = newest
        self._since_sweep += count
        if self._since_sweep >= self.sweep_every_events:
            self._since_sweep = 0
            self.compact_idle_services()

    def compact_idle_services(self) -> int:
        """Keep the idle services as bytes; how many were compacted."""
        if not self.compact_idle or self.newest_ms is None:
            return 0
        behind_ms = self.idle_after_ms
        if len(self.services) > self.max_live_services:
            behind_ms = min(behind_ms, self.config.allowed_lateness_ms)
        edge = self.newest_ms - behind_ms
        idle = [
            name
            for name, engine in self.services.items()
            if engine.max_seen_ms is not None and engine.max_seen_ms < edge
        ]
        for name in idle:
            self.idle[name] = self.services.pop(name).to_bytes()
        return len(idle)

    def snapshot(self) -> dict[str, bytes]:
        out = dict(self.idle)
        out.update((name, engine.to_bytes()) for name, engine in self.services.items())
        return out

    @staticmethod
    def restore(snapshot: dict[str, bytes], config: EngineConfig, now_ms: int) -> Engine:
        engine = Engine(config)
        for name, data in snapshot.items():
            service = engine.services[name] = ServiceEngine.from_bytes(data, config, now_ms)
            engine._after(service, 0)
        return engine
