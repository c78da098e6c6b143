"""The account pool: reserve an account for one request, release it with the outcome.

Synchronous and atomic (call from async code through ``sync_to_async``). A reservation is a ``Turn``
row: it counts against the account's sliding window (unless refunded) and, while in flight, against
its concurrency cap.

Exactness under many processes: candidate rows are locked with ``SELECT ... FOR UPDATE SKIP LOCKED``
and the turns are counted in a *separate* statement after the lock is held (under READ COMMITTED a
later statement sees every turn committed by whoever held the lock before us; a subquery inside the
locking SELECT would not). When the rows we managed to lock cannot serve, we retry once in a fresh
transaction with a blocking lock in id order (no deadlock), so skipped rows never turn into a false
"exhausted". SQLite has no row locks; its IMMEDIATE transactions serialise reservations instead.
On PostgreSQL the reservation runs as one server-side function under the same rules, locking only
the account it takes (accounts/pool_sql.py); the ORM code here serves SQLite and the rare paths.

Stale leases: an in-flight turn past ``lease_expires_at`` stops counting against concurrency at once
(so a crashed worker never blocks an account), and ``lease_reclaim_stale`` marks it ``done`` — counted,
not refunded, because we cannot know whether the upstream generated an answer and the limit is hard.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accounts import limits, pool_sql, selectors
from accounts.choices import AccountSource, AccountState, TurnStatus
from accounts.models import KimiAccount, Turn
from accounts.selectors import account_usage  # noqa: F401  (part of the pool's public surface)

UNUSABLE_STATES = (AccountState.INVALID, AccountState.DISABLED)
# Release outcomes, grouped by what they do to the account.
OK_OUTCOMES = frozenset({"ok"})
AUTH_OUTCOMES = frozenset({"auth"})
RATE_LIMITED_OUTCOMES = frozenset({"rate_limited"})
COOLING_OUTCOMES = frozenset(
    # "upstream_error" is the code of a bare KimiError (gateway/kimi/base.py): treated like a 5xx.
    {"overloaded", "unavailable", "timeout", "stream_busy", "protocol_error", "upstream_error"}
)
NEUTRAL_OUTCOMES = frozenset({"client_closed", "bad_request", "content_filtered"})
OUTCOMES = OK_OUTCOMES | AUTH_OUTCOMES | RATE_LIMITED_OUTCOMES | COOLING_OUTCOMES | NEUTRAL_OUTCOMES
# Columns the pick needs (the encrypted tokens stay in the table).
WAIT_POLL_SECONDS = (0.05, 0.1, 0.2, 0.25)  # then 0.25 s: short, since a freed slot should be taken fast


@dataclasses.dataclass(frozen=True)
class Lease:
    """One reserved turn. Release it exactly once with ``lease_release``."""

    turn_id: int
    account_id: int
    protocol: str
    account_name: str
    # The account row as reserved (all fields), so the caller can build its upstream session without
    # reading it again. Not part of the lease's identity.
    account: KimiAccount | None = dataclasses.field(default=None, compare=False, repr=False)


class NoAccountAvailable(Exception):
    """No account can serve now.

    ``reason``: ``busy`` (some account is only at its concurrency cap: waiting helps), ``exhausted`` or
    ``cooling`` (the one freeing up first, at ``retry_at``), ``invalid`` / ``disabled`` (none will free
    up by itself; ``retry_at`` is None), ``none`` (no account matches at all).
    """

    def __init__(self, *, reason: str, retry_at: datetime | None) -> None:
        self.reason = reason
        self.retry_at = retry_at
        super().__init__(
            f"no Kimi account available ({reason})" + (f"; retry at {retry_at:%H:%M:%S}" if retry_at else "")
        )


def _matching(
    *, protocol: str | None, account_ids: Collection[int] | None, exclude: Collection[int]
) -> QuerySet[KimiAccount]:
    """Accounts the request may use at all. Pass-through accounts only when asked for by id."""
    qs = KimiAccount.objects.all()
    qs = qs.filter(source=AccountSource.POOL) if account_ids is None else qs.filter(pk__in=list(account_ids))
    if protocol:
        qs = qs.filter(protocol=protocol)
    if exclude:
        qs = qs.exclude(pk__in=list(exclude))
    return qs


def _usable(qs: QuerySet[KimiAccount], now: datetime) -> QuerySet[KimiAccount]:
    return qs.exclude(state__in=UNUSABLE_STATES).filter(Q(cooldown_until__isnull=True) | Q(cooldown_until__lte=now))


def _pick(accounts: list[KimiAccount], now: datetime) -> KimiAccount | None:
    """The eligible account with the most remaining turns; ties go to the least recently used."""
    counts = selectors.turn_counts(accounts=accounts, now=now)
    best: tuple[object, ...] | None = None
    chosen = None
    for account in accounts:
        usage = selectors.usage_of(account=account, counts=counts.get(account.pk, selectors.TurnCounts()), now=now)
        if usage.at_limit or usage.at_concurrency_cap:
            continue
        last = account.last_used_at.timestamp() if account.last_used_at else float("-inf")
        key = (-usage.remaining, last, account.pk)
        if best is None or key < best:
            best, chosen = key, account
    return chosen


def _try_reserve(
    *, candidates: QuerySet[KimiAccount], now: datetime, request_id: str, skip_locked: bool
) -> Lease | None:
    with transaction.atomic():
        # Whole rows: the chosen one goes back in the lease (tokens included, still encrypted).
        locked = list(candidates.select_for_update(skip_locked=skip_locked).order_by("pk"))
        account = _pick(locked, now) if locked else None
        if account is None:
            return None
        turn = Turn.objects.create(
            account=account,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=settings.KIMIPROXY_LEASE_TIMEOUT),
            request_id=request_id[:64],
        )
        # A cooling/exhausted account whose cooldown has passed is back in service: say so.
        KimiAccount.objects.filter(pk=account.pk).update(
            last_used_at=now,
            total_turns=F("total_turns") + 1,
            state=AccountState.ACTIVE,
            updated_at=now,
        )
        account.last_used_at, account.total_turns, account.state = now, account.total_turns + 1, AccountState.ACTIVE
        return Lease(
            turn_id=turn.pk,
            account_id=account.pk,
            protocol=account.protocol,
            account_name=account.name,
            account=account,
        )


def account_reserve(
    *,
    now: datetime | None = None,
    protocol: str | None = None,
    account_ids: Collection[int] | None = None,
    exclude: Collection[int] = (),
    request_id: str = "",
) -> Lease:
    """Reserve one turn on the best eligible account, or raise ``NoAccountAvailable``.

    ``account_ids`` restricts the choice (pass-through uses it with its own account); without it only
    pool accounts are used. ``exclude`` skips accounts already tried by a failover.
    """
    now = now or timezone.now()
    matching = _matching(protocol=protocol, account_ids=account_ids, exclude=exclude)
    if connection.vendor == "postgresql":
        # The same rules as hand-written SQL (accounts/pool_sql.py): the request path's hottest step.
        account = pool_sql.reserve(
            now=now, request_id=request_id, protocol=protocol, account_ids=account_ids, exclude=exclude
        )
        if account is not None:
            return lease_of_reserved(account)
        raise _unavailable(matching=matching, now=now)
    candidates = _usable(matching, now)
    for skip_locked in (True, False):
        lease = _try_reserve(candidates=candidates, now=now, request_id=request_id, skip_locked=skip_locked)
        if lease is not None:
            return lease
    raise _unavailable(matching=matching, now=now)


def account_unavailable(
    *,
    now: datetime | None = None,
    protocol: str | None = None,
    account_ids: Collection[int] | None = None,
    exclude: Collection[int] = (),
) -> NoAccountAvailable:
    """Why no account could take a turn, after a reservation (accounts/pool_sql.py) found none: the
    exception ``account_reserve`` would have raised."""
    matching = _matching(protocol=protocol, account_ids=account_ids, exclude=exclude)
    return _unavailable(matching=matching, now=now or timezone.now())


def lease_of_reserved(account: KimiAccount) -> Lease:
    """The lease of an account just reserved by accounts/pool_sql.py (which set its ``turn_id``)."""
    turn_id: int = account.turn_id  # type: ignore[attr-defined]
    return Lease(turn_id, account.pk, account.protocol, account.name, account=account)


def _unavailable(*, matching: QuerySet[KimiAccount], now: datetime) -> NoAccountAvailable:
    """Why nothing matched, and when the first account frees up (failure path: a few more queries)."""
    accounts = list(matching)
    if not accounts:
        return NoAccountAvailable(reason="none", retry_at=None)
    counts = selectors.turn_counts(accounts=accounts, now=now)
    timed: list[tuple[datetime, str]] = []
    states = set()
    for account in accounts:
        usage = selectors.usage_of(account=account, counts=counts.get(account.pk, selectors.TurnCounts()), now=now)
        if account.state in UNUSABLE_STATES:
            states.add(account.state)
        elif account.cooldown_until and account.cooldown_until > now:
            reason = "exhausted" if account.state == AccountState.EXHAUSTED else "cooling"
            timed.append((account.cooldown_until, reason))
        elif usage.at_limit:
            starts = selectors.counted_starts(account=account, now=now)
            free = limits.available_at(
                counted_starts=starts, limit=account.turn_limit, window_seconds=account.window_seconds, now=now
            )
            timed.append((free or now, "exhausted"))
        else:  # under its limit and not cooling: only the concurrency cap blocks it
            return NoAccountAvailable(reason="busy", retry_at=None)
    if timed:
        retry_at, reason = min(timed)
        return NoAccountAvailable(reason=reason, retry_at=retry_at)
    return NoAccountAvailable(reason="invalid" if AccountState.INVALID in states else "disabled", retry_at=None)


def account_reserve_waiting(
    *,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: datetime | None = None,
    protocol: str | None = None,
    account_ids: Collection[int] | None = None,
    exclude: Collection[int] = (),
    request_id: str = "",
) -> Lease:
    """``account_reserve``, waiting while the only obstacle is concurrency (reason ``busy``).

    Waits up to ``timeout`` seconds (default ``KIMIPROXY_QUEUE_TIMEOUT``) and then re-raises the last
    ``busy``; any other reason is raised at once. Blocks the calling thread (use via sync_to_async with
    ``thread_sensitive=False``) but returns its database connection between polls.
    """
    timeout = settings.KIMIPROXY_QUEUE_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        try:
            return account_reserve(
                now=now, protocol=protocol, account_ids=account_ids, exclude=exclude, request_id=request_id
            )
        except NoAccountAvailable as exc:
            left = deadline - time.monotonic()
            if exc.reason != "busy" or left <= 0:
                raise
            if not connection.in_atomic_block:
                connection.close()  # hand the connection back (to the pool) instead of holding it while waiting
            sleep(min(WAIT_POLL_SECONDS[min(attempt, len(WAIT_POLL_SECONDS) - 1)], left))
            attempt += 1


def lease_release(
    *,
    lease: Lease,
    outcome: str,
    refund: bool = False,
    retry_after: float | None = None,
    message: str = "",
    now: datetime | None = None,
) -> None:
    """End a turn and apply its outcome to the account.

    ``refund=True`` means the upstream did no generation work: the turn stops counting. Outcomes:
    ``ok`` -> active, backoff reset; ``auth`` -> invalid; ``rate_limited`` -> exhausted until
    ``now + retry_after`` when the upstream said so, else until the window frees a turn; ``overloaded``,
    ``unavailable``, ``timeout``, ``stream_busy``, ``protocol_error``, ``upstream_error`` -> cooling with
    exponential backoff;
    ``client_closed``, ``bad_request``, ``content_filtered`` -> no account change. A disabled or invalid
    account is never revived by a release. Releasing twice (or after a reclaim) is a no-op.
    ``message`` must not contain a token (it is shown in the admin).
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown lease outcome {outcome!r}")
    now = now or timezone.now()
    status = TurnStatus.REFUNDED if refund else TurnStatus.DONE
    # No savepoint: inside a caller's transaction (the request's final write) a failure here aborts it all.
    with transaction.atomic(savepoint=False):
        released = Turn.objects.filter(pk=lease.turn_id, status=TurnStatus.IN_FLIGHT).update(
            status=status, released_at=now, outcome=outcome
        )
        if released != 1 or outcome in NEUTRAL_OUTCOMES:
            return
        if outcome in OK_OUTCOMES:
            # The common case, in one statement that writes nothing when the account is already healthy.
            KimiAccount.objects.filter(pk=lease.account_id).exclude(state__in=UNUSABLE_STATES).exclude(
                state=AccountState.ACTIVE, cooldown_until__isnull=True, backoff_level=0
            ).update(state=AccountState.ACTIVE, cooldown_until=None, backoff_level=0, updated_at=now)
            return
        account = KimiAccount.objects.select_for_update().get(pk=lease.account_id)
        _apply_outcome(account=account, outcome=outcome, retry_after=retry_after, message=message, now=now)


def _apply_outcome(
    *, account: KimiAccount, outcome: str, retry_after: float | None, message: str, now: datetime
) -> None:
    changes: dict[str, object] = {"updated_at": now}
    revivable = account.state not in UNUSABLE_STATES
    if outcome in OK_OUTCOMES:
        if revivable:
            changes.update(state=AccountState.ACTIVE, cooldown_until=None, backoff_level=0)
    else:
        changes.update(
            last_error_code=outcome,
            last_error_message=message[:500],
            last_error_at=now,
            total_errors=F("total_errors") + 1,
        )
        if outcome in AUTH_OUTCOMES and account.state != AccountState.DISABLED:
            changes.update(state=AccountState.INVALID, cooldown_until=None)
        elif outcome in RATE_LIMITED_OUTCOMES and revivable:
            changes.update(state=AccountState.EXHAUSTED, cooldown_until=_exhausted_until(account, retry_after, now))
        elif outcome in COOLING_OUTCOMES and revivable:
            level = account.backoff_level + 1
            wait = limits.cooldown_seconds(base=settings.KIMIPROXY_COOLDOWN_SECONDS, level=level)
            changes.update(
                state=AccountState.COOLING, backoff_level=min(level, 100), cooldown_until=now + timedelta(seconds=wait)
            )
    KimiAccount.objects.filter(pk=account.pk).update(**changes)


def _exhausted_until(account: KimiAccount, retry_after: float | None, now: datetime) -> datetime:
    """The upstream's retry time when it gave one; otherwise when our window frees the oldest turn."""
    if retry_after is not None and retry_after > 0:
        return now + timedelta(seconds=retry_after)
    starts = selectors.counted_starts(account=account, now=now)
    free = limits.next_free_at(oldest_counted=starts[0] if starts else None, window_seconds=account.window_seconds)
    return free or now + timedelta(seconds=account.window_seconds)


def lease_reclaim_stale(*, now: datetime | None = None) -> int:
    """Mark in-flight turns past their lease as ``done`` (still counted) and return how many.

    They already stopped blocking concurrency when the lease expired; this only tidies the rows.
    """
    now = now or timezone.now()
    return Turn.objects.filter(status=TurnStatus.IN_FLIGHT, lease_expires_at__lte=now).update(
        status=TurnStatus.DONE, released_at=now, outcome="lease_expired"
    )
