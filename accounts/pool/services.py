"""The pool's services: reserve an account for one request, release it with the outcome.

Synchronous and atomic; async callers reach them through gateway/db/threads.py (worker threads), or run
the Postgres statement of ``pg.py`` on the event loop's own pool. A reservation is a ``Turn`` row: it
counts against the account's sliding window (unless refunded) and, while its lease is live, against
its concurrency cap. Each service picks its path: the one-statement function on PostgreSQL
(``pg.py``), the ORM reference (``orm.py``) on SQLite and for every rare path.

Stale leases: an in-flight turn past ``lease_expires_at`` stops counting against concurrency at once
(so a crashed worker never blocks an account), and ``lease_reclaim_stale`` marks it ``done`` — counted,
not refunded, because we cannot know whether the upstream generated an answer and the limit is hard.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db import connection
from django.db.models import F
from django.utils import timezone

from accounts.choices import LeaseOutcome, TurnStatus
from accounts.models import KimiAccount, Turn
from accounts.pool import orm, pg, rules
from accounts.pool.lease import Lease, NoAccountAvailable


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
    reserve = pg.reserve if connection.vendor == "postgresql" else orm.reserve
    lease = reserve(now=now, protocol=protocol, account_ids=account_ids, exclude=exclude, request_id=request_id)
    if lease is not None:
        return lease
    raise account_unavailable(now=now, protocol=protocol, account_ids=account_ids, exclude=exclude)


def account_unavailable(
    *,
    now: datetime | None = None,
    protocol: str | None = None,
    account_ids: Collection[int] | None = None,
    exclude: Collection[int] = (),
) -> NoAccountAvailable:
    """Why no account could take a turn, after a reservation found none: the exception
    ``account_reserve`` raises (the same explanation whichever path reserved)."""
    matching = orm.matching(protocol=protocol, account_ids=account_ids, exclude=exclude)
    return orm.unavailable(matching=matching, now=now or timezone.now())


def lease_release(
    *,
    lease: Lease,
    outcome: str,
    refund: bool = False,
    retry_after: float | None = None,
    message: str = "",
    reset_at: datetime | None = None,
    quota: bool = False,
    now: datetime | None = None,
) -> None:
    """End a turn and apply its outcome (a ``LeaseOutcome``) to the account.

    ``refund=True`` means the upstream did no generation work: the turn stops counting. What each
    outcome does is the table ``rules.OUTCOME_EFFECTS``: ``ok`` heals (active, backoff reset); ``auth``
    -> invalid; ``rate_limited`` -> exhausted until the upstream's ``reset_at`` (or ``now +
    retry_after``) when it said so, else until the window frees a turn, and with ``quota`` (an
    explicit quota refusal, kimi-web-protocol.md C.13) the refusal is recorded as evidence of the
    account's limit; the transient upstream failures -> cooling with exponential
    backoff; ``client_closed``, ``bad_request``, ``content_filtered`` -> no account change. A disabled or
    invalid account is never revived by a release. Releasing twice (or after a reclaim) is a no-op.
    ``ValueError`` for an unknown outcome. ``message`` must not contain a token (the admin shows it).

    On PostgreSQL the request's final write does this inside its one statement for the outcomes that
    need no read of the account (gateway/db/finish_sql.py); this is the ORM's version, everywhere else.
    """
    orm.release(
        lease=lease,
        outcome=outcome,
        refund=refund,
        retry_after=retry_after,
        message=message,
        reset_at=reset_at,
        quota=quota,
        now=now or timezone.now(),
    )


def lease_reclaim_stale(*, now: datetime | None = None) -> int:
    """Mark in-flight turns past their lease as ``done`` (still counted) and return how many.

    They already stopped blocking concurrency when the lease expired; this only tidies the rows.
    """
    return orm.reclaim_stale(now=now or timezone.now())


def extra_turn_record(*, account_id: int, request_id: str, now: datetime | None = None) -> None:
    """One more upstream turn a request spent in its leased account's chat (a repair turn,
    gateway/chat/repair.py): counted in the account's window and the key's turn budget like any done
    turn, never in flight (the request's own lease holds the concurrency)."""
    now = now or timezone.now()
    Turn.objects.create(
        account_id=account_id,
        started_at=now,
        lease_expires_at=now,
        released_at=now,
        status=TurnStatus.DONE,
        outcome=LeaseOutcome.OK,
        request_id=request_id[: rules.REQUEST_ID_CHARS],
    )
    KimiAccount.objects.filter(pk=account_id).update(total_turns=F("total_turns") + 1)
