"""Retrying one delivery: exponential backoff with jitter, bounded in attempts and time.

The loop is pure apart from three injected functions -- a millisecond clock, an
interruptible sleep and a random source -- so the schedule is tested without
waiting. What is retried: connection errors and timeouts, HTTP 408, 429 and
5xx. What is not: other 4xx (the request itself is wrong: a bad routing key, an
archived Slack channel) and redirects (a signed body is not re-sent elsewhere).
A ``Retry-After`` header (seconds or an HTTP date) lengthens the wait; when it
points past the time budget the delivery gives up at once.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from streams.notify.config import RetryPolicy

RETRYABLE_STATUSES: Final = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one HTTP attempt gave: a status (``None`` when no response came) and a detail."""

    status: int | None
    detail: str
    retry_after_ms: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return True
        return self.status in RETRYABLE_STATUSES or self.status >= 500


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """The end of a delivery: delivered or not, after how many attempts and waits.

    ``interrupted`` is true when a stop was requested while waiting to retry:
    the delivery neither succeeded nor gave up, and the record must not be
    committed.
    """

    ok: bool
    attempts: int
    status: int | None
    detail: str
    elapsed_ms: int
    waits_ms: tuple[int, ...] = ()
    interrupted: bool = False


def backoff_ms(policy: RetryPolicy, retry_number: int, rand: float) -> int:
    """The wait before retry ``retry_number`` (1-based), for a uniform ``rand`` in [0, 1).

    ``initial * multiplier**(n-1)``, capped at ``max_backoff_ms``, then reduced
    by ``rand * jitter_ratio`` of itself.
    """
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    base = min(
        float(policy.max_backoff_ms),
        policy.initial_backoff_ms * policy.multiplier ** (retry_number - 1),
    )
    return int(base * (1.0 - policy.jitter_ratio * rand))


def parse_retry_after(value: str | None, now_epoch_ms: int) -> int | None:
    """``Retry-After`` as milliseconds from now: delta-seconds or an HTTP date; else ``None``."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text) * 1000
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, int(when.timestamp() * 1000) - now_epoch_ms)


def deliver_with_retry(
    attempt: Callable[[], AttemptResult],
    policy: RetryPolicy,
    *,
    clock_ms: Callable[[], int],
    sleep_ms: Callable[[int], bool],
    rand: Callable[[], float],
) -> DeliveryOutcome:
    """Call ``attempt`` until it succeeds, fails for good, or the policy's bounds are hit.

    ``sleep_ms`` waits and returns ``False`` when the wait was cut short by a
    stop request; ``clock_ms`` is a monotonic clock.
    """
    start = clock_ms()
    waits: list[int] = []
    attempts = 0
    while True:
        result = attempt()
        attempts += 1
        elapsed = clock_ms() - start
        if result.ok:
            return DeliveryOutcome(
                True, attempts, result.status, result.detail, elapsed, tuple(waits)
            )

        reason: str | None = None
        wait = 0
        if not result.retryable:
            reason = "not retried"
        elif attempts >= policy.max_attempts:
            reason = f"gave up after {attempts} attempts"
        else:
            wait = backoff_ms(policy, attempts, rand())
            if result.retry_after_ms is not None:
                wait = max(wait, result.retry_after_ms)
            if elapsed + wait > policy.max_total_ms:
                reason = (
                    f"gave up after {attempts} attempts: the next one in {wait} ms would "
                    f"pass the {policy.max_total_ms} ms budget"
                )
        if reason is not None:
            return DeliveryOutcome(
                False, attempts, result.status, f"{result.detail}; {reason}", elapsed, tuple(waits)
            )
        waits.append(wait)
        if not sleep_ms(wait):
            return DeliveryOutcome(
                False,
                attempts,
                result.status,
                "stopped while waiting to retry",
                clock_ms() - start,
                tuple(waits),
                interrupted=True,
            )
