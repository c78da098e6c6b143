"""The pool on the ORM: the reference implementation of the rules in ``rules.py``.

SQLite runs it for everything; on PostgreSQL it serves the rare paths (explaining why no account is
available, releases with an error outcome), and the parity tests run it beside ``pg.py``.

Exactness: candidate rows are locked with ``SELECT ... FOR UPDATE`` in id order (no deadlock) and the
turns are counted in a *separate* statement after the lock is held (under READ COMMITTED a later
statement sees every turn committed by whoever held the lock before us; a subquery inside the locking
SELECT would not). SQLite has no row locks; its IMMEDIATE transactions serialise reservations instead.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet

from accounts import limits, selectors
from accounts.choices import AccountState, LeaseOutcome, RefusalSource, TurnStatus
from accounts.models import KimiAccount, Turn
from accounts.pool import rules
from accounts.pool.lease import Lease, NoAccountAvailable
from accounts.pool.refusals import refusal_record


def matching(
    *, protocol: str | None, account_ids: Collection[int] | None, exclude: Collection[int]
) -> QuerySet[KimiAccount]:
    """Accounts the request may use at all. Pass-through accounts only when asked for by id."""
    qs = KimiAccount.objects.all()
    qs = qs.filter(source=rules.POOL_SOURCE) if account_ids is None else qs.filter(pk__in=list(account_ids))
    if protocol:
        qs = qs.filter(protocol=protocol)
    if exclude:
        qs = qs.exclude(pk__in=list(exclude))
    return qs


def _usable(qs: QuerySet[KimiAccount], now: datetime) -> QuerySet[KimiAccount]:
    """``rules.is_usable`` as a filter."""
    return qs.exclude(state__in=rules.UNUSABLE_STATES).filter(
        Q(cooldown_until__isnull=True) | Q(cooldown_until__lte=now)
    )


def _pick(accounts: list[KimiAccount], now: datetime, rank_cap: int) -> KimiAccount | None:
    """The account with room that ranks first (``rules.rank_key``)."""
    counts = selectors.turn_counts(accounts=accounts, now=now)
    best: tuple[int, float, int] | None = None
    chosen = None
    for account in accounts:
        count = counts.get(account.pk, selectors.TurnCounts())
        limit = selectors.limit_of(account=account, now=now)
        room = rules.has_room(
            used=count.used,
            live=count.in_flight,
            turn_limit=limit,
            max_concurrent=account.max_concurrent,
        )
        if not room:
            continue
        key = rules.rank_key(
            used=count.used,
            turn_limit=limit,
            last_used_at=account.last_used_at,
            account_id=account.pk,
            rank_cap=rank_cap,
        )
        if best is None or key < best:
            best, chosen = key, account
    return chosen


def reserve(
    *,
    now: datetime,
    protocol: str | None,
    account_ids: Collection[int] | None,
    exclude: Collection[int],
    request_id: str,
    rank_cap: int = rules.RANK_CAP,
) -> Lease | None:
    """Take a turn on the best account with room; None when there is none (``unavailable`` says why)."""
    candidates = _usable(matching(protocol=protocol, account_ids=account_ids, exclude=exclude), now)
    with transaction.atomic():
        # Whole rows: the chosen one goes back in the lease (tokens included, still encrypted).
        locked = list(candidates.select_for_update().order_by("pk"))
        account = _pick(locked, now, rank_cap) if locked else None
        if account is None:
            return None
        turn = Turn.objects.create(
            account=account,
            started_at=now,
            lease_expires_at=rules.lease_expires_at(now=now, lease_seconds=settings.KIMIPROXY_LEASE_TIMEOUT),
            request_id=request_id[: rules.REQUEST_ID_CHARS],
            **rules.TAKEN_TURN,
        )
        KimiAccount.objects.filter(pk=account.pk).update(
            last_used_at=now, total_turns=F("total_turns") + 1, updated_at=now, **rules.TAKEN_ACCOUNT
        )
        # The lease carries the row as written (as the SQL path's RETURNING does), without reading it again.
        account.last_used_at, account.total_turns, account.updated_at = now, account.total_turns + 1, now
        for field, value in rules.TAKEN_ACCOUNT.items():
            setattr(account, field, value)
        return Lease(
            turn_id=turn.pk,
            account_id=account.pk,
            protocol=account.protocol,
            account_name=account.name,
            account=account,
        )


def unavailable(*, matching: QuerySet[KimiAccount], now: datetime) -> NoAccountAvailable:
    """Why nothing could take the turn, and when the first account frees up (a few more queries)."""
    accounts = list(matching)
    if not accounts:
        return NoAccountAvailable(reason="none", retry_at=None)
    counts = selectors.turn_counts(accounts=accounts, now=now)
    timed: list[tuple[datetime, str]] = []
    states = set()
    for account in accounts:
        usage = selectors.usage_of(account=account, counts=counts.get(account.pk, selectors.TurnCounts()), now=now)
        if account.state in rules.UNUSABLE_STATES:
            states.add(account.state)
        elif account.cooldown_until and account.cooldown_until > now:
            reason = "exhausted" if account.state == AccountState.EXHAUSTED else "cooling"
            timed.append((account.cooldown_until, reason))
        elif usage.at_limit:
            starts = selectors.counted_starts(account=account, now=now)
            free = limits.available_at(
                counted_starts=starts,
                limit=selectors.limit_of(account=account, now=now),
                window_seconds=account.window_seconds,
                now=now,
            )
            timed.append((free or now, "exhausted"))
        else:  # under its limit and not cooling: only the concurrency cap blocks it
            return NoAccountAvailable(reason="busy", retry_at=None)
    if timed:
        retry_at, reason = min(timed)
        return NoAccountAvailable(reason=reason, retry_at=retry_at)
    return NoAccountAvailable(reason="invalid" if AccountState.INVALID in states else "disabled", retry_at=None)


def release(
    *,
    lease: Lease,
    outcome: str,
    refund: bool,
    retry_after: float | None,
    message: str,
    now: datetime,
    reset_at: datetime | None = None,
    quota: bool = False,
) -> None:
    """``lease_release`` (services.py) on the ORM; the table it applies is ``rules.OUTCOME_EFFECTS``."""
    effect = rules.effect_of(outcome)
    # No savepoint: inside a caller's transaction (the request's final write) a failure here aborts it all.
    with transaction.atomic(savepoint=False):
        released = Turn.objects.filter(pk=lease.turn_id, status=TurnStatus.IN_FLIGHT).update(
            status=rules.released_status(refund=refund), released_at=now, outcome=outcome
        )
        if released != 1 or effect is rules.Effect.NONE:
            return
        if effect is rules.Effect.HEAL:
            # One statement, writing nothing when the account is already healthy.
            KimiAccount.objects.filter(pk=lease.account_id).exclude(state__in=rules.SPARED_STATES[effect]).exclude(
                **rules.HEALED
            ).exclude(state=rules.HEAL_SPARES_UNTIL_AHEAD, cooldown_until__gt=now).update(
                updated_at=now, **rules.HEALED
            )
            return
        account = KimiAccount.objects.select_for_update().get(pk=lease.account_id)
        # The turns counting now (the refused one is already released): the window's fallback time, and
        # what an explicit quota refusal teaches.
        starts = selectors.counted_starts(account=account, now=now) if effect is rules.Effect.EXHAUST else []

        def until_exhausted() -> datetime:
            return rules.exhausted_until(
                now=now,
                retry_after=retry_after,
                reset_at=reset_at,
                oldest_counted=starts[0] if starts else None,
                window_seconds=account.window_seconds,
            )

        fields = rules.error_change(
            effect=effect,
            outcome=outcome,
            state=account.state,
            backoff_level=account.backoff_level,
            message=message,
            now=now,
            cooldown_base=settings.KIMIPROXY_COOLDOWN_SECONDS,
            until_exhausted=until_exhausted,
        )
        if quota and effect is rules.Effect.EXHAUST:
            fields |= refusal_record(
                account=account,
                source=RefusalSource.CHAT,
                served=len(starts),
                reset_at=reset_at,
                message=message,
                now=now,
            )
        KimiAccount.objects.filter(pk=account.pk).update(total_errors=F("total_errors") + 1, **fields)


def reclaim_stale(*, now: datetime) -> int:
    """In-flight turns past their lease become ``done`` (still counted); returns how many."""
    return Turn.objects.filter(status=TurnStatus.IN_FLIGHT, lease_expires_at__lte=now).update(
        status=TurnStatus.DONE, released_at=now, outcome=LeaseOutcome.LEASE_EXPIRED
    )
