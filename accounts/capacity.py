"""Capacity ahead: how many turns the pool could serve now, in 1 h and in 3 h, when each account's next
turn frees up, and when the pool would run dry at the last hour's rate (``kimi_accounts capacity`` and
the dashboard's panel).

The figures come from the window arithmetic (accounts/limits.py) over the turns already counted and the
known reset times (``cooldown_until``: a cooldown, or the upstream's reset of an exhausted account), with
the limit each account has at that instant (a learned limit may have expired by then). "Free in 1 h"
assumes no turn is taken before then. Pool accounts only: a pass-through account serves its own client.
Two queries: the accounts, and their counted turns of the longest window.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime, timedelta

from accounts import limits
from accounts.choices import AccountSource, TurnStatus
from accounts.models import KimiAccount, Turn
from accounts.pool import rules

# The instants "free now / in 1 h / in 3 h" are taken at.
HORIZONS = ((0, "now"), (3600, "in 1 h"), (3 * 3600, "in 3 h"))
JSON_KEYS = ("free_now", "free_in_1h", "free_in_3h")
# The traffic a "runs dry" estimate extrapolates, and how far ahead it looks.
RATE_SECONDS = 3600
DRY_HORIZON_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True)
class AccountCapacity:
    name: str
    state: str
    free: tuple[int, ...]  # at each of HORIZONS
    next_turn_at: datetime | None  # None: it serves no turn (invalid, disabled)


@dataclasses.dataclass(frozen=True)
class PoolCapacity:
    now: datetime
    free: tuple[int, ...]  # the pool's total at each of HORIZONS
    accounts: list[AccountCapacity]
    rate_per_hour: int  # counted turns started in the last hour
    dry_at: datetime | None  # None: not within DRY_HORIZON_SECONDS at that rate (or no traffic)


@dataclasses.dataclass(frozen=True)
class _Account:
    row: KimiAccount
    starts: list[datetime]

    def limit(self, at: datetime) -> int:
        a = self.row
        return limits.effective_limit(
            turn_limit=a.turn_limit,
            limit_mode=a.limit_mode,
            learned_limit=a.learned_limit,
            learned_at=a.learned_at,
            now=at,
        )

    @property
    def serves(self) -> bool:
        return self.row.state not in rules.UNUSABLE_STATES

    def free(self, at: datetime) -> int:
        if not self.serves:
            return 0
        return limits.turns_free(
            counted_starts=self.starts,
            limit=self.limit(at),
            window_seconds=self.row.window_seconds,
            blocked_until=self.row.cooldown_until,
            at=at,
        )

    def next_turn_at(self, now: datetime) -> datetime | None:
        if not self.serves:
            return None
        return limits.next_turn_at(
            counted_starts=self.starts,
            limit=self.limit(now),
            window_seconds=self.row.window_seconds,
            blocked_until=self.row.cooldown_until,
            now=now,
        )

    def changes(self) -> list[datetime]:
        """The instants its free count can change without new turns."""
        window = timedelta(seconds=self.row.window_seconds)
        found = [s + window for s in self.starts]
        if self.row.cooldown_until is not None:
            found.append(self.row.cooldown_until)
        until = limits.learned_until(
            limit_mode=self.row.limit_mode, learned_limit=self.row.learned_limit, learned_at=self.row.learned_at
        )
        return [*found, until] if until is not None else found


def pool_capacity(*, now: datetime) -> PoolCapacity:
    rows = list(KimiAccount.objects.filter(source=AccountSource.POOL).order_by("name"))
    longest = max((a.window_seconds for a in rows), default=0)
    starts: dict[int, list[datetime]] = defaultdict(list)
    turns = Turn.objects.filter(account__source=AccountSource.POOL, started_at__gt=now - timedelta(seconds=longest))
    for account_id, started_at in turns.exclude(status=TurnStatus.REFUNDED).values_list("account_id", "started_at"):
        starts[account_id].append(started_at)
    accounts = [_Account(row, starts[row.pk]) for row in rows]
    instants = [now + timedelta(seconds=seconds) for seconds, _ in HORIZONS]
    hour_ago = now - timedelta(seconds=RATE_SECONDS)
    rate = sum(1 for a in accounts for s in a.starts if s > hour_ago)
    serving = [a for a in accounts if a.serves]
    dry = limits.dry_at(
        now=now,
        supply=lambda at: sum(a.free(at) for a in serving),
        changes=[t for a in serving for t in a.changes()],
        rate_per_hour=float(rate * 3600 / RATE_SECONDS),
        window_seconds=max((a.row.window_seconds for a in serving), default=0),
        horizon_seconds=DRY_HORIZON_SECONDS,
    )
    per_account = [
        AccountCapacity(a.row.name, a.row.state, tuple(a.free(at) for at in instants), a.next_turn_at(now))
        for a in accounts
    ]
    totals = tuple(sum(a.free[i] for a in per_account) for i in range(len(HORIZONS)))
    return PoolCapacity(now, totals, per_account, rate, dry)


def capacity_when(at: datetime | None, *, now: datetime) -> str:
    """``now``, ``HH:MM UTC (in 1 h 20 min)``, or ``never`` (an account that serves no turn)."""
    if at is None:
        return "never"
    if at <= now:
        return "now"
    minutes = -(-(at - now) // timedelta(minutes=1))  # rounded up: "in 0 min" would read as now
    hours, minutes = divmod(minutes, 60)
    ahead = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"{at:%Y-%m-%d %H:%M} UTC (in {ahead})"


def capacity_dry_text(report: PoolCapacity) -> str:
    if report.rate_per_hour == 0:
        return "no traffic, so the pool does not run dry"
    if report.dry_at is None:
        return "at that rate the pool does not run dry within 24 h"
    return f"at that rate the pool runs dry at {capacity_when(report.dry_at, now=report.now)}"


def capacity_json(report: PoolCapacity) -> dict[str, object]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    keys = JSON_KEYS
    return {
        "at": iso(report.now),
        **dict(zip(keys, report.free, strict=True)),
        "rate_last_hour": report.rate_per_hour,
        "dry_at": iso(report.dry_at),
        "accounts": [
            {
                "name": a.name,
                "state": a.state,
                **dict(zip(keys, a.free, strict=True)),
                "next_turn_at": iso(a.next_turn_at),
            }
            for a in report.accounts
        ],
    }
