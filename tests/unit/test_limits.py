"""Sliding-window arithmetic (accounts.limits) with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accounts import limits

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOUR = 3600


def test_it_counts_a_turn_until_exactly_one_window_has_passed() -> None:
    assert limits.counts_in_window(started_at=T0, now=T0 + timedelta(seconds=HOUR - 1), window_seconds=HOUR)
    assert not limits.counts_in_window(started_at=T0, now=T0 + timedelta(seconds=HOUR), window_seconds=HOUR)


def test_it_frees_the_next_turn_when_the_oldest_leaves_the_window() -> None:
    assert limits.next_free_at(oldest_counted=T0, window_seconds=HOUR) == T0 + timedelta(hours=1)
    assert limits.next_free_at(oldest_counted=None, window_seconds=HOUR) is None


def test_it_is_available_now_under_the_limit() -> None:
    starts = [T0, T0 + timedelta(minutes=5)]
    assert limits.available_at(counted_starts=starts, limit=3, window_seconds=HOUR, now=T0 + timedelta(minutes=10)) == (
        T0 + timedelta(minutes=10)
    )


def test_it_waits_for_the_oldest_turn_at_the_limit() -> None:
    starts = [T0 + timedelta(minutes=20), T0, T0 + timedelta(minutes=5)]
    now = T0 + timedelta(minutes=30)
    assert limits.available_at(counted_starts=starts, limit=3, window_seconds=HOUR, now=now) == T0 + timedelta(hours=1)


def test_it_waits_for_enough_turns_to_leave_when_over_the_limit() -> None:
    # Limit lowered to 2 with 4 counted turns: three must leave, so the third-oldest decides.
    starts = [T0 + timedelta(minutes=m) for m in (0, 10, 20, 30)]
    now = T0 + timedelta(minutes=40)
    assert limits.available_at(counted_starts=starts, limit=2, window_seconds=HOUR, now=now) == T0 + timedelta(
        minutes=80
    )


def test_it_ignores_turns_that_already_left_the_window() -> None:
    starts = [T0 - timedelta(hours=2), T0 - timedelta(minutes=30)]
    assert limits.available_at(counted_starts=starts, limit=1, window_seconds=HOUR, now=T0) == T0 + timedelta(
        minutes=30
    )


def test_it_builds_usage_from_counts() -> None:
    now = T0 + timedelta(minutes=10)
    full = limits.usage_from_counts(
        used=3, in_flight=1, oldest_counted=T0, limit=3, max_concurrent=1, window_seconds=HOUR, now=now
    )
    assert (full.remaining, full.at_limit, full.at_concurrency_cap) == (0, True, True)
    assert full.available_at == full.next_free_at == T0 + timedelta(hours=1)
    free = limits.usage_from_counts(
        used=1, in_flight=0, oldest_counted=T0, limit=3, max_concurrent=1, window_seconds=HOUR, now=now
    )
    assert (free.remaining, free.available_at, free.at_concurrency_cap) == (2, now, False)


@pytest.mark.parametrize(
    ("level", "expected"), [(0, 0.0), (1, 30.0), (2, 60.0), (3, 120.0), (5, 480.0), (6, 600.0), (500, 600.0)]
)
def test_it_backs_off_exponentially_with_a_cap(level: int, expected: float) -> None:
    assert limits.cooldown_seconds(base=30.0, level=level) == expected
