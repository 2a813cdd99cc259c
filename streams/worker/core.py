"""The worker's core, driven by either runtime: admission, the merge, the engine, health.

A runtime (:mod:`~streams.worker.kafka_runtime` or :mod:`~streams.worker.faust_runtime`)
owns its Kafka clients and hands the core what they deliver; the core decides.
For each record, :meth:`WorkerCore.admit` decodes and validates it (a dead letter
or a re-keyed copy comes back to be produced) or puts it in the event-time merge
of its partition number. :meth:`WorkerCore.release` takes from the merges what
their rule lets go — at most one *slice* per call, so no turn of the runtime's
loop runs for seconds on a scanner's burst — and gives each service's share to
its engine in one turn (``ServiceEngine.process_batch``). What comes back is, per
service, the outputs to hold until its state is stored (kafka runtime) or to send
(Faust runtime).

The core also owns what both runtimes share around that: the merge policy (built
once from the options), the per-partition lag the merge asks about (through the
runtime's :class:`LagView`), assignment and revocation clean-up, the idle-service
eviction, the metrics that describe it, and the health report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from streams.codecs import make_codec
from streams.settings import Settings
from streams.worker.delivery import RecordLimits
from streams.worker.health import Progress
from streams.worker.merge import MergePolicy, PartitionMerge
from streams.worker.metrics import PipelineMetrics
from streams.worker.options import WorkerOptions, wall_ms
from streams.worker.processor import Admitted, Processor, StateLoader, StateToStore
from streams.worker.records import InputRecord, Output

DEAD_LETTER_KEY_ROOM = 256
"""Bytes kept free for a dead letter's key when fitting it to the dead-letter topic."""


class LagView(Protocol):
    """What the merge asks a runtime about an input partition."""

    def lag_state(self, topic: str, partition: int) -> str:
        """``caught_up``, ``lagging`` or ``unknown`` (see :mod:`streams.worker.merge`)."""
        ...


ConfirmCaughtUp = Callable[[str, int, int], bool]
"""``(topic, partition, since_ms)``: does the broker, asked at or after ``since_ms``,
show the topic-partition caught up? (Only the kafka runtime asks.)"""


@dataclass
class Released:
    """One slice of released events: the items in merge order, and each service's outputs."""

    items: list[Admitted] = field(default_factory=list)
    outputs: dict[str, list[Output]] = field(default_factory=dict)
    full: bool = False
    """The slice was cut at its size: more may be releasable right away."""


MIN_SLICE_EVENTS: Final = 500
"""The smallest slice. Each batch of a burst re-evaluates the burst's log from its earliest
insertion, so smaller slices cost more in all: 50-event slices took a 20 000-finding
report from 87 s to 123 s end to end (fewer, longer turns against more, shorter ones)."""


EVICTION_SCAN_EVERY_MS: Final = 1_000
"""How often :meth:`WorkerCore.evict_idle_due` scans the cached services (the eviction
threshold is a minute by default; a scan at every 10 ms checkpoint walked every cached
service a hundred times a second: 1.3% of the worker at 2 000 events/s)."""


def merge_policy(settings: Settings, options: WorkerOptions) -> MergePolicy:
    """The merge's waits, from the worker's options; far ahead is half the lateness."""
    return MergePolicy(
        idle_ms=options.merge_idle_ms,
        lagging_max_ms=options.merge_lagging_max_ms,
        caught_up_grace_ms=options.merge_caught_up_grace_ms,
        far_ahead_ms=settings.allowed_lateness_ms // 2,
        far_ahead_grace_ms=options.merge_far_ahead_grace_ms,
    )


class WorkerCore:
    """The part of the worker both runtimes share (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        options: WorkerOptions,
        load_state: StateLoader,
        runtime: str,
        clock: Callable[[], int] = wall_ms,
        metrics: PipelineMetrics | None = None,
        limits: RecordLimits | None = None,
        elapsed: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.options = options
        self.runtime = runtime
        self.clock = clock
        self.metrics = metrics or PipelineMetrics()
        self.policy = merge_policy(settings, options)
        topics = settings.topics
        self.inputs = topics.inputs
        self.processor = Processor(
            topics,
            make_codec(settings),
            settings.engine_config(),
            options.partitions,
            load_state,
            clock,
            self.metrics,
            dead_letter_budget=(
                limits.value_budget(topics.dlq, DEAD_LETTER_KEY_ROOM) if limits else None
            ),
        )
        self.merges: dict[int, PartitionMerge[Admitted]] = {}
        self.assigned: set[int] = set()
        self.progress = Progress(options.health_stall_ms)
        self._start = 0  # the partition a limited release starts from (round robin)
        self._elapsed = elapsed
        self.slice_limit = options.slice_events
        """Events the next slice may take: adapted to how long slices take (see
        :meth:`_adapt_slice`), at most ``slice_events``."""
        self._eviction_scanned_ms: int | None = None
        """When :meth:`evict_idle_due` last scanned (None: never)."""

    # -- records in ------------------------------------------------------------------

    def merge(self, partition: int) -> PartitionMerge[Admitted]:
        merge = self.merges.get(partition)
        if merge is None:
            merge = self.merges[partition] = PartitionMerge(self.inputs)
        return merge

    def admit(self, record: InputRecord, arrived_ms: int, token: object = None) -> list[Output]:
        """Admit one record: into the merge (returns nothing), or the outputs that dispose
        of it (a dead letter, a re-keyed copy), to be produced by the runtime."""
        admitted = self.processor.admit(record, token)
        if isinstance(admitted, Admitted):
            self.merge(record.partition).add(record.topic, admitted.key, arrived_ms, admitted)
            return []
        return admitted

    def buffered(self) -> int:
        return sum(len(m) for m in self.merges.values())

    # -- the engine --------------------------------------------------------------------

    def release(
        self,
        now_ms: int,
        lag: LagView,
        limit: int | None = None,
        confirm: ConfirmCaughtUp | None = None,
    ) -> Released:
        """Release from the merges at most ``limit`` events (default one slice) and run
        them through the engine, each service's in one batch, in merge order."""
        adaptive = limit is None
        limit = self.slice_limit if limit is None else limit
        out = Released()
        items = out.items
        partitions = sorted(self.merges)
        if not partitions:
            return out
        start = self._start % len(partitions)
        for partition in partitions[start:] + partitions[:start]:
            merge = self.merges[partition]
            if not merge:
                continue

            def state(topic: str, p: int = partition) -> str:
                return lag.lag_state(topic, p)

            confirm_here = None
            if confirm is not None:

                def confirm_here(topic: str, since_ms: int, p: int = partition) -> bool:
                    return confirm(topic, p, since_ms)

            for _, admitted in merge.release(
                state, now_ms, self.policy, limit - len(items), confirm_here
            ):
                items.append(admitted)
            if len(items) >= limit:
                out.full = True
                # Next time start after this partition: a burst on one partition does
                # not starve the others of turns.
                self._start = partitions.index(partition) + 1
                break
        if not items:
            return out
        started = self._elapsed()
        apply_batch = self.processor.apply_batch
        for service, batch in group_by_service(items).items():
            outputs = apply_batch(service, batch)
            if outputs:
                out.outputs[service] = outputs
        if adaptive:
            self._adapt_slice(len(items), (self._elapsed() - started) * 1000.0)
        return out

    def _adapt_slice(self, taken: int, took_ms: float) -> None:
        """Size the next slice so that the engine's share of a turn stays near
        ``slice_target_ms`` whatever the machine: events of a burst inside one service's
        lateness log cost more each than a uniform stream's, and a loaded machine costs
        more for all of them. Shrinks at once, grows by half at a time."""
        target = self.options.slice_target_ms
        if took_ms > target:
            fitting = int(taken * target / took_ms)
            self.slice_limit = max(MIN_SLICE_EVENTS, min(self.slice_limit, fitting))
        elif took_ms < target / 2 and taken >= self.slice_limit:
            self.slice_limit = min(self.options.slice_events, self.slice_limit * 3 // 2 + 1)

    def take_states(self, only: Iterable[str] | None = None) -> list[StateToStore]:
        """The states of the services touched since the last call (of those in ``only``,
        when given: the others stay touched, for a later call)."""
        return self.processor.take_dirty(only)

    def evict_idle(self, now_ms: int) -> int:
        """Drop from the cache the engines of services idle for ``idle_service_evict_ms``
        whose state is stored (call it right after a checkpoint took the states)."""
        evicted = self.processor.evict_idle(now_ms - self.options.idle_service_evict_ms)
        if evicted:
            self.metrics.evicted.inc(evicted)
        return evicted

    def evict_idle_due(self, now_ms: int) -> int:
        """:meth:`evict_idle`, at most once per :data:`EVICTION_SCAN_EVERY_MS` (for a
        runtime that checkpoints every few milliseconds); 0 when no scan was due."""
        scanned = self._eviction_scanned_ms
        if scanned is not None and 0 <= now_ms - scanned < EVICTION_SCAN_EVERY_MS:
            return 0
        self._eviction_scanned_ms = now_ms
        return self.evict_idle(now_ms)

    # -- assignment ----------------------------------------------------------------------

    def assigned_partitions(self, partitions: Iterable[int]) -> None:
        self.assigned = set(partitions)

    def drop_partitions(self) -> None:
        """Revocation or loss: held records and cached engines go (the store and the next
        owner take over); each merge keeps its topics' newest event times, which tell a
        burst from a live stream if the partition comes back."""
        for merge in self.merges.values():
            merge.clear()
        self.processor.forget()
        self.assigned = set()

    # -- metrics and health -----------------------------------------------------------------

    def refresh_metrics(
        self, lags: Iterable[tuple[str, int, int]], store_bytes: int | None = None
    ) -> None:
        """The gauges: lag per input partition, services cached, records held (the
        frozen-object count is read when scraped, see :class:`PipelineMetrics`)."""
        for topic, partition, lag in lags:
            self.metrics.lag.labels(topic, str(partition)).set(max(0, lag))
        self.metrics.services.set(len(self.processor.engines))
        self.metrics.merge_buffered.set(self.buffered())
        if store_bytes is not None:
            self.metrics.state_bytes.set(store_bytes)

    def health(self, **details: Any) -> dict[str, Any]:
        return self.progress.report(
            runtime=self.runtime,
            partitions=sorted(self.assigned),
            services_cached=len(self.processor.engines),
            **details,
        )


def group_by_service(items: Sequence[Admitted]) -> dict[str, list[Admitted]]:
    """The items per service, in their order (the engine's batches)."""
    groups: dict[str, list[Admitted]] = {}
    for item in items:
        groups.setdefault(item.event.service, []).append(item)
    return groups
