"""Read-only queries over accounts and their turns.

Usage is counted in one aggregate query whatever the number of accounts: the per-account sliding
window becomes one condition per distinct ``window_seconds`` (nearly always a single one).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import connection
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts import limits
from accounts.choices import AccountState, LimitMode, Origin, Protocol, TurnStatus
from accounts.models import KimiAccount, Turn


@dataclasses.dataclass(frozen=True)
class TurnCounts:
    used: int = 0
    in_flight: int = 0
    oldest: datetime | None = None


def _live_q(*, now: datetime, prefix: str = "") -> Q:
    """In-flight turns whose lease has not expired: a dead process's lease stops blocking by itself."""
    return Q(**{f"{prefix}status": TurnStatus.IN_FLIGHT, f"{prefix}lease_expires_at__gt": now})


_TURN_COUNTS_SQL = (
    "SELECT account_id, SUM(CASE WHEN {counted} THEN 1 ELSE 0 END), SUM(CASE WHEN {live} THEN 1 ELSE 0 END),"
    " MIN(CASE WHEN {counted} THEN started_at END) FROM {table}"
    " WHERE account_id IN ({ids}) AND ({counted} OR {live}) GROUP BY account_id"
)


def turn_counts(*, accounts: Iterable[KimiAccount], now: datetime) -> dict[int, TurnCounts]:
    """Counted turns in each account's window, live in-flight turns, and the oldest counted start.

    Hand-written SQL: this runs inside every reservation, and building the equivalent ORM aggregate
    cost more than the database took to answer it (bench/README.md). Portable to SQLite and Postgres.
    """
    by_window: dict[int, list[int]] = defaultdict(list)
    for account in accounts:
        by_window[account.window_seconds].append(account.pk)
    if not by_window:
        return {}
    adapt = connection.ops.adapt_datetimefield_value
    windows, window_params = [], []
    for seconds, ids in by_window.items():
        windows.append(f"(account_id IN ({', '.join(['%s'] * len(ids))}) AND started_at > %s)")
        window_params += [*ids, adapt(limits.window_start(now=now, window_seconds=seconds))]
    counted = f"(({' OR '.join(windows)}) AND status <> %s)"
    counted_params = [*window_params, TurnStatus.REFUNDED.value]
    live, live_params = "(status = %s AND lease_expires_at > %s)", [TurnStatus.IN_FLIGHT.value, adapt(now)]
    all_ids = [pk for ids in by_window.values() for pk in ids]
    id_placeholders = ", ".join(["%s"] * len(all_ids))
    # Only placeholders and our own table name are interpolated; every value is a parameter.
    sql = _TURN_COUNTS_SQL.format(counted=counted, live=live, table=Turn._meta.db_table, ids=id_placeholders)  # noqa: S608
    params = [*counted_params, *live_params, *counted_params, *all_ids, *counted_params, *live_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {
        pk: TurnCounts(int(used or 0), int(in_flight or 0), _as_datetime(oldest))
        for pk, used, in_flight, oldest in rows
    }


def _as_datetime(value: datetime | str | None) -> datetime | None:
    """A MIN() over a datetime column: a datetime on Postgres, an ISO string (UTC) on SQLite."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = parse_datetime(value)
    if parsed is None:
        raise ValueError(f"not a datetime from the database: {value!r}")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def limit_of(*, account: KimiAccount, now: datetime) -> int:
    """The account's limit now (``limits.effective_limit``, the pool's rule: learned or the operator's)."""
    return limits.effective_limit(
        turn_limit=account.turn_limit,
        limit_mode=account.limit_mode,
        learned_limit=account.learned_limit,
        learned_at=account.learned_at,
        now=now,
    )


def limit_source(*, account: KimiAccount, now: datetime) -> str:
    """Where the limit comes from now: ``pinned`` (the operator's), ``learned`` (a quota refusal's count
    holds), ``cap`` (learn mode, nothing learned or it expired: the operator's cap)."""
    if account.limit_mode != LimitMode.LEARN:
        return "pinned"
    until = limits.learned_until(
        limit_mode=account.limit_mode, learned_limit=account.learned_limit, learned_at=account.learned_at
    )
    return "learned" if until is not None and until > now else "cap"


def usage_of(*, account: KimiAccount, counts: TurnCounts, now: datetime) -> limits.Usage:
    return limits.usage_from_counts(
        used=counts.used,
        in_flight=counts.in_flight,
        oldest_counted=counts.oldest,
        limit=limit_of(account=account, now=now),
        max_concurrent=account.max_concurrent,
        window_seconds=account.window_seconds,
        now=now,
    )


def counted_starts(*, account: KimiAccount, now: datetime) -> list[datetime]:
    """Start times of the turns counting against ``account`` now (for the exact ``available_at``)."""
    start = limits.window_start(now=now, window_seconds=account.window_seconds)
    return list(
        Turn.objects.filter(account=account, started_at__gt=start)
        .exclude(status=TurnStatus.REFUNDED)
        .order_by("started_at")
        .values_list("started_at", flat=True)
    )


def connect_origins() -> list[str]:
    """The deployments (kimi-web-protocol.md C.5) of the Connect accounts that are not disabled, in the
    order of ``Origin``: whose model catalogues the gateway serves (C.7)."""
    qs = KimiAccount.objects.filter(protocol=Protocol.CONNECT).exclude(state=AccountState.DISABLED)
    found = set(qs.values_list("origin", flat=True).distinct())
    return [origin for origin in Origin.values if origin in found]


def accounts_for_admin(
    *, now: datetime | None = None, queryset: QuerySet[KimiAccount] | None = None
) -> QuerySet[KimiAccount]:
    """Accounts annotated with ``used``, ``in_flight`` and ``oldest_counted`` in one query (plus one
    small query for the distinct window lengths), so a list page makes no per-row queries."""
    now = now or timezone.now()
    qs = queryset if queryset is not None else KimiAccount.objects.all()
    windows = set(KimiAccount.objects.values_list("window_seconds", flat=True).distinct())
    in_window = Q(pk__in=[])  # matches nothing when there are no accounts
    for seconds in windows:
        start = limits.window_start(now=now, window_seconds=seconds)
        in_window |= Q(window_seconds=seconds, turns__started_at__gt=start)
    counted = in_window & ~Q(turns__status=TurnStatus.REFUNDED)
    return qs.annotate(
        used=Count("turns", filter=counted),
        in_flight=Count("turns", filter=_live_q(now=now, prefix="turns__")),
        oldest_counted=Min("turns__started_at", filter=counted),
    )


def account_usage(*, account: KimiAccount, now: datetime | None = None) -> limits.Usage:
    """Usage of one account now: used/limit in its window, in-flight streams, next free time."""
    now = now or timezone.now()
    counts = turn_counts(accounts=[account], now=now).get(account.pk, TurnCounts())
    return usage_of(account=account, counts=counts, now=now)


def usage_from_annotations(*, account: KimiAccount, now: datetime) -> limits.Usage:
    """Usage of an account loaded through ``accounts_for_admin`` (no query)."""
    counts = TurnCounts(account.used, account.in_flight, account.oldest_counted)  # type: ignore[attr-defined]
    return usage_of(account=account, counts=counts, now=now)


# Columns of ``kimi_accounts list`` (text) in order; ``--json`` prints every key of ``account_summary``.
SUMMARY_COLUMNS = (
    "name", "protocol", "origin", "state", "reason", "until", "used/limit", "limit_mode", "limit_source",
    "plan", "token", "expires", "token_expires_in",
)  # fmt: skip
_REASON_STATES = ("cooling", "exhausted", "invalid")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def token_expires_in_days(*, account: KimiAccount, now: datetime) -> int | None:
    """Whole days until the stored refresh token's ``exp`` (0 on its last day, negative once expired);
    None when unknown (not a JWT, or an access-token-only account)."""
    if account.token_expires_at is None or not account.refresh_token_enc:
        return None
    return math.floor((account.token_expires_at - now).total_seconds() / 86400)


def _expires_in_text(days: int | None, *, expires_at: datetime | None, now: datetime) -> str | None:
    if days is None or expires_at is None:
        return None
    if expires_at <= now:
        return "expired"
    return "today" if days == 0 else f"{days} day{'s' if days != 1 else ''}"


def account_summary(*, account: KimiAccount, now: datetime) -> dict[str, object]:
    """One account as plain data for scripts: state and why, usage, origin, check facts, token masked
    (last 4 characters at most). ``account`` comes from ``accounts_for_admin`` (no query here)."""
    usage = usage_from_annotations(account=account, now=now)
    reason = account.last_error_code if account.state in _REASON_STATES else ""
    expires_in = token_expires_in_days(account=account, now=now)
    return {
        "name": account.name,
        "protocol": account.protocol,
        "origin": account.origin,
        "source": account.source,
        "state": account.state,
        "reason": reason,
        "reason_message": account.last_error_message if reason else "",
        "until": _iso(account.cooldown_until) if account.state in ("cooling", "exhausted") else None,
        "used": usage.used,
        "limit": usage.limit,
        "used/limit": f"{usage.used}/{usage.limit}",
        "limit_mode": account.limit_mode,
        "limit_source": limit_source(account=account, now=now),
        "cap": account.turn_limit,
        "learned_until": _iso(
            limits.learned_until(
                limit_mode=account.limit_mode, learned_limit=account.learned_limit, learned_at=account.learned_at
            )
        ),
        "window_seconds": account.window_seconds,
        "in_flight": usage.in_flight,
        "max_concurrent": usage.max_concurrent,
        "next_free_at": _iso(usage.next_free_at),
        "plan": account.plan,
        "subscription_status": account.subscription_status,
        "membership_level": account.membership_level,
        "checked_at": _iso(account.checked_at),
        "stats_5h_ratio": account.stats_5h_ratio,
        "stats_5h_reset_at": _iso(account.stats_5h_reset_at),
        "stats_7d_ratio": account.stats_7d_ratio,
        "stats_7d_reset_at": _iso(account.stats_7d_reset_at),
        "refresh_failures": account.refresh_failures,
        "token": account.masked_token,
        "expires": _iso(account.token_expires_at),
        "token_expires_in_days": expires_in,
        "token_expires_in": _expires_in_text(expires_in, expires_at=account.token_expires_at, now=now),
        "check_verdict": account.check_verdict,
        "check_message": account.check_message,
        "access_expires_at": _iso(account.access_expires_at),
        "last_used_at": _iso(account.last_used_at),
    }
