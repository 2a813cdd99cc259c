"""The retry policy: backoff schedule, jitter bounds, Retry-After, limits, what is retried."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from streams.notify.config import RetryPolicy
from streams.notify.retry import (
    AttemptResult,
    DeliveryOutcome,
    backoff_ms,
    deliver_with_retry,
    parse_retry_after,
)


class FakeTime:
    """A clock that only moves when the code sleeps (plus a fixed cost per attempt)."""

    def __init__(self, attempt_cost_ms: int = 0) -> None:
        self.now_ms = 1_000_000
        self.sleeps: list[int] = []
        self.attempt_cost_ms = attempt_cost_ms
        self.stop_after_sleeps: int | None = None

    def clock_ms(self) -> int:
        return self.now_ms

    def sleep_ms(self, wait_ms: int) -> bool:
        self.sleeps.append(wait_ms)
        self.now_ms += wait_ms
        return self.stop_after_sleeps is None or len(self.sleeps) < self.stop_after_sleeps


def run(
    results: list[AttemptResult],
    policy: RetryPolicy,
    fake: FakeTime | None = None,
    rand: float = 0.0,
) -> tuple[DeliveryOutcome, int, FakeTime]:
    fake = fake or FakeTime()
    calls = 0

    def attempt() -> AttemptResult:
        nonlocal calls
        result = results[min(calls, len(results) - 1)]
        calls += 1
        fake.now_ms += fake.attempt_cost_ms
        return result

    outcome = deliver_with_retry(
        attempt, policy, clock_ms=fake.clock_ms, sleep_ms=fake.sleep_ms, rand=lambda: rand
    )
    return outcome, calls, fake


OK = AttemptResult(202, "HTTP 202")
E500 = AttemptResult(500, "HTTP 500")
DOWN = AttemptResult(None, "connection failed: ConnectionRefusedError")


def test_backoff_doubles_from_initial_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff_ms=500, multiplier=2.0, max_backoff_ms=5_000)
    assert [backoff_ms(policy, n, 0.0) for n in range(1, 7)] == [500, 1000, 2000, 4000, 5000, 5000]
    with pytest.raises(ValueError):
        backoff_ms(policy, 0, 0.0)


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999999])
def test_jitter_takes_at_most_its_ratio_off(rand: float) -> None:
    policy = RetryPolicy(initial_backoff_ms=1000, jitter_ratio=0.2)
    wait = backoff_ms(policy, 1, rand)
    assert 800 <= wait <= 1000
    assert wait == int(1000 * (1 - 0.2 * rand))


def test_jitter_spreads_waits() -> None:
    policy = RetryPolicy(initial_backoff_ms=1000, jitter_ratio=0.5)
    waits = {backoff_ms(policy, 1, r / 10) for r in range(10)}
    assert len(waits) == 10


def test_retries_5xx_and_connection_errors_then_succeeds() -> None:
    policy = RetryPolicy(initial_backoff_ms=100, max_attempts=5, jitter_ratio=0.0)
    outcome, calls, fake = run([E500, DOWN, AttemptResult(503, "x"), OK], policy)
    assert outcome.ok and outcome.attempts == 4 and calls == 4
    assert fake.sleeps == [100, 200, 400]
    assert outcome.waits_ms == (100, 200, 400)
    assert outcome.elapsed_ms == 700


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 301, 302])
def test_other_client_errors_and_redirects_are_not_retried(status: int) -> None:
    outcome, calls, fake = run([AttemptResult(status, f"HTTP {status}"), OK], RetryPolicy())
    assert not outcome.ok and calls == 1 and fake.sleeps == []
    assert outcome.status == status
    assert "not retried" in outcome.detail


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    outcome, calls, _ = run([AttemptResult(status, "x"), OK], RetryPolicy(initial_backoff_ms=1))
    assert outcome.ok and calls == 2


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_ms=10, jitter_ratio=0.0)
    outcome, calls, fake = run([E500], policy)
    assert not outcome.ok and calls == 3
    assert fake.sleeps == [10, 20]
    assert "gave up after 3 attempts" in outcome.detail


def test_gives_up_when_the_time_budget_would_be_passed() -> None:
    policy = RetryPolicy(
        max_attempts=100,
        initial_backoff_ms=1000,
        multiplier=2.0,
        max_total_ms=10_000,
        jitter_ratio=0.0,
    )
    outcome, calls, fake = run([E500], policy, FakeTime(attempt_cost_ms=50))
    # waits 1000, 2000, 4000 (elapsed 7000 + 4 * 50); the next 8000 would pass 10 s.
    assert fake.sleeps == [1000, 2000, 4000]
    assert calls == 4
    assert not outcome.ok
    assert "10000 ms budget" in outcome.detail
    assert outcome.elapsed_ms == 7000 + 4 * 50


def test_retry_after_lengthens_the_wait() -> None:
    policy = RetryPolicy(initial_backoff_ms=100, jitter_ratio=0.0)
    limited = AttemptResult(429, "HTTP 429", retry_after_ms=3000)
    outcome, _, fake = run([limited, OK], policy)
    assert outcome.ok and fake.sleeps == [3000]
    short = AttemptResult(429, "HTTP 429", retry_after_ms=10)
    outcome, _, fake = run([short, OK], policy)
    assert fake.sleeps == [100]  # the backoff is longer than the server asked for


def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    policy = RetryPolicy(max_total_ms=60_000)
    limited = AttemptResult(429, "HTTP 429", retry_after_ms=3_600_000)
    outcome, calls, fake = run([limited, OK], policy)
    assert not outcome.ok and calls == 1 and fake.sleeps == []
    assert "budget" in outcome.detail


def test_a_stop_during_a_wait_interrupts_without_giving_up() -> None:
    fake = FakeTime()
    fake.stop_after_sleeps = 1
    outcome, calls, _ = run([E500, OK], RetryPolicy(initial_backoff_ms=10), fake)
    assert outcome.interrupted and not outcome.ok and calls == 1


def test_parse_retry_after() -> None:
    now_ms = int(datetime(2026, 3, 4, 9, 0, 0, tzinfo=UTC).timestamp() * 1000)
    assert parse_retry_after("120", now_ms) == 120_000
    assert parse_retry_after(" 0 ", now_ms) == 0
    later = format_datetime(datetime(2026, 3, 4, 9, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now_ms) == 30_000
    earlier = format_datetime(datetime(2026, 3, 4, 8, 0, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(earlier, now_ms) == 0
    assert parse_retry_after(None, now_ms) is None
    assert parse_retry_after("soon", now_ms) is None
    assert parse_retry_after("-5", now_ms) is None
