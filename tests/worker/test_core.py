"""The worker core without Kafka: slices, one engine batch per service, eviction, health."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.engine import EngineConfig
from agents.model.events import parse_event
from agents.model.timefmt import format_rfc3339_ms
from streams.codecs import make_codec
from streams.kafka.clients import murmur2_partition
from streams.settings import Settings, Topics
from streams.synthetic import SyntheticSpec, generate
from streams.worker.core import EVICTION_SCAN_EVERY_MS, WorkerCore, group_by_service, merge_policy
from streams.worker.delivery import RecordLimits
from streams.worker.health import Progress
from streams.worker.merge import CAUGHT_UP
from streams.worker.options import WorkerOptions
from streams.worker.processor import Admitted, Processor
from streams.worker.records import InputRecord
from streams.worker.state_records import StoredState, encode_state
from tests.worker.fakes import FakeClock, store

SETTINGS = Settings(topics=Topics("c."))
TOPICS = SETTINGS.topics
NOW_MS = 1_900_000_000_000
CODEC = make_codec()


class AllCaughtUp:
    """A lag view where every input partition is caught up (nothing holds the merge)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def lag_state(self, topic: str, partition: int) -> str:
        self.asked.append((topic, partition))
        return CAUGHT_UP


def flag(service: str, n: int, at_ms: int = NOW_MS - 3_600_000) -> dict[str, Any]:
    return {
        "type": "security_flag",
        "event_id": f"{service}-f{n}",
        "occurred_at": format_rfc3339_ms(at_ms),
        "source": "trivy",
        "service": service,
        "flag_id": f"CVE-2026-{n}",
        "release": "1.0.0",
        "status": "raised",
        "severity": "high",
        "vulnerabilities": [],
        "title": "t",
        "fixed_in": None,
    }


def deploy(service: str, at_ms: int = NOW_MS - 7_200_000) -> dict[str, Any]:
    return {
        "type": "deploy",
        "event_id": f"{service}-d",
        "occurred_at": format_rfc3339_ms(at_ms),
        "source": "argocd",
        "service": service,
        "environment": "production",
        "release": "1.0.0",
        "previous_release": None,
        "action": "deploy",
        "status": "succeeded",
    }


def record(obj: dict[str, Any], offset: int, partitions: int = 3) -> InputRecord:
    event = parse_event(obj)
    topic = TOPICS.input_for_type(event.type)
    key = event.service.encode()
    return InputRecord(
        topic, murmur2_partition(key, partitions), offset, key, CODEC.encode_event(obj)
    )


def core(elapsed: Any = lambda: 0.0, **options: Any) -> WorkerCore:
    """A core whose engine work takes no time (``elapsed`` fixed) unless told otherwise."""
    changelog = store("c.")
    opts = WorkerOptions(partitions=3, merge_caught_up_grace_ms=0, **options)
    return WorkerCore(
        SETTINGS, opts, changelog.state_of, "kafka", clock=lambda: NOW_MS, elapsed=elapsed
    )


def test_release_takes_one_slice_and_says_more_is_waiting() -> None:
    c = core(slice_events=40)
    for n in range(100):
        assert c.admit(record(flag("svc", n), n), NOW_MS) == []
    first = c.release(NOW_MS, AllCaughtUp())
    assert len(first.items) == 40 and first.full
    assert c.buffered() == 60
    rest = [c.release(NOW_MS, AllCaughtUp()) for _ in range(2)]
    assert [len(r.items) for r in rest] == [40, 20]
    assert [r.full for r in rest] == [True, False]


class SlowEngine:
    """A stopwatch for the core: each event the engine applies takes ``ms_per_event``.

    It reads the core's count of applied events when the core reads the time (the
    worker's modules are compiled: a method of theirs cannot be wrapped in a test)."""

    def __init__(self, ms_per_event: float) -> None:
        self.ms_per_event = ms_per_event
        self.now_s = 0.0
        self.core: WorkerCore | None = None
        self._counted = 0

    def __call__(self) -> float:
        if self.core is not None:
            applied = self.core.metrics.applied.value
            self.now_s += (applied - self._counted) * self.ms_per_event / 1000.0
            self._counted = applied
        return self.now_s

    def watch(self, core: WorkerCore) -> WorkerCore:
        self.core = core
        return core


def test_a_slow_slice_makes_the_next_smaller_and_quick_ones_let_it_grow_back() -> None:
    watch = SlowEngine(ms_per_event=0.5)  # 2 000 events: 1 s, twice the target
    c = watch.watch(core(elapsed=watch, slice_events=2000, slice_target_ms=500))
    for n in range(6000):
        c.admit(record(flag("svc", n), n), NOW_MS)
    sizes = []
    turn_ms = []
    for _ in range(6):
        before = watch.now_s
        sizes.append(len(c.release(NOW_MS, AllCaughtUp()).items))
        turn_ms.append((watch.now_s - before) * 1000)
    assert sizes[0] == 2000  # the first slice cannot know
    assert sizes[1] == 1000 and all(ms <= 500 for ms in turn_ms[1:])
    # The burst is over; cheap events again: the slice grows back, half again a turn.
    watch.ms_per_event = 0.01
    for n in range(6000, 20000):
        c.admit(record(flag("svc", n), n), NOW_MS)
    grown = [len(c.release(NOW_MS, AllCaughtUp()).items) for _ in range(12)]
    assert grown[:3] == [1000, 1501, 2000]
    assert max(grown) == 2000 and c.slice_limit == 2000


def test_a_slice_never_shrinks_below_the_minimum() -> None:
    from streams.worker.core import MIN_SLICE_EVENTS

    watch = SlowEngine(ms_per_event=1000.0)  # every event takes a second
    c = watch.watch(core(elapsed=watch, slice_events=2000, slice_target_ms=100))
    for n in range(3000):
        c.admit(record(flag("svc", n), n), NOW_MS)
    sizes = [len(c.release(NOW_MS, AllCaughtUp()).items) for _ in range(3)]
    assert sizes == [2000, MIN_SLICE_EVENTS, MIN_SLICE_EVENTS]


def test_each_service_of_a_slice_goes_to_its_engine_in_one_batch() -> None:
    # ``release`` hands the engine one batch per group of ``group_by_service`` (the
    # worker's modules are compiled, so the call itself cannot be spied on here).
    c = core()
    offset = 0
    for service in ("a", "b"):
        c.admit(record(deploy(service), offset), NOW_MS)
        offset += 1
    for n in range(30):
        for service in ("a", "b"):
            c.admit(record(flag(service, n), offset), NOW_MS)
            offset += 1
    released = c.release(NOW_MS, AllCaughtUp())
    groups = group_by_service(released.items)
    assert sorted((service, len(batch)) for service, batch in groups.items()) == [
        ("a", 31),
        ("b", 31),
    ]
    # The outputs of each service in its order: every raise fired on the running release.
    for service in ("a", "b"):
        keys = [o.topic for o in released.outputs[service]]
        assert keys.count(TOPICS.alerts) == 30 and keys.count(TOPICS.alerts_ocsf) == 30


def test_a_slice_cut_on_one_partition_lets_the_next_one_start_the_next_slice() -> None:
    c = core(slice_events=10)
    services = {}
    for name in (f"s{i}" for i in range(40)):
        services.setdefault(murmur2_partition(name.encode(), 3), name)
        if len(services) == 3:
            break
    for p, service in services.items():
        for n in range(20):
            c.admit(record(flag(service, n), p * 100 + n), NOW_MS)
    starts = []
    for _ in range(3):
        starts.append(c.release(NOW_MS, AllCaughtUp()).items[0].record.partition)
    assert len(set(starts)) == 3, "each partition gets a turn at the head of a slice"


def test_bad_records_come_back_to_be_produced_and_never_enter_the_merge() -> None:
    c = core()
    bad = InputRecord(TOPICS.deploys, 0, 7, b"k", b"\x00not avro")
    (letter,) = c.admit(bad, NOW_MS)
    assert letter.topic == TOPICS.dlq and c.buffered() == 0
    obj = deploy("svc")
    misrouted = record(obj, 3)
    wrong = InputRecord(misrouted.topic, (misrouted.partition + 1) % 3, 3, b"x", misrouted.value)
    (rekeyed,) = c.admit(wrong, NOW_MS)
    assert (rekeyed.topic, rekeyed.partition) == (misrouted.topic, misrouted.partition)


def test_the_eviction_scan_runs_at_most_once_a_second_and_then_evicts_as_before() -> None:
    changelog = store("c.")
    opts = WorkerOptions(partitions=3, merge_caught_up_grace_ms=0, idle_service_evict_ms=1_000)
    c = WorkerCore(SETTINGS, opts, changelog.state_of, "kafka", clock=lambda: NOW_MS)
    c.admit(record(deploy("svc"), 0), NOW_MS)
    c.release(NOW_MS, AllCaughtUp())
    (state,) = c.take_states()
    for r in encode_state("cl", b"svc", StoredState(state.offsets, state.engine), "e.1", 0, 10**6):
        assert r.key is not None
        changelog.put(r.key, 0, r.value)
    assert c.evict_idle_due(NOW_MS + 500) == 0, "scanned: not idle long enough"
    assert c.evict_idle_due(NOW_MS + 500 + EVICTION_SCAN_EVERY_MS - 1) == 0, "no scan due"
    assert "svc" in c.processor.engines, "idle long enough by then, but not scanned"
    assert c.evict_idle_due(NOW_MS + 500 + EVICTION_SCAN_EVERY_MS) == 1
    assert c.processor.engines == {} and c.metrics.evicted.value == 1
    # A clock that went back (a wall-clock step) scans again rather than never.
    assert c.evict_idle_due(NOW_MS) == 0 and c._eviction_scanned_ms == NOW_MS


def test_idle_services_are_evicted_once_stored_and_come_back_from_the_store() -> None:
    changelog = store("c.")
    clock = {"now": NOW_MS}
    opts = WorkerOptions(partitions=3, merge_caught_up_grace_ms=0, idle_service_evict_ms=1_000)
    c = WorkerCore(SETTINGS, opts, changelog.state_of, "kafka", clock=lambda: clock["now"])
    c.admit(record(deploy("svc"), 0), NOW_MS)
    c.release(NOW_MS, AllCaughtUp())
    assert c.evict_idle(NOW_MS + 5_000) == 0, "touched and not stored: kept"
    (state,) = c.take_states()
    for r in encode_state("cl", b"svc", StoredState(state.offsets, state.engine), "e.1", 0, 10**6):
        assert r.key is not None
        changelog.put(r.key, 0, r.value)
    assert c.evict_idle(NOW_MS + 500) == 0, "not idle long enough"
    assert c.evict_idle(NOW_MS + 5_000) == 1
    assert c.processor.engines == {} and c.metrics.evicted.value == 1
    # Its next event finds the state in the store: the deploy it saw still counts.
    clock["now"] = NOW_MS + 6_000
    c.admit(record(flag("svc", 1), 1), NOW_MS)
    released = c.release(NOW_MS, AllCaughtUp())
    assert any(o.topic == TOPICS.alerts for o in released.outputs["svc"])
    # The same record again is a duplicate by its offset, also after the eviction.
    c.admit(record(flag("svc", 1), 1), NOW_MS)
    assert c.release(NOW_MS, AllCaughtUp()).outputs == {}


def test_a_dead_letter_too_big_for_its_topic_keeps_the_start_of_the_value() -> None:
    limits = RecordLimits(2_000)
    budget = limits.value_budget(TOPICS.dlq, 256)
    processor = Processor(
        TOPICS, CODEC, EngineConfig(), 3, lambda _: None, lambda: NOW_MS, dead_letter_budget=budget
    )
    big = InputRecord(TOPICS.deploys, 1, 9, b"k", b"\x00" + b"x" * 5_000)
    (letter,) = processor.admit(big)  # type: ignore[misc]
    assert letter.value is not None and len(letter.value) <= limits.value_budget(TOPICS.dlq, 256)
    decoded = CODEC.decode_dead_letter(letter.value)
    assert decoded["value"] == big.value[: len(decoded["value"])]
    assert "truncated" in decoded["detail"] and "5001 bytes" in decoded["detail"]


def test_the_merge_policy_is_built_once_from_the_options() -> None:
    options = WorkerOptions(merge_idle_ms=7, merge_far_ahead_grace_ms=9)
    policy = merge_policy(Settings(allowed_lateness_ms=10_000), options)
    assert (policy.idle_ms, policy.far_ahead_ms, policy.far_ahead_grace_ms) == (7, 5_000, 9)


def test_health_turns_503_once_progress_stops_for_the_stall_limit() -> None:
    clock = FakeClock()
    progress = Progress(stall_ms=10_000, clock=clock)
    assert progress.report()["status"] == "ok"
    clock.advance(9.9)
    assert progress.report()["status"] == "ok"
    clock.advance(0.2)
    report = progress.report(runtime="kafka")
    assert report["status"] == "stalled" and report["last_loop_ms_ago"] == 10_100
    assert report["runtime"] == "kafka" and report["stall_limit_ms"] == 10_000
    progress.beat()
    assert progress.report()["status"] == "ok"


def test_the_core_health_names_the_runtime_partitions_and_cache() -> None:
    c = core()
    c.assigned_partitions([2, 0])
    report = c.health(checkpoints_in_flight=3)
    assert report["partitions"] == [0, 2] and report["runtime"] == "kafka"
    assert report["checkpoints_in_flight"] == 3 and report["status"] == "ok"


def test_drop_partitions_forgets_held_records_and_engines_but_keeps_event_times() -> None:
    c = core()
    c.admit(record(deploy("svc"), 0), NOW_MS)
    c.release(NOW_MS, AllCaughtUp())
    c.admit(record(flag("svc", 2), 1), NOW_MS)
    partition = murmur2_partition(b"svc", 3)
    assert c.buffered() == 1
    c.drop_partitions()
    assert c.buffered() == 0 and c.processor.engines == {}
    assert c.merges[partition].last_time_ms, "kept: they tell a burst from a live stream"


@pytest.mark.parametrize("slice_events", [1, 7, 1_000])
def test_any_slice_size_gives_the_same_outputs(slice_events: int) -> None:
    def run(size: int) -> list[bytes | None]:
        c = core(slice_events=size)
        c.admit(record(deploy("svc"), 0), NOW_MS)
        for n in range(25):
            c.admit(record(flag("svc", n), n + 1), NOW_MS)
        outputs: list[bytes | None] = []
        while c.buffered():
            for held in c.release(NOW_MS, AllCaughtUp()).outputs.values():
                outputs.extend(o.key for o in held)
        return outputs

    assert run(slice_events) == run(1_000)


def test_states_taken_for_some_services_leave_the_others_touched_for_later() -> None:
    c = core()
    for offset, obj in enumerate([deploy("a"), deploy("b"), deploy("c")]):
        c.admit(record(obj, offset), NOW_MS)
    c.release(NOW_MS, AllCaughtUp())
    (a,) = c.take_states(only=["a", "never-seen"])
    assert a.service == "a"
    assert c.evict_idle(NOW_MS + 10**9) == 1, "only the stored one may be evicted"
    assert sorted(s.service for s in c.take_states()) == ["b", "c"]
    assert c.take_states() == [] and c.take_states(only=["b"]) == []


def test_a_crash_after_storing_only_the_alerting_service_repeats_no_alert_and_loses_nothing() -> (
    None
):
    """The kafka runtime's outputs seal (streams.worker.cadence) stores only the services
    whose alerts wait, and commits no offset: after a crash, every record since the last
    commit is read again. The stored service's records are known by their offsets; the
    others are applied again, to the state an uninterrupted worker has."""
    changelog = store("c.")
    upgrade = deploy("quiet", at_ms=NOW_MS - 3_600_000)
    upgrade.update(event_id="quiet-d2", release="1.1.0", previous_release="1.0.0")
    records = [
        record(deploy("alerting"), 0),
        record(deploy("quiet"), 1),
        record(flag("alerting", 1), 2),
        record(upgrade, 3),
    ]

    def fresh() -> WorkerCore:
        opts = WorkerOptions(partitions=3, merge_caught_up_grace_ms=0)
        return WorkerCore(SETTINGS, opts, changelog.state_of, "kafka", clock=lambda: NOW_MS)

    def run(c: WorkerCore) -> dict[str, list[bytes | None]]:
        for r in records:
            c.admit(r, NOW_MS)
        out: dict[str, list[bytes | None]] = {}
        while c.buffered():
            for service, held in c.release(NOW_MS, AllCaughtUp()).outputs.items():
                out.setdefault(service, []).extend(o.key for o in held)
        return out

    uninterrupted = fresh()
    first = run(uninterrupted)
    assert set(first) == {"alerting"}, "the quiet service only deploys"
    expected = {s.service: s.engine for s in uninterrupted.take_states()}

    before_crash = fresh()
    assert run(before_crash) == first
    (stored,) = before_crash.take_states(only=list(first))
    encoded = StoredState(stored.offsets, stored.engine)
    for r in encode_state("cl", b"alerting", encoded, "e.1", stored.partition, 10**6):
        assert r.key is not None
        changelog.put(r.key, stored.partition, r.value)

    after_crash = fresh()  # nothing committed: every record is read again
    assert run(after_crash) == {}, "the stored service's alert is not sent again"
    (quiet,) = after_crash.take_states()
    assert quiet.service == "quiet" and quiet.engine == expected["quiet"]
    assert after_crash.metrics.duplicates.value == 2


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("apply"), st.lists(st.integers(0, 4), min_size=1, max_size=6)),
            st.tuples(st.just("take"), st.sets(st.integers(0, 5))),
            st.tuples(st.just("take all"), st.just(None)),
        ),
        max_size=40,
    ),
    flags=st.randoms(use_true_random=False),
)
def test_the_commit_floor_is_the_first_record_of_a_service_not_stored_yet(
    steps: list[tuple[str, Any]], flags: Any
) -> None:
    """After any mix of slices (their events applied service by service, as the core
    does, so not in offset order) and states taken for some services (a partial seal) or
    all (a full one), ``unstored_from`` names, per input topic, the smallest offset
    applied to a service whose state was not taken since: the kafka runtime commits up
    to it, never past it."""
    processor = Processor(TOPICS, CODEC, EngineConfig(), 1, lambda _: None, lambda: NOW_MS)
    next_offset = {TOPICS.deploys: 0, TOPICS.security_flags: 0}
    unstored: dict[str, dict[str, int]] = {}  # the model: service -> topic -> first offset
    for n, (step, arg) in enumerate(steps):
        if step == "apply":
            batches: dict[str, list[Admitted]] = {}
            for i, index in enumerate(arg):
                service = f"s{index}"
                obj = flag(service, n * 10 + i) if flags.random() < 0.5 else deploy(service)
                obj["event_id"] = f"{service}-{n}-{i}"
                event = parse_event(obj)
                topic = TOPICS.input_for_type(event.type)
                offset = next_offset[topic]
                next_offset[topic] += 1
                rec = InputRecord(topic, 0, offset, service.encode(), b"")
                batches.setdefault(service, []).append(Admitted(rec, event))
                unstored.setdefault(service, {}).setdefault(topic, offset)
            for service, batch in batches.items():
                processor.apply_batch(service, batch)
        else:
            services = None if step == "take all" else [f"s{i}" for i in sorted(arg)]
            taken = processor.take_dirty(services)
            expected = set(unstored) if services is None else set(unstored) & set(services)
            assert {s.service for s in taken} == expected
            for service in expected:
                del unstored[service]
        for topic in next_offset:
            firsts = [o[topic] for o in unstored.values() if topic in o]
            assert processor.unstored_from(topic, 0) == (min(firsts) if firsts else None)
        oldest = processor.oldest_touch_ms()
        assert (oldest is None) == (not unstored)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_commit_after_partial_takes_never_passes_an_applied_record_not_stored(seed: int) -> None:
    """Through the core: slices of a synthetic stream over one partition, after each a
    partial take (the services holding outputs and some others at random), and the
    offset the kafka runtime would commit: min(first record held, first unstored)."""
    rng = random.Random(seed)
    spec = SyntheticSpec(services=40, events=2_000, seed=seed, duplicate_share=0.0)
    objs = list(generate(spec))
    c = WorkerCore(
        SETTINGS,
        WorkerOptions(partitions=1, merge_caught_up_grace_ms=0, slice_events=50),
        store("c.").state_of,
        "kafka",
        clock=lambda: NOW_MS,
    )
    next_offset = dict.fromkeys(TOPICS.inputs, 0)
    unstored: dict[str, set[tuple[str, int]]] = {}  # the model
    for start in range(0, len(objs), 30):
        for obj in objs[start : start + rng.randint(1, 30)]:
            topic = TOPICS.input_for_type(parse_event(obj).type)
            value = CODEC.encode_event(obj)
            c.admit(InputRecord(topic, 0, next_offset[topic], b"k", value), NOW_MS)
            next_offset[topic] += 1
        released = c.release(NOW_MS, AllCaughtUp())
        for admitted in released.items:
            at = (admitted.record.topic, admitted.record.offset)
            unstored.setdefault(admitted.event.service, set()).add(at)
        others = [s for s in c.processor.dirty if rng.random() < 0.2]
        for state in c.take_states(only=[*released.outputs, *others]):
            unstored.pop(state.service, None)
        for topic in TOPICS.inputs:
            held = c.merges[0].first_held(topic)
            commit = held.record.offset if held is not None else next_offset[topic]
            floor = c.processor.unstored_from(topic, 0)
            commit = commit if floor is None else min(commit, floor)
            applied = [o for records in unstored.values() for t, o in records if t == topic]
            assert not applied or commit <= min(applied)
