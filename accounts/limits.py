"""Pure sliding-window arithmetic for account limits, with an injected ``now``.

A turn counts against its account while ``started_at > now - window`` (a turn started exactly one
window ago has just stopped counting). Refunded turns never count; that filtering happens in the
query, so these functions only see the start times of counted turns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from accounts.choices import LimitMode

# Cap for the exponential cooldown after overload/5xx/timeouts: long enough to stop hammering a sick
# account, short enough that a transient problem does not take it out of rotation for long.
MAX_COOLDOWN_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class Usage:
    """An account's usage at one instant.

    ``next_free_at`` is when the oldest counted turn leaves the window (None when nothing counts);
    ``available_at`` is when a new turn fits under the limit (``now`` when it fits already).
    """

    used: int
    limit: int
    in_flight: int
    max_concurrent: int
    next_free_at: datetime | None
    available_at: datetime | None

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def at_limit(self) -> bool:
        return self.used >= self.limit

    @property
    def at_concurrency_cap(self) -> bool:
        return self.in_flight >= self.max_concurrent


def window_start(*, now: datetime, window_seconds: int) -> datetime:
    """Turns started strictly after this instant count."""
    return now - timedelta(seconds=window_seconds)


def counts_in_window(*, started_at: datetime, now: datetime, window_seconds: int) -> bool:
    return started_at > window_start(now=now, window_seconds=window_seconds)


def next_free_at(*, oldest_counted: datetime | None, window_seconds: int) -> datetime | None:
    """When the oldest counted turn stops counting (None when no turn counts)."""
    if oldest_counted is None:
        return None
    return oldest_counted + timedelta(seconds=window_seconds)


def available_at(
    *, counted_starts: Sequence[datetime], limit: int, window_seconds: int, now: datetime
) -> datetime | None:
    """When one more turn fits under ``limit``, given the start times of the counted turns.

    ``now`` when under the limit. Over the limit (e.g. the limit was lowered) the account needs
    ``used - limit + 1`` turns to leave the window, so the answer is the expiry of that many-th oldest.
    """
    starts = sorted(s for s in counted_starts if counts_in_window(started_at=s, now=now, window_seconds=window_seconds))
    if len(starts) < limit:
        return now
    return starts[len(starts) - limit] + timedelta(seconds=window_seconds)


def usage_from_counts(
    *,
    used: int,
    in_flight: int,
    oldest_counted: datetime | None,
    limit: int,
    max_concurrent: int,
    window_seconds: int,
    now: datetime,
) -> Usage:
    """Usage from aggregate counts (one row of the pool's count query).

    With only the oldest start known, ``available_at`` is exact when ``used <= limit``, which is the
    normal case; over the limit it is a lower bound (``available_at()`` above is exact).
    """
    nxt = next_free_at(oldest_counted=oldest_counted, window_seconds=window_seconds)
    return Usage(
        used=used,
        limit=limit,
        in_flight=in_flight,
        max_concurrent=max_concurrent,
        next_free_at=nxt,
        available_at=now if used < limit else nxt,
    )


# A learned limit (kimi-web-protocol.md C.13, accounts/pool/rules.py) is a hint, not a verdict: this long
# after the last quota refusal the operator's cap applies again, so one peak-hour refusal cannot ratchet
# an account down for good.
LEARNED_LIMIT_SECONDS = 24 * 3600


def learned_limit(*, served: int, cap: int) -> int:
    """The limit an explicit quota refusal after ``served`` counted turns teaches: never above the
    operator's cap, never below 1."""
    return max(1, min(served, cap))


def learned_until(*, limit_mode: str, learned_limit: int | None, learned_at: datetime | None) -> datetime | None:
    """When a learned limit stops holding (None: none was learned, or the account is pinned)."""
    if limit_mode != LimitMode.LEARN or learned_limit is None or learned_at is None:
        return None
    return learned_at + timedelta(seconds=LEARNED_LIMIT_SECONDS)


def effective_limit(
    *, turn_limit: int, limit_mode: str, learned_limit: int | None, learned_at: datetime | None, now: datetime
) -> int:
    """The turns an account may serve in its window now: the learned limit while it holds (capped by
    ``turn_limit``), else ``turn_limit``."""
    until = learned_until(limit_mode=limit_mode, learned_limit=learned_limit, learned_at=learned_at)
    if until is None or learned_limit is None or until <= now:
        return turn_limit
    return max(1, min(turn_limit, learned_limit))


def cooldown_seconds(*, base: float, level: int, cap: float = MAX_COOLDOWN_SECONDS) -> float:
    """Exponential backoff: ``base`` at level 1, doubling per level, capped."""
    if level <= 0:
        return 0.0
    # min() on the exponent first keeps 2**level from growing without bound on a long failure streak.
    factor: int = 2 ** min(level - 1, 30)  # int ** int is typed Any (a negative exponent gives a float)
    return min(base * factor, cap)


# --- Capacity ahead (``kimi_accounts capacity``, the dashboard's panel) -----------------------------------


def turns_free(
    *, counted_starts: Sequence[datetime], limit: int, window_seconds: int, blocked_until: datetime | None, at: datetime
) -> int:
    """Turns an account could take at instant ``at`` if it took none before then: none while it is blocked
    (a cooldown, or the upstream's reset time), else its limit less the turns still counting at ``at``."""
    if blocked_until is not None and blocked_until > at:
        return 0
    counting = sum(1 for s in counted_starts if counts_in_window(started_at=s, now=at, window_seconds=window_seconds))
    return max(limit - counting, 0)


def next_turn_at(
    *,
    counted_starts: Sequence[datetime],
    limit: int,
    window_seconds: int,
    blocked_until: datetime | None,
    now: datetime,
) -> datetime | None:
    """When the account can take its next turn: when one fits under the limit and it is no longer blocked
    (without new turns the count only falls, so the later of the two)."""
    fits = available_at(counted_starts=counted_starts, limit=limit, window_seconds=window_seconds, now=now)
    if blocked_until is not None and blocked_until > now:
        return max(fits, blocked_until) if fits is not None else blocked_until
    return fits


def dry_at(
    *,
    now: datetime,
    supply: Callable[[datetime], int],
    changes: Sequence[datetime],
    rate_per_hour: float,
    window_seconds: int,
    horizon_seconds: int,
) -> datetime | None:
    """When a pool serving ``rate_per_hour`` turns from ``now`` on runs out: the first instant the turns
    taken since ``now`` reach what it could serve then (``supply(t)``: free turns at ``t`` counting only
    the turns taken before ``now``; it changes only at ``changes``). A turn taken after ``now`` counts for
    ``window_seconds`` (pass the longest window: the earlier answer), so demand grows to
    ``rate * window`` and stays there. None: not within ``horizon_seconds``, or no traffic."""
    if rate_per_hour <= 0:
        return None
    end = now + timedelta(seconds=horizon_seconds)
    plateau = now + timedelta(seconds=window_seconds)
    times = sorted({now, *(t for t in changes if now < t < end)})
    for index, start in enumerate(times):
        stop = times[index + 1] if index + 1 < len(times) else end
        # Demand reaches this segment's supply at ``hit`` (if before the plateau, where it stops growing).
        hit = now + timedelta(hours=supply(start) / rate_per_hour)
        if hit <= plateau and hit < stop:
            return max(hit, start)
    return None
