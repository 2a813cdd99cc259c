"""Mutated tool payloads through every adapter: only RelsecError subclasses may escape.

Two passes over the payloads of ``tests/fuzz/payloads.py``: hypothesis mutations (a
few hostile changes per payload, seeded by ``derandomize``) and a systematic sweep
that puts each of a few hostile values at every leaf of every payload. An adapter may
convert (its events must then be valid and canonical) or refuse with an AdapterError,
ConfigError or ValidationError wrapped as one; any other exception is a crash.

Crashes already reported are listed in :data:`KNOWN_CRASHES` with a strict-xfail
reproducer below; a pass that meets only those ends as xfail (not as a pass), and
one that meets anything else fails with the reproducer.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ingest import ADAPTERS, IngestOptions
from streams.ingest.errors import AdapterError

from .hostile import DrawChooser, describe, json_paths, mutate_payload, set_at
from .payloads import RECEIVED_MS, Crash, Payload, call_adapter, load_payloads, options_for

KNOWN_CRASHES: dict[tuple[str, str, str], str] = {}
"""Crashes reported and not fixed yet (none: Opsgenie's unbounded epochs were the last)."""
SWEEP_VALUES: tuple[Any, ...] = (
    None, "", 1.5e308, -1, True, [], {}, "a\x1fb", "x" * 5000,
    "0001-01-01T00:00:00+01:00", "\u0662\u0660\u0662\u0666-03-04T09:20:00Z",
)


@cache
def _payloads() -> tuple[Payload, ...]:
    return tuple(load_payloads())


def _of(source: str) -> tuple[Payload, ...]:
    return tuple(p for p in _payloads() if p.source == source)


def _judge(source: str, crashes: list[tuple[Crash, str]]) -> None:
    unknown = [(c, where) for c, where in crashes if c.signature not in KNOWN_CRASHES]
    assert not unknown, "\n".join(
        f"{c.exception} at {c.where} (line {c.line})\n  reproducer: {where}"
        for c, where in unknown[:5]
    )
    if crashes:
        reasons = sorted({KNOWN_CRASHES[c.signature] for c, _ in crashes})
        pytest.xfail(f"{len(crashes)} known {source} crash(es): {'; '.join(reasons)}")


def test_the_payload_folders_cover_every_adapter() -> None:
    assert {p.source for p in _payloads()} == set(ADAPTERS)


@pytest.mark.parametrize("source", sorted(ADAPTERS))
def test_mutated_payloads_raise_only_relsec_errors(source: str) -> None:
    payloads = _of(source)
    crashes: list[tuple[Crash, str]] = []

    @settings(max_examples=40, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        chooser = DrawChooser(data)
        payload = chooser.pick(payloads)
        mutated = mutate_payload(chooser, payload.value)
        options = options_for(chooser.integer(0, 2))
        if source in ("trivy", "grype", "dependency-track") and chooser.integer(0, 3) == 0:
            previous = mutate_payload(chooser, chooser.pick(payloads).value)
            options = IngestOptions(received_at_ms=RECEIVED_MS, previous=previous)
        crash = call_adapter(source, mutated, options)
        if crash is not None:
            crashes.append((crash, f"{payload.name} mutated to {describe(mutated)}"))

    run()
    _judge(source, crashes)


@pytest.mark.parametrize("source", sorted(ADAPTERS))
def test_hostile_value_at_every_leaf(source: str) -> None:
    crashes: list[tuple[Crash, str]] = []
    calls = 0
    for payload in _of(source):
        text = orjson.dumps(payload.value)
        for path in [p for p in json_paths(payload.value) if p][:150]:
            for value in SWEEP_VALUES:
                mutated = set_at(orjson.loads(text), path, value)
                crash = call_adapter(source, mutated, options_for(2))
                calls += 1
                if crash is not None:
                    crashes.append((crash, f"{payload.name}: {path} = {describe(value, 60)}"))
    assert calls > 0
    _judge(source, crashes)


# --- reproducers of crashes found by the fuzzer, kept after their fix ----------------


@pytest.mark.parametrize("field", ["createdAt", "updatedAt"])
@pytest.mark.parametrize("value", [1.5e308, 1e300, 2.6e20])
def test_opsgenie_epoch_out_of_range_is_an_adapter_error(field: str, value: float) -> None:
    payload = orjson.loads(orjson.dumps(_of("opsgenie")[0].value))
    action = "Create" if field == "createdAt" else "Acknowledge"
    payload["action"] = action
    payload["alert"][field] = value
    with pytest.raises(AdapterError) as info:
        ADAPTERS["opsgenie"](payload, IngestOptions())
    assert field in info.value.path
